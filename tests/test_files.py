"""tunekit.files: a staged folder or file appears whole or not at all."""

from __future__ import annotations

import pytest

from tunekit import files


def test_a_staged_folder_becomes_the_target_only_on_success(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with files.staged_folder(target) as tmp:
            (tmp / "half.txt").write_text("x")
            raise RuntimeError("stopped")
    assert list(tmp_path.iterdir()) == []  # no target, no leftover
    with files.staged_folder(target) as tmp:
        (tmp / "a.txt").write_text("a")
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (target / "a.txt").read_text() == "a"


def test_replace_swaps_an_existing_folder_and_refusal_keeps_it(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(files.FolderExistsError):
        with files.staged_folder(target) as tmp:
            (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    with files.staged_folder(target, replace=True, durable=True) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # the old folder is gone too


def test_an_empty_target_folder_is_taken_over(tmp_path):
    (tmp_path / "out").mkdir()
    with files.staged_folder(tmp_path / "out") as tmp:
        (tmp / "a.txt").write_text("a")
    assert (tmp_path / "out" / "a.txt").exists()


def test_write_text_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "report.html"
    files.write_text(path, "<p>one</p>")
    files.write_text(path, "<p>two</p>")
    assert path.read_text() == "<p>two</p>" and [p.name for p in tmp_path.iterdir()] == ["report.html"]
