"""search.io.folder_write: a file of the experiment folder is written whole and renamed over its name, so a link
at the name is replaced and the file it pointed at is kept, and a write that fails midway leaves the old file;
and nothing under search/ writes a file any other way."""
import ast
import errno
import os
import stat
from pathlib import Path

import pandas as pd
import pytest

from search.io.folder_write import append_text, write_csv, write_text

ROOT = Path(__file__).resolve().parents[2]


def test_a_link_at_the_name_is_replaced_and_its_target_kept(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "exp").mkdir()
    for name in ("leaderboard.csv", "bow_floor.json"):
        (tmp_path / "exp" / name).symlink_to(victim)
    write_csv(pd.DataFrame({"a": [1]}), tmp_path / "exp" / "leaderboard.csv")
    write_text(tmp_path / "exp" / "bow_floor.json", "{}")
    assert victim.read_text() == "precious"
    assert (tmp_path / "exp" / "leaderboard.csv").read_text() == "a\n1\n"
    assert not (tmp_path / "exp" / "bow_floor.json").is_symlink()
    assert sorted(p.name for p in (tmp_path / "exp").iterdir()) == ["bow_floor.json", "leaderboard.csv"]


def test_a_written_file_has_the_mode_a_plain_write_gives(tmp_path):
    (tmp_path / "plain").write_text("x")
    write_text(tmp_path / "ours", "x")
    assert stat.S_IMODE((tmp_path / "ours").stat().st_mode) == stat.S_IMODE((tmp_path / "plain").stat().st_mode)


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_other(tmp_path, monkeypatch):
    path = tmp_path / "leaderboard.csv"
    path.write_text("old")

    def disk_full(_):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        write_text(path, "new")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["leaderboard.csv"]


def test_appending_refuses_a_link_and_appends_to_a_file(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "spool").symlink_to(victim)
    with pytest.raises(OSError) as caught:
        append_text(tmp_path / "spool", "line\n")
    assert caught.value.errno == errno.ELOOP and victim.read_text() == "precious"
    append_text(tmp_path / "log", "a\n")
    append_text(tmp_path / "log", "b\n")
    assert (tmp_path / "log").read_text() == "a\nb\n"


WRITERS = {"to_csv", "to_parquet", "to_json", "write_text", "write_bytes", "savefig", "write_table", "dump"}
ELSEWHERE = {  # (module, function): what writes some other way, and why that is safe
    ("report/front.py", "front_section"): "its plot, into the new folder main() moves in",
    ("report/cli.py", "front_main"): "into a new temporary folder, then renamed into report/",
    ("report/plots.py", "save_figure"): "the plots, into the new folder the report is written in",
    ("analysis/results.py", "write_parquet"): "into a buffer, then write_bytes",
    ("tune/mo_asha.py", "save"): "Tune's own checkpoint file, at the path Tune gives",
    ("tracking/model_export.py", "model_files"): "into a temporary folder of its own, which the saved model copies from",
}


def _writes(path: Path):
    """(function, what) for each call in `path` that writes a file (os.open with O_NOFOLLOW never follows a
    link: that one is fine)."""
    source = path.read_text()
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            modes = [a.value for a in [*node.args[1:2], *(k.value for k in node.keywords if k.arg == "mode")]
                     if isinstance(a, ast.Constant) and isinstance(a.value, str)]
            if isinstance(f, ast.Attribute) and name in WRITERS or name == "open" and any(
                    c in m for m in modes for c in "wax+") or isinstance(f, ast.Attribute) and name == "open" \
                    and isinstance(f.value, ast.Name) and f.value.id == "os" \
                    and "O_NOFOLLOW" not in ast.get_source_segment(source, node):
                yield fn.name, f"{name} (line {node.lineno})"


def test_every_writer_under_search_goes_through_folder_write():
    found = [f"{p.relative_to(ROOT)}: {fn}: {what}" for p in sorted((ROOT / "search").rglob("*.py"))
             if p.name != "folder_write.py" for fn, what in _writes(p) if (p.relative_to(ROOT / "search").as_posix(), fn) not in ELSEWHERE]
    assert found == []
