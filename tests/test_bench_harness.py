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
