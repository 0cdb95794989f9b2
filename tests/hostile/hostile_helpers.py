"""What the hostile catalogue needs: broken datasets made from the synthetic generator, and experiment
folders in a given state (recorded, locked by a live launcher, corrupt)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from search.io.state import FORMAT

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = Path(__file__).resolve().parent
SMOKE = ROOT / "spaces" / "smoke.yaml"


@pytest.fixture(scope="session")
def good_data(tmp_path_factory):
    from mtl_core.data.synth import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("hostile_data") / "good", seed=3, n_train=6, n_val=4, n_test=4)


def _split(root: Path, split: str) -> dict:
    return json.loads((root / f"{split}.json").read_text())


def _write(path: Path, data) -> None:
    """Replace a file of the hard-linked copy (unlink first: the intact dataset shares its inodes)."""
    path.unlink(missing_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    elif isinstance(data, str):
        path.write_text(data)
    elif isinstance(data, np.ndarray):
        np.save(path, data, allow_pickle=data.dtype == object)
    else:
        path.write_text(json.dumps(data))


def _first(root: Path, split: str = "train") -> str:
    return next(iter(_split(root, split)))


def _edit_record(root: Path, split: str, **fields) -> None:
    recs = _split(root, split)
    recs[_first(root, split)].update(fields)
    _write(root / f"{split}.json", recs)


def _npy(root: Path, kind: str) -> Path:
    clip = _first(root)
    return root / "vggish" / f"{clip}_vggish.npy" if kind == "audio" else root / "i3d" / f"{clip}_{kind}.npy"


def _duplicate_clip(root: Path) -> None:
    train, val = _split(root, "train"), _split(root, "val")
    clip = next(iter(train))
    val[clip] = train[clip]
    _write(root / "val.json", val)


def _two_train_files(root: Path) -> None:
    text = (root / "train.json").read_text()
    (root / "train.json").unlink()
    _write(root / "a_train.json", text)
    _write(root / "b_train.json", text)


def _ids_outside_vocab(root: Path) -> None:
    recs = _split(root, "train")
    for rec in recs.values():
        rec["indexes"] = [101, 99_999_999, 102]
    _write(root / "train.json", recs)


def _rename_clip(root: Path, clip_id: str) -> None:
    """The first training clip under another id (its feature files keep their names)."""
    recs = _split(root, "train")
    first = next(iter(recs))
    _write(root / "train.json", {clip_id if k == first else k: v for k, v in recs.items()})


DEEP = "[" * 100_000 + "]" * 100_000  # JSON nested 100,000 levels


def _raw_record(root: Path, field: str, text: str) -> None:
    """The first training record's `field` set to `text` as written (JSON that json.dumps would not write)."""
    recs = _split(root, "train")
    recs[_first(root)][field] = "@RAW@"
    _write(root / "train.json", json.dumps(recs).replace('"@RAW@"', text))


BREAKAGES = {
    "no-train": lambda r: (r / "train.json").unlink(),
    "bad-json": lambda r: _write(r / "val.json", "{not json"),
    "bad-json-train": lambda r: _write(r / "train.json", "{not json"),
    "json-list": lambda r: _write(r / "train.json", "[1, 2]"),
    "record-not-object": lambda r: _write(r / "val.json", {"clip": 5}),
    "empty-split": lambda r: _write(r / "test.json", "{}"),
    "duplicate-clip": _duplicate_clip,
    "bad-label": lambda r: _edit_record(r, "train", gory=[1, 1]),
    "label-word": lambda r: _edit_record(r, "train", mature="yes"),
    "indexes-not-list": lambda r: _edit_record(r, "train", indexes=5),
    "nan-rgb": lambda r: _write(_npy(r, "rgb"), np.full((4, 1024), np.nan, np.float32)),
    "inf-audio": lambda r: _write(_npy(r, "audio"), np.full((4, 128), np.inf, np.float32)),
    "audio-width": lambda r: _write(_npy(r, "audio"), np.zeros((4, 100), np.float32)),
    "flow-width": lambda r: _write(_npy(r, "flow"), np.zeros((4, 512), np.float32)),
    "audio-1d": lambda r: _write(_npy(r, "audio"), np.zeros(128, np.float32)),
    "audio-empty": lambda r: _write(_npy(r, "audio"), np.zeros((0, 128), np.float32)),
    "pickled-npy": lambda r: _write(_npy(r, "audio"), np.array([{"a": 1}] * 4, dtype=object)),
    "string-npy": lambda r: _write(_npy(r, "audio"), np.full((2, 128), "abc")),
    "garbage-npy": lambda r: _write(_npy(r, "audio"), os.urandom(300)),
    "two-train-files": _two_train_files,
    "not-utf8-json": lambda r: _write(r / "val.json", b"{\"\xff\xfe\": 1}"),
    "ids-outside-vocab": _ids_outside_vocab,
    "clip-id-dotdot": lambda r: _rename_clip(r, "../../outside/evil"),
    "clip-id-long": lambda r: _rename_clip(r, "c" * 300),
    "clip-id-newline": lambda r: _rename_clip(r, "two\nlines"),
    "clip-id-dot": lambda r: _rename_clip(r, ".."),
    "clip-id-empty": lambda r: _rename_clip(r, ""),
    "json-deep": lambda r: _write(r / "train.json", DEEP),
    "record-deep": lambda r: _raw_record(r, "words", DEEP),
    "indexes-infinity": lambda r: _raw_record(r, "indexes", "[1, Infinity]"),
    "label-nan": lambda r: _raw_record(r, "gory", "NaN"),
    "label-deep-string": lambda r: _edit_record(r, "train", mature=DEEP),
    "indexes-deep-string": lambda r: _edit_record(r, "train", indexes=DEEP),
    "indexes-huge": lambda r: _edit_record(r, "train", indexes=[101, 2**40, 102]),
}


@pytest.fixture
def broken_data(good_data, tmp_path):
    """`broken_data(kind)`: a hard-linked copy of the intact dataset, broken as BREAKAGES[kind] says."""
    def make(kind: str) -> Path:
        root = tmp_path / f"data-{kind}"
        shutil.copytree(good_data, root, copy_function=os.link)
        BREAKAGES[kind](root)
        return root
    return make


def _recorded(exp: Path, state) -> None:
    """An experiment folder as a launch of spaces/smoke.yaml leaves it (without Ray's and MLflow's files)."""
    from search.space.parse import dump_resolved, load_space

    exp.mkdir(parents=True)
    (exp / "space.yaml").write_text(dump_resolved(load_space(SMOKE)))
    (exp / "launch_state.json").write_text(state if isinstance(state, str) else json.dumps(state))


def _recorded_mo(exp: Path) -> None:
    """As `_recorded`, of the smoke space made multi-objective (the five tasks' F1 replace its metric)."""
    from search.space.parse import dump_resolved, load_space

    raw = yaml.safe_load(SMOKE.read_text())
    del raw["search"]["metric"]
    raw["search"]["objectives"] = "tasks"
    exp.mkdir(parents=True)
    (exp / "space.yaml").write_text(yaml.safe_dump(raw))
    (exp / "space.yaml").write_text(dump_resolved(load_space(exp / "space.yaml")))
    (exp / "launch_state.json").write_text(json.dumps(STATE))


def _with_tables(exp: Path, trials=None, files: dict[str, str] | None = None) -> None:
    """A finished experiment's folder: its trials table `trials` (bytes, or a DataFrame; default one good
    row) and the other `files` (name -> text)."""
    import pandas as pd

    _recorded(exp, STATE)
    trials = pd.DataFrame({"trial_id": ["a"], "status": ["finished"], "label": ["all_tasks+equal+all_modalities"], "val/avg_f1": [0.5]}) if trials is None else trials
    if isinstance(trials, bytes):
        (exp / "trials.parquet").write_bytes(trials)
    else:
        trials.to_parquet(exp / "trials.parquet")
    for name, text in (files or {}).items():
        (exp / name).write_text(text)


STATE = {"parent_run_id": "0123", "space": str(SMOKE), "tracking_uri": "sqlite:///x/mlflow.db", "format": FORMAT}


def _hold_lock(exp: Path):
    """A live launcher holding the folder's lock (a child process), until the case ends."""
    exp.mkdir(parents=True, exist_ok=True)
    code = ("import sys, time; from search.io.lock import ExperimentLock; ExperimentLock(__import__('pathlib').Path("
            "sys.argv[1])).acquire(); print('locked', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(exp)], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == "locked"
    return proc


GIVEN = {
    "experiment": lambda exp: _recorded(exp, STATE),
    "file_at_name": lambda exp: exp.write_text("not a folder"),
    "corrupt_state": lambda exp: _recorded(exp, '{"parent_run_id": "01'),
    "state_list": lambda exp: _recorded(exp, "[1, 2, 3]"),
    "state_other_format": lambda exp: _recorded(exp, {**STATE, "format": "1"}),
    "state_no_format": lambda exp: _recorded(exp, {k: v for k, v in STATE.items() if k != "format"}),
    "state_types": lambda exp: _recorded(exp, {**STATE, "parent_run_id": {"$ne": 1}}),
    "state_huge": lambda exp: _recorded(exp, json.dumps({**STATE, "pad": "x" * 100_000})),
    "corrupt_space": lambda exp: (_recorded(exp, STATE), (exp / "space.yaml").write_text("train: {lr: [")),
    "bomb_space": lambda exp: (_recorded(exp, STATE), shutil.copy(HOSTILE / "spaces" / "bomb_lr.yaml", exp / "space.yaml")),
    "state_folder": lambda exp: (exp.mkdir(parents=True), (exp / "launch_state.json").mkdir()),
    "locked": _hold_lock,
    "locked_experiment": lambda exp: (_recorded(exp, STATE), _hold_lock(exp))[1],
    "stale_lock_experiment": lambda exp: (_recorded(exp, STATE), (exp / "launch.lock").write_text("pid 999999 on gone\n")),
    "corrupt_trials": lambda exp: _with_tables(exp, b"PAR1 not a table"),
    "trials_without_status": lambda exp: _with_tables(exp, __import__("pandas").DataFrame({"trial_id": ["a"]})),
    "trials_words_for_scores": lambda exp: _with_tables(exp, __import__("pandas").DataFrame(
        {"trial_id": ["a", "b"], "status": ["finished", "finished"], "label": ["x", "y"], "val/avg_f1": ["high", "low"]})),
    "floor_list": lambda exp: _with_tables(exp, files={"bow_floor.json": "[1, 2]"}),
    "decision_not_csv": lambda exp: _with_tables(exp, files={"decision.csv": 'a,b\n1,"2\n'}),
    "space_rf_word": lambda exp: (_with_tables(exp), (exp / "space.yaml").write_text("search: {reduction_factor: x}\n")),
    "space_objectives_dict": lambda exp: (_with_tables(exp), (exp / "space.yaml").write_text(
        "search: {objectives: {a: 1}}\n")),
    "mo_corrupt_trials": lambda exp: (_recorded_mo(exp), (exp / "trials.parquet").write_bytes(b"PAR1 not a table")),
    "report_is_a_link": lambda exp: (_with_tables(exp), (exp / "report").symlink_to(exp.parent)),
    "result_not_json": lambda exp: (_recorded_mo(exp),
                                    (exp / "search" / "trial_a").mkdir(parents=True),
                                    (exp / "search" / "trial_a" / "result.json").write_text("{not json\n")),
    "writable_by_others": lambda exp: (_recorded(exp, STATE), (exp / "launch_state.json").chmod(0o666)),
    "journal_corrupt": lambda exp: (_recorded(exp, STATE), (exp / "optuna.journal").write_text(
        '{"op_code": 0, "study_name": "x"}\n{"op_code": 4, "stu\n{"op_code": 4, "study_id": 0}\n{"op_co')),
    "mo_rungs_corrupt": lambda exp: (_recorded_mo(exp),
                                     (exp / "mo_asha_rungs.json").write_text('{"1": {"t": [0.5]}}')),
    "spool_writable_by_others": lambda exp: (_recorded(exp, STATE), (exp / "mlflow_pending.jsonl").write_text(
        json.dumps(["call", "set_tag", ["0123", "k", "v"], {}]) + "\n"), (exp / "mlflow_pending.jsonl").chmod(0o666)),
    "spool_uploads_elsewhere": lambda exp: (_recorded(exp, STATE), (exp / "mlflow_pending.jsonl").write_text(
        json.dumps(["call", "log_artifact", ["0123", "/etc/hostname"], {}]) + "\n")),
    "masked_state": lambda exp: (_recorded(exp, {**STATE, "tracking_uri": "http://alice:***@127.0.0.1:9"}),
                                 (exp / "mlflow_pending.jsonl").write_text("[\"call\", \"set_tag\", [\"0123\", \"k\", \"v\"], {}]\n")),
    "planted_links": lambda exp: _planted_links(exp),
    "tuner_cut_short": lambda exp: _tuner_cut_short(exp),
    "mlflow_db_garbage": lambda exp: (_recorded(exp, STATE), (exp / "mlflow.db").write_bytes(b"\x8b\x00 not SQLite " * 50)),
}


def _tuner_cut_short(exp: Path) -> None:
    """A recorded experiment whose search phase's Tuner state was cut short mid-write (a kill, a full disk)."""
    import pickle

    _recorded(exp, STATE)
    (exp / "search").mkdir()
    (exp / "search" / "tuner.pkl").write_bytes(pickle.dumps({"state": list(range(2000))}, protocol=5)[:3000])


def _planted_links(exp: Path) -> None:
    """A recorded experiment whose log and leaderboard are links to files of the user's elsewhere."""
    _recorded(exp, STATE)
    for name in ("launch.log", "leaderboard.csv"):
        (exp.parent / f"victim-{name}").write_text("precious")
        (exp / name).symlink_to(exp.parent / f"victim-{name}")


@pytest.fixture
def tiny_train_config(tmp_path_factory, good_data):
    path = tmp_path_factory.mktemp("hostile_cfg") / "tiny.yaml"
    path.write_text(yaml.safe_dump({"data": {"root": str(good_data)},
                                    "model": {"text_encoder": "tiny", "rnn_units": 8, "attention_heads": 2,
                                              "head_dims": [8]},
                                    "train": {"epochs": 1, "batch_size": 4, "progress": False}}))
    return path
