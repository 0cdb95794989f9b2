"""The hostile-input catalogue (cases.yaml): every case gets one line, its exit code, no traceback, and
leaves nothing that blocks a rerun. In-process (the mains with capsys), so the whole table stays fast;
test_entry_points runs one case per command line as a real subprocess."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hostile_helpers import GIVEN, HOSTILE, ROOT, SMOKE
from hostile_helpers import broken_data, good_data, tiny_train_config  # noqa: F401 (fixtures; a conftest.py here would shadow tests/conftest.py)

CASES = yaml.safe_load((HOSTILE / "cases.yaml").read_text())


def _snapshot(folder: Path) -> dict:
    """Every path under `folder` with a file's size and mtime: 'nothing left behind' means this did not change.
    (A folder's own mtime moves when something is made in it and removed again, as a report that fails
    midway does with its scratch folder: the paths themselves say whether anything was left.)"""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): None if p.is_dir() else (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*"))}


def _fill(text: str, where: dict) -> str:
    for key, value in where.items():
        text = text.replace("{" + key + "}", str(value))
    return text


def _space(case: dict, where: dict) -> list[str]:
    space = case.get("space", "smoke")
    if space == "none":
        return []
    if space == "smoke":
        return [str(SMOKE)]
    if space == "@oversized":  # made here: a 300 KB file is no fixture to keep in git
        path = where["tmp"] / "oversized.yaml"
        path.write_text("model: {text_encoder: tiny}\n" + "# padding\n" * 30_000)
        return [str(path)]
    return [_fill(space, where) if "{" in space else str(HOSTILE / "spaces" / space)]


def _argv(case: dict, where: dict) -> list[str]:
    args = [_fill(a, where) for a in case.get("args", [])]
    cmd = case.get("cmd", "launch")
    if cmd == "launch":
        data = ["--set", f"data.root={where['data']}"] if "data" in case and "data.root" not in " ".join(args) else []
        storage = [] if "--storage" in args else ["--storage", str(where["store"])]
        return _space(case, where) + args + data + storage
    if cmd == "check" and "data" in case and not args:
        return ["check", str(where["data"]), "--encoder", "tiny"]
    return args


def _main(cmd: str):
    if cmd == "launch":
        from search.run.launch import main
    elif cmd == "train":
        from mtl_core.train_cli import main
    elif cmd == "check":
        from mtl_core.data.__main__ import main
    elif cmd == "report":
        from search.report.cli import main
    elif cmd == "front":
        from search.report.cli import front_main as main
    else:
        from search.tracking.replay import main
    return main


def _run(main, argv) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse
        return exc.code


@pytest.fixture
def clean_env(monkeypatch):
    """The launcher moves URI credentials into MLFLOW_TRACKING_USERNAME/PASSWORD: not beyond one case."""
    for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(var, "unset-by-test")
        monkeypatch.delenv(var)


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_hostile_case(case, tmp_path, capsys, monkeypatch, broken_data, good_data, tiny_train_config, clean_env):
    store = tmp_path / "store"
    store.mkdir()
    where = {"tmp": tmp_path, "store": store, "good": good_data, "cfg": tiny_train_config, "root": ROOT}
    (tmp_path / "a-file").write_text("plain file")
    where["file"] = tmp_path / "a-file"
    if "data" in case:
        where["data"] = broken_data(case["data"])
    for var, value in case.get("env", {}).items():
        monkeypatch.setenv(var, _fill(value, where))
    import search.run.sweep

    def no_ray(*_):  # a hostile case that got this far would start a sweep: fail it fast instead
        raise AssertionError("a hostile case reached Ray")
    monkeypatch.setattr(search.run.sweep, "_start_ray", no_ray)
    holder = GIVEN[case["given"]](store / "x") if "given" in case else None
    before = _snapshot(store)
    try:
        code = _run(_main(case.get("cmd", "launch")), _argv(case, where))
    finally:
        if isinstance(holder, subprocess.Popen):
            holder.kill()
            holder.wait()
    out = capsys.readouterr()
    text = out.out + out.err
    marker = "problem:" if case.get("cmd") == "check" and case["exit"] == 1 else "error:"
    lines = [line for line in out.err.splitlines() if line.startswith(marker)]
    says = _fill(case["says"], where)
    assert code == case["exit"], text
    assert len(lines) == case.get("lines", 1) and says in lines[0], text
    assert "Traceback" not in text, text
    if "secret" in case:
        assert _fill(case["secret"], where) not in text
    assert _snapshot(store) == before  # nothing written, nothing left behind
    assert not Path("/tmp/escaped-by-name").exists() and not Path("/tmp/escaped-by-space-file").exists()


def test_the_catalogue_keeps_its_158_cases_each_with_its_own_id():
    assert len(CASES) >= 158 and len({c["id"] for c in CASES}) == len(CASES)


ENTRY_POINTS = [
    (["search.launch", str(SMOKE), "--set", "train.lr=.nan"], 2, "error: train.lr: expected a finite number"),
    (["search.launch", str(HOSTILE / "spaces" / "bomb_lr.yaml"), "--dry-run"], 2, "more than 20000 values"),
    (["mtl_core.train", str(HOSTILE / "spaces" / "dup_lr.yaml")], 2, "error: train.lr: duplicate key"),
    (["mtl_core.data", "check", "{tmp}/none"], 2, "error: {tmp}/none: dataset folder not found"),
    (["search.replay", "{tmp}"], 2, "error: {tmp}: not an experiment folder"),
]


@pytest.mark.slow  # a process each (imports torch, MLflow, Ray): seconds apiece
@pytest.mark.parametrize("argv, code, says", ENTRY_POINTS, ids=[a[0] for a, _, _ in ENTRY_POINTS])
def test_entry_points(argv, code, says, tmp_path):
    """One real process per command line: the module entry points themselves give one line and the code."""
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    proc = subprocess.run([sys.executable, "-m", *argv, *(["--storage", str(tmp_path / "s")] if "search.launch" in argv else [])],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == code and len(errors) == 1 and says.replace("{tmp}", str(tmp_path)) in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (tmp_path / "s").exists() and list(tmp_path.iterdir()) == []


def test_a_yaml_bomb_is_refused_in_milliseconds():
    """Before the bounded loader, this 1 KB file ran 71 s and then raised MemoryError."""
    import time

    from mtl_core.config import ConfigError
    from search.space.parse import load_space

    start = time.perf_counter()
    with pytest.raises(ConfigError, match="more than 20000 values once its aliases are expanded"):
        load_space(HOSTILE / "spaces" / "bomb_lr.yaml")
    assert time.perf_counter() - start < 2.0


def test_trust_folder_resumes_a_folder_others_could_write(tmp_path, capsys):
    """The one way round the ownership check (storage that maps owners): the same folder the catalogue's
    resume-writable-by-others case refuses goes past the checks, to the MLflow parent run it records (which
    this made-up folder does not have)."""
    from search.run.launch import main

    GIVEN["writable_by_others"](tmp_path / "store" / "x")
    argv = [str(SMOKE), "--name", "x", "--resume", "--storage", str(tmp_path / "store")]
    assert main(argv) == 2 and "writable by others" in capsys.readouterr().err
    assert main([*argv, "--trust-folder"]) == 1  # the experiment's own store, a file of the folder: exit 1
    err = capsys.readouterr().err
    assert "writable by others" not in err and "x/mlflow.db: cannot open" in err
