"""report.html: rendered from tiny random-model runs of each task family, several runs, a sweep folder, bad input."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from types import SimpleNamespace

import pytest

from tunekit import cli as cli_module
from tunekit.errors import DataError, UsageError
from tunekit.report import EVAL_DETAILS_FILE, REPORT_FILE, DetailsRecorder, build, charts, sections, write_report

REMOTE = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//|url\(\s*["']?(?:https?:)?//|@import""", re.I)


def _tables(page: str) -> list[str]:
    return re.findall(r"<table.*?</table>", page, re.S)


def _assert_self_contained(page: str) -> None:
    assert not REMOTE.findall(page), REMOTE.findall(page)[:3]
    assert "<script" not in page  # nothing to run, nothing to fetch


def _assert_filled(page: str) -> None:
    for table in _tables(page):
        cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", table, re.S)]
        assert cells and any(cells), table[:200]


@pytest.mark.parametrize("task", ["classification", "ner", "qa", "causal-lm"])
def test_every_run_writes_a_self_contained_report(task_runs: dict[str, Path], task: str) -> None:
    page = (task_runs[task] / REPORT_FILE).read_text(encoding="utf-8")  # written by the run itself
    _assert_self_contained(page)
    _assert_filled(page)
    assert page.count("<figure class=\"chart\"") >= 3 and page.count("<path") > 20  # loss, a metric, lr
    summary = json.loads((task_runs[task] / "summary.json").read_text())
    assert summary["task"] in page and f"{summary['trainable_params']:,}" in page
    assert "data_sizes" in summary and summary["data_sizes"]["train"] > 0


def test_classification_details_match_the_evaluation(task_runs: dict[str, Path]) -> None:
    run = task_runs["classification"]
    details = json.loads((run / EVAL_DETAILS_FILE).read_text())
    matrix = next(s for s in details if s["kind"] == "matrix")
    summary = json.loads((run / "summary.json").read_text())
    counts = matrix["values"]
    assert sum(map(sum, counts)) == summary["data_sizes"]["eval"]
    correct = sum(counts[i][i] for i in range(len(counts)))
    assert correct / sum(map(sum, counts)) == pytest.approx(summary["final_metrics"]["eval_accuracy"])
    mistakes = next(s for s in details if s["kind"] == "examples")
    assert len(mistakes["rows"]) == min(10, sum(map(sum, counts)) - correct)
    assert all(row[0].strip() for row in mistakes["rows"])  # the texts, decoded
    page = (run / REPORT_FILE).read_text()
    assert "Confusion matrix" in page and "Per-class scores" in page and "Most confident mistakes" in page


def test_ner_qa_and_causal_lm_views(task_runs: dict[str, Path]) -> None:
    ner = json.loads((task_runs["ner"] / EVAL_DETAILS_FILE).read_text())
    types = [row[0] for row in ner[0]["rows"]]
    assert types == ["LOC", "MISC", "ORG", "PER"] and [row[4] for row in ner[0]["rows"]] == [16, 4, 4, 12]
    qa = json.loads((task_runs["qa"] / EVAL_DETAILS_FILE).read_text())
    figures = dict(qa[0]["rows"])
    summary = json.loads((task_runs["qa"] / "summary.json").read_text())
    assert figures["f1"] == pytest.approx(summary["final_metrics"]["eval_f1"], abs=1e-3)
    assert [row[1] for row in qa[1]["rows"]][:2] == ["paris", "john"]
    assert not (task_runs["causal-lm"] / EVAL_DETAILS_FILE).exists()  # causal-lm has no eval_details
    page = (task_runs["causal-lm"] / REPORT_FILE).read_text()
    assert "Held-out prompts: base vs tuned answers" in page and "where does mary live ?" in page


def test_several_runs_are_compared(task_runs: dict[str, Path], tmp_path: Path) -> None:
    folders = [task_runs[t] for t in ("classification", "ner", "qa")]
    path = write_report(folders, tmp_path / "three.html")
    page = path.read_text()
    _assert_self_contained(page)
    table = next(t for t in _tables(page) if 'class="data compare"' in t)
    assert table.count("<tr>") == 4  # the header and one row per run
    for name in ("run-classification", "run-ner", "run-qa"):
        assert name in table
    assert "eval_accuracy" in table and "eval_f1" in table
    assert "solid: train, dashed: eval" in page  # the overlaid loss curves
    assert page.count('id="run-') == 3


def _sweep(folder: Path, runs: list[Path]) -> Path:
    """A sweep folder written by tunekit's own sweep outputs from a study whose trials are ``runs``."""
    import optuna

    from tunekit.sweep import outputs

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(direction="maximize", study_name="tiny")
    for i, run in enumerate(runs):
        summary = json.loads((run / "summary.json").read_text())
        trial = optuna.trial.create_trial(
            params={"training.lr": 1e-3 * (i + 1)}, value=0.5 + 0.1 * i,
            distributions={"training.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)},
            user_attrs={"folder": str(run), "trainable_params": summary["trainable_params"], "train_seconds": 1.0})
        study.add_trial(trial)
    folder.mkdir()
    outputs.write_all(study, folder, "eval_accuracy")
    return folder


def test_sweep_folder_renders_trials_best_config_and_plots(task_runs: dict[str, Path], tmp_path: Path) -> None:
    sweep = _sweep(tmp_path / "sweep", [task_runs["classification"], task_runs["ner"]])
    path = write_report([sweep])
    assert path == sweep / REPORT_FILE
    page = path.read_text()
    _assert_self_contained(page)
    _assert_filled(page)
    assert "Best configuration" in page and "training.lr" in page
    assert page.count('src="data:image/png;base64,') == len(list(sweep.glob("*.png"))) >= 2
    assert "Trial runs" in page


def test_without_matplotlib_the_tables_remain(task_runs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(charts, "available", lambda: False)
    page = build([task_runs["classification"]])
    assert "<svg" not in page and "pip install &#39;tunekit[plots]&#39;" in page
    assert "Confusion matrix" in page
    _assert_filled(page)


def test_not_a_run_folder_is_one_line_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="not a tunekit run folder"):
        write_report([tmp_path / "empty"])
    with pytest.raises(SystemExit) as exit_info:
        cli_module.main(["report", str(tmp_path / "empty"), "-o", str(tmp_path / "r.html")])
    assert exit_info.value.code != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and "not a tunekit run folder" in err
    assert not list(tmp_path.glob("*.html")) and not list(tmp_path.glob(".*tmp"))


def test_damaged_files_are_refused_and_the_old_report_kept(task_runs: dict[str, Path], tmp_path: Path) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(task_runs["classification"], run, ignore=shutil.ignore_patterns("adapter", "best", "tokenizer"))
    (run / "summary.json").write_text('{"task": ', encoding="utf-8")
    before = (run / REPORT_FILE).read_text()
    with pytest.raises(DataError, match="summary.json.*not valid JSON"):
        write_report([run])
    assert (run / REPORT_FILE).read_text() == before
    (run / "summary.json").write_text("{}", encoding="utf-8")
    (run / EVAL_DETAILS_FILE).write_text(json.dumps([{"kind": "pie"}, sections.table("t", ["a"], [[1]])]))
    page = build([run])
    assert "section 1 left out" in page and ">t</h3>" in page


def test_cli_writes_into_the_run_folder(task_runs: dict[str, Path], tmp_path: Path,
                                        capsys: pytest.CaptureFixture) -> None:
    import shutil

    run = tmp_path / "run"
    shutil.copytree(task_runs["ner"], run, ignore=shutil.ignore_patterns("adapter", "best", "tokenizer"))
    (run / REPORT_FILE).unlink()
    cli_module.main(["report", str(run)])
    assert (run / REPORT_FILE).is_file() and str(run / REPORT_FILE) in capsys.readouterr().out


def test_a_report_that_fails_does_not_fail_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    import tunekit.report
    from tunekit.runs import runner

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no ink")

    monkeypatch.setattr(tunekit.report, "write_report", broken)
    with caplog.at_level(logging.WARNING, logger="tunekit.run"):
        runner._write_report(tmp_path)
    assert "report.html was not written (RuntimeError: no ink)" in caplog.text


class _Job:
    metric_for_best, greater_is_better = "eval_f1", True

    def __init__(self) -> None:
        self.calls = 0

    def eval_details(self) -> list[dict]:
        self.calls += 1
        return [sections.table(f"evaluation {self.calls}", ["a"], [[self.calls]])]


@pytest.mark.parametrize(("restored", "kept"), [(True, "evaluation 2"), (False, "evaluation 3")])
def test_recorder_keeps_the_evaluation_the_run_ends_with(tmp_path: Path, restored: bool, kept: str) -> None:
    recorder = DetailsRecorder(_Job(), tmp_path, None)
    for step, f1 in ((1, 0.2), (2, 0.9), (3, 0.5)):
        recorder.on_evaluate(step, {"eval_f1": f1})
    recorder.on_train_end(SimpleNamespace(restored_best=restored))
    assert json.loads((tmp_path / EVAL_DETAILS_FILE).read_text())[0]["title"] == kept


def test_recorder_survives_a_failing_eval_details(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    class Broken:
        def eval_details(self) -> list[dict]:
            raise KeyError("labels")

    recorder = DetailsRecorder(Broken(), tmp_path, "eval_loss")
    with caplog.at_level(logging.WARNING, logger="tunekit.report"):
        recorder.on_evaluate(1, {"eval_loss": 1.0})
        recorder.on_train_end(SimpleNamespace(restored_best=False))
    assert "eval_details failed (KeyError" in caplog.text and not (tmp_path / EVAL_DETAILS_FILE).exists()
