"""``tunekit serve`` answers the official ``openai`` client and plain JSON clients on 127.0.0.1."""

from __future__ import annotations

import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest

from tunekit.errors import UsageError


def client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=60)


def chat(url: str, **kwargs) -> openai.types.chat.ChatCompletion:
    messages = kwargs.pop("messages", [{"role": "user", "content": "what is the capital of france"}])
    return client(url).chat.completions.create(model="run", messages=messages, **kwargs)


def test_health_and_models(causal_server):
    url, service = causal_server
    health = httpx.get(f"{url}/health").json()
    assert health["status"] == "ok" and health["task"] == "causal-lm"
    assert [m.id for m in client(url).models.list().data] == [service.name]


def test_chat_answers_with_usage_and_is_greedy_at_temperature_zero(causal_server):
    url, _ = causal_server
    first = chat(url, temperature=0, max_tokens=6)
    second = chat(url, temperature=0, max_tokens=6)
    answer = first.choices[0].message.content
    assert isinstance(answer, str) and answer == second.choices[0].message.content
    assert first.choices[0].finish_reason in ("stop", "length") and first.usage.prompt_tokens > 0
    assert first.usage.total_tokens == first.usage.prompt_tokens + first.usage.completion_tokens <= \
        first.usage.prompt_tokens + 6


def test_streamed_chat_equals_the_whole_answer(causal_server):
    url, _ = causal_server
    whole = chat(url, temperature=0, max_tokens=8).choices[0].message.content
    chunks = list(chat(url, temperature=0, max_tokens=8, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() == whole and chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_seeded_sampling_repeats(causal_server):
    url, _ = causal_server
    a = chat(url, temperature=1.0, top_p=0.9, seed=7, max_tokens=8).choices[0].message.content
    b = chat(url, temperature=1.0, top_p=0.9, seed=7, max_tokens=8).choices[0].message.content
    assert a == b


def test_completions_and_stop_strings(causal_server):
    url, _ = causal_server
    done = client(url).completions.create(model="run", prompt="what is the capital of france", max_tokens=8,
                                          temperature=0)
    text = done.choices[0].text
    words = text.split()
    assert done.object == "text_completion" and words
    stop = words[-1]
    cut = client(url).completions.create(model="run", prompt="what is the capital of france", max_tokens=8,
                                         temperature=0, stop=[stop])
    assert cut.choices[0].text == text[:text.find(stop)] and cut.choices[0].finish_reason == "stop"
    streamed = client(url).completions.create(model="run", prompt="what is the capital of france", max_tokens=8,
                                              temperature=0, stop=[stop], stream=True)
    assert "".join(c.choices[0].text for c in streamed).strip() == cut.choices[0].text.strip()


def test_bad_requests_get_a_4xx_with_a_message(causal_server):
    url, _ = causal_server
    with pytest.raises(openai.BadRequestError, match="temperature"):
        chat(url, temperature=5)
    with pytest.raises(openai.BadRequestError, match="messages"):
        chat(url, messages=[])
    wrong = httpx.post(f"{url}/v1/predict", json={"inputs": ["hello"]})
    assert wrong.status_code == 400 and "/v1/chat/completions" in wrong.json()["error"]["message"]
    missing = httpx.post(f"{url}/v1/embeddings", json={})
    assert missing.status_code == 404 and "/v1/chat/completions" in missing.json()["error"]["message"]
    broken = httpx.post(f"{url}/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert broken.status_code == 400
    assert chat(url, max_tokens=2).choices[0].message.content is not None  # still serving


def test_predict_batches_and_matches_the_task(classify_server, classify_run):
    url, service = classify_server
    texts = ["good movie", "awful plot", "the film was fun"]
    got = httpx.post(f"{url}/v1/predict", json={"inputs": texts})
    assert got.status_code == 200
    direct = service.loaded.job.predict(service.loaded.model, texts)
    predictions = got.json()["predictions"]
    assert [p["label"] for p in predictions] == [d["label"] for d in direct]
    assert [p["score"] for p in predictions] == pytest.approx([d["score"] for d in direct], abs=1e-5)
    for body in ({"inputs": []}, {"inputs": [5]}, {"texts": ["a"]}):
        bad = httpx.post(f"{url}/v1/predict", json=body)
        assert bad.status_code == 400 and bad.json()["error"]["message"]
    with pytest.raises(openai.BadRequestError, match="/v1/predict"):
        chat(url)


def test_the_batcher_shares_one_call_and_isolates_a_bad_input():
    from tunekit.serve.batching import MicroBatcher

    gate, calls = threading.Event(), []

    def predict(inputs):
        calls.append(list(inputs))
        gate.wait(10)
        if "bad" in inputs:
            raise UsageError("bad input.")
        return [x.upper() for x in inputs]

    batcher = MicroBatcher(predict, threading.Lock(), max_inputs=8, wait_s=0.05)
    first = batcher.submit(["a"])
    while not calls:
        pass
    rest = [batcher.submit(x) for x in (["b", "c"], ["bad"], ["d"])]
    gate.set()
    assert first.result(10) == ["A"]
    assert rest[0].result(10) == ["B", "C"] and rest[2].result(10) == ["D"]
    with pytest.raises(UsageError):
        rest[1].result(10)
    assert calls[1] == ["b", "c", "bad", "d"]  # the three waiting requests went in one call
    batcher.close()


def rss_mb() -> float:
    try:
        import psutil

        return psutil.Process().memory_info().rss / 2**20
    except ImportError:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


@pytest.mark.parametrize("kind", ["chat", "predict"])
def test_eight_clients_ten_requests_each_all_answer_and_memory_stays_flat(kind, causal_server, classify_server):
    url, _ = causal_server if kind == "chat" else classify_server
    http = httpx.Client(timeout=60)

    def one(i: int) -> int:
        if kind == "chat":
            body = {"model": "run", "messages": [{"role": "user", "content": f"what is {i}"}], "max_tokens": 4}
            return http.post(f"{url}/v1/chat/completions", json=body).status_code
        return http.post(f"{url}/v1/predict", json={"inputs": [f"good film {i}", "bad"]}).status_code

    rss = []
    with ThreadPoolExecutor(8) as pool:
        for round_ in range(10):
            statuses = list(pool.map(one, range(round_ * 8, round_ * 8 + 8)))
            assert statuses == [200] * 8
            rss.append(rss_mb())
    http.close()
    assert rss[-1] - rss[1] < 50, f"RSS grew from {rss[1]:.0f} to {rss[-1]:.0f} MB"


def test_a_missing_server_package_is_one_line(monkeypatch):
    from tunekit.cli.serve import _require_server

    monkeypatch.setitem(sys.modules, "uvicorn", None)
    with pytest.raises(UsageError, match=r"pip install 'tunekit\[serve\]'"):
        _require_server()
