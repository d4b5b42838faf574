"""The benchmark harness (benchmarks/harness.py): ratios and verdicts, subprocess setups, the report files.

No timing is asserted: only that figures are carried through and judged by the rule they are printed with.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

import harness  # noqa: E402


@pytest.mark.parametrize(
    ("tunekit", "peer", "extra_ok", "status", "ratio"),
    [
        (6.0, 10.0, True, "PASS", 0.6),
        (8.0, 10.0, True, "MISS", 0.8),
        (6.0, 10.0, False, "MISS", 0.6),  # fast enough, but the quality condition failed
        (None, 10.0, True, "N/A", None),  # tunekit's side failed: no verdict, no ratio
        (6.0, None, True, "N/A", None),
    ],
)
def test_ratio_check_verdicts(tunekit, peer, extra_ok, status, ratio):
    check = harness.Check.ratio_at_most("b", "c", tunekit, peer, 0.7, extra_ok=extra_ok)
    assert check.status == status
    assert check.ratio == ratio
    assert check.target == "<= 0.7"


def test_value_ignores_failed_setups():
    assert harness.value({"x": 2}, "x") == 2.0
    assert harness.value({"x": 2, "error": "boom"}, "x") is None
    assert harness.value(None, "x") is None
    assert harness.value({"x": "text"}, "x") is None


def _script(tmp_path: Path) -> Path:
    script = tmp_path / "bench_fake.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(BENCH)!r})
        from harness import child_main

        def ok(params, workdir):
            assert workdir.is_dir()
            return {{"answer": params["n"] * 2}}

        def broken(params, workdir):
            raise ValueError("no such data")

        child_main({{"ok": ok, "broken": broken}})
    """), encoding="utf-8")
    return script


def test_setup_runs_in_its_own_process_and_reports_rss(tmp_path):
    result = harness.run_setup(_script(tmp_path), "ok", {"n": 21}, label="fake")
    assert result["answer"] == 42
    assert result["setup"] == "fake"
    assert result["peak_rss_mb"] > 0
    assert "error" not in result


def test_failing_setup_is_reported_not_raised(tmp_path):
    result = harness.run_setup(_script(tmp_path), "broken", {})
    assert result["error"] == "ValueError: no such data"
    assert "peak_rss_mb" in result


def test_reports_are_written_as_json_and_markdown(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(harness, "RESULTS", tmp_path)
    report = harness.Report("demo", "a demo", {"n": 1}, setups=[{"setup": "s", "train_seconds": 1.5}])
    report.checks.append(harness.Check.ratio_at_most("demo", "speed", 1.0, 2.0, 0.7))
    json_path, md_path = harness.write_reports("demo", [report])
    tree = json.loads(json_path.read_text())
    assert tree[0]["checks"][0]["status"] == "PASS"
    assert tree[0]["setups"][0]["train_seconds"] == 1.5
    md = md_path.read_text()
    assert "| demo | speed | 1 | 2 | 0.5 | <= 0.7 | **PASS** |" in md
    assert "| s | 1.5 |" in md
    assert "**PASS**" in capsys.readouterr().out


# --- bench_memory: the safety gate and the verdicts ---------------------------------------------------------

import bench_int8  # noqa: E402
import bench_memory  # noqa: E402


def test_small_setups_start_without_looking_at_free_memory(monkeypatch):
    monkeypatch.setattr(bench_memory, "available_mb", lambda: pytest.fail("read /proc/meminfo for a small setup"))
    assert bench_memory.room_for(bench_memory.BIG_MB) is None


def test_big_setup_starts_only_with_one_and_a_half_times_its_peak_plus_2_gb(monkeypatch):
    monkeypatch.setattr(bench_memory, "available_mb", lambda: 1.5 * 10_000 + 2048)
    assert bench_memory.room_for(10_000, wait=0) is None
    monkeypatch.setattr(bench_memory, "available_mb", lambda: 1.5 * 10_000 + 2047)
    reason = bench_memory.room_for(10_000, wait=0)
    assert reason.startswith("skipped: predicted peak 10,000 MiB needs 17,048 MiB available, only 17,047")


def test_big_setup_waits_for_memory_to_free_up(monkeypatch):
    readings = iter([1000.0, 1000.0, 30_000.0])
    monkeypatch.setattr(bench_memory, "available_mb", lambda: next(readings))
    assert bench_memory.room_for(10_000, wait=60, poll=0) is None


def test_peer_guard_is_never_below_the_issue_measurement(monkeypatch):
    monkeypatch.setattr(bench_memory, "predicted_mb", lambda side, length: 500.0)
    assert bench_memory.guard_mb("tunekit", 1024) == 500.0
    assert bench_memory.guard_mb("peft", 1024) == 1024 + bench_memory.PEER_MB_PER_1024


@pytest.mark.parametrize(
    ("length", "tk", "peer", "status"),
    [
        (1024, {"train_peak_rss_mb": 3000, "eval_loss": 2.00}, {"train_peak_rss_mb": 10000, "eval_loss": 2.04}, "PASS"),
        (1024, {"train_peak_rss_mb": 4000, "eval_loss": 2.00}, {"train_peak_rss_mb": 10000, "eval_loss": 2.00}, "MISS"),
        (1024, {"train_peak_rss_mb": 3000, "eval_loss": 2.10}, {"train_peak_rss_mb": 10000, "eval_loss": 2.00}, "MISS"),
        (1024, {"error": "boom"}, {"train_peak_rss_mb": 10000, "eval_loss": 2.00}, "N/A"),
        (256, {"train_peak_rss_mb": 3000, "eval_loss": 2.0}, {"train_peak_rss_mb": 3000, "eval_loss": 2.0}, "INFO"),
    ],
)
def test_memory_verdict_needs_the_ratio_and_equal_loss_at_the_target_length(length, tk, peer, status):
    check = bench_memory.loss_check(length, tk, peer)
    assert check.status == status


def test_growth_table_has_a_row_per_length_and_marks_a_peer_not_run(monkeypatch):
    monkeypatch.setattr(bench_memory, "auto_checkpointing", lambda length: length >= 1024)
    rows = [(512, {"train_peak_rss_mb": 2000.0, "eval_loss": 2.0}, {"train_peak_rss_mb": 4000.0, "eval_loss": 2.0}),
            (2048, {"train_peak_rss_mb": 2500.0, "eval_loss": 2.0}, None)]
    table = bench_memory.growth_table(rows)
    assert table[2] == "| 512 | 2000.0 | off | 4000.0 | 0.500 | 2.0 / 2.0 |"
    assert table[3] == "| 2048 | 2500.0 | on | not run | — | 2.0 / not run |"


def test_nf4_footprint_is_judged_and_the_rest_reported():
    fp32 = {"memory_footprint_mb": 500.0, "forward_seconds": 1.0, "peak_rss_mb": 900.0}
    nf4 = {"memory_footprint_mb": 150.0, "forward_seconds": 2.0, "peak_rss_mb": 700.0}
    checks = {c.name: c for c in bench_int8.compare("nf4", nf4, fp32)}
    assert checks["nf4 / fp32 memory footprint"].status == "PASS"
    assert checks["nf4 / fp32 forward time"].status == "INFO"
    big = bench_int8.compare("nf4", {**nf4, "memory_footprint_mb": 200.0}, fp32)
    assert big[0].status == "MISS"
    assert all(c.status == "INFO" for c in bench_int8.compare("int8", nf4, fp32))
