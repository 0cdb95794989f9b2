import hashlib
import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from mtl_core import TASKS
from mtl_core.data.arrays import build_cache, load_split, read_source
from mtl_core.data.check import check_dataset
from mtl_core.data.dataset import SplitData, token_rows
from mtl_core.data.layout import DataError, parse_label, read_split
from mtl_core.data.synth import POSITIVE_RATE, write_synthetic
from mtl_core.data.__main__ import main as data_main
from mtl_core.model.text_encoder import load_tokenizer

from conftest import REAL_DATA


def _digest(folder):
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(path.relative_to(folder).as_posix().encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def test_synth_same_seed_same_bytes(tmp_path):
    a = write_synthetic(tmp_path / "a", seed=3, n_train=10, n_val=4, n_test=4)
    b = write_synthetic(tmp_path / "b", seed=3, n_train=10, n_val=4, n_test=4)
    c = write_synthetic(tmp_path / "c", seed=4, n_train=10, n_val=4, n_test=4)
    assert _digest(a) == _digest(b) != _digest(c)


def test_synth_layout_and_structure(tmp_path):
    root = write_synthetic(tmp_path / "s", seed=0, n_train=600, n_val=10, n_test=10)
    recs = read_split(root / "train.json")
    rec = json.loads((root / "train.json").read_text())[recs.clip_ids[0]]
    assert rec["indexes"][0] == 101 and rec["indexes"][-1] == 102
    assert {"words", "y", "mature", "gory", "slapstick", "sarcasm", "label"} <= set(rec)
    assert (recs.labels >= 0).all()
    rates = recs.labels.mean(0)
    for task, rate in POSITIVE_RATE.items():
        assert abs(rates[TASKS.index(task)] - rate) < 0.06, task
    assert rates[TASKS.index("gory")] < 0.12
    # binary is the OR of the four fine-grained tasks
    assert (recs.labels[:, 0] == recs.labels[:, 1:].max(1)).all()
    arr = read_source(root, "train")
    assert 0 < arr.missing_video < 60 and 0 < arr.missing_audio < 60
    assert arr.video.shape[1:] == (36, 1024) and arr.audio.shape[1:] == (63, 128)


def test_parse_label_forms():
    assert parse_label([1, 0]) == 0 and parse_label([0, 1]) == 1
    assert parse_label(1) == 1 and parse_label(0) == 0 and parse_label("[0, 1]") == 1
    for bad in ([1, 1], [0, 0], 2, "x", [0, 1, 0]):
        with pytest.raises((ValueError, json.JSONDecodeError)):
            parse_label(bad)


def _write_split(folder, records, name="train.json"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(records))


def test_missing_label_is_masked_not_zero(tmp_path):
    _write_split(tmp_path, {"a": {"indexes": [101, 102], "words": [], "mature": [0, 1], "gory": 0},
                            "b": {"indexes": [101, 102], "words": [], "mature": 1, "gory": 1, "slapstick": 0,
                                  "sarcasm": 0}})
    recs = read_split(tmp_path / "train.json")
    m, g, s, y = (TASKS.index(t) for t in ("mature", "gory", "slapstick", "binary"))
    assert recs.labels[0, m] == 1 and recs.labels[0, g] == 0
    assert recs.labels[0, s] == -1 and recs.labels[0, y] == -1  # absent: masked
    derived = read_split(tmp_path / "train.json", derive_binary=True)
    assert derived.labels[0, y] == -1  # cannot derive: sarcasm/slapstick missing
    assert derived.labels[1, y] == 1  # OR of the four


def test_cache_matches_source_and_rebuilds_on_change(tiny_data, tmp_path):
    import shutil

    root = tmp_path / "data"
    shutil.copytree(tiny_data, root)
    src = read_source(root, "train")
    cached = load_split(root, "train", cache_dir=tmp_path / "cache")
    assert cached.clip_ids == src.clip_ids
    np.testing.assert_array_equal(cached.video, src.video)
    np.testing.assert_array_equal(cached.audio, src.audio)
    np.testing.assert_array_equal(cached.labels, src.labels)
    np.testing.assert_array_equal(cached.token_values, src.token_values)
    np.testing.assert_array_equal(cached.video_lens, src.video_lens)
    folder = build_cache(root, cache_dir=tmp_path / "cache")
    stamp = (folder / "fingerprint.json").read_text()
    assert build_cache(root, cache_dir=tmp_path / "cache") == folder
    assert (folder / "fingerprint.json").read_text() == stamp  # up to date: not rebuilt
    # change one source feature file: the cache notices and rebuilds with the new values
    clip = src.clip_ids[0]
    path = root / "vggish" / f"{clip}_vggish.npy"
    if not path.exists():
        clip = src.clip_ids[int(np.argmax(src.audio_lens > 0))]
        path = root / "vggish" / f"{clip}_vggish.npy"
    np.save(path, np.full((5, 128), 7.0, np.float32))
    os.utime(path, (time.time() + 5, time.time() + 5))
    rebuilt = load_split(root, "train", cache_dir=tmp_path / "cache")
    i = rebuilt.clip_ids.index(clip)
    assert rebuilt.audio_lens[i] == 5 and (rebuilt.audio[i, :5] == 7.0).all()


def test_retokenize_reproduces_wordpiece_ids(tiny_data):
    tok = load_tokenizer("tiny")
    arr = read_source(tiny_data, "val")
    stored = token_rows(arr, tok, retokenize=False, max_len=500)
    redone = token_rows(arr, tok, retokenize=True, max_len=500)
    assert all(np.array_equal(a, b) for a, b in zip(stored, redone))
    cut = token_rows(arr, tok, retokenize=True, max_len=10)
    assert max(len(r) for r in cut) == 10


def test_dynamic_padding(tiny_data):
    tok = load_tokenizer("tiny")
    arr = read_source(tiny_data, "train")
    split = SplitData(arr, token_rows(arr, tok, False, 500), TASKS)
    lengths = split.tokens.lengths()
    idx = np.argsort(lengths)[:4]  # the four shortest texts
    inputs, labels = split.batch(idx)
    assert inputs.text_ids.shape[1] == lengths[idx].max() < lengths.max()
    assert inputs.text_mask.sum(1).tolist() == lengths[idx].tolist()
    assert inputs.video.shape[1] == max(1, arr.video_lens[idx].max())
    assert labels.shape == (4, len(TASKS))


@pytest.mark.skipif(not REAL_DATA.is_dir(), reason="real Comic Mischief text not present")
def test_real_data_reader():
    arr = read_source(REAL_DATA, "train")
    assert len(arr) == 1007
    assert arr.missing_video == 1007 and arr.missing_audio == 1007  # no features were published
    binary = TASKS.index("binary")
    assert (arr.labels[:, binary] == -1).all()  # no `y`: masked unless derived
    derived = read_source(REAL_DATA, "train", derive_binary=True)
    assert (derived.labels[:, binary] == derived.labels[:, 1:].max(1)).all()
    tok = load_tokenizer("minilm")
    stored = token_rows(arr, tok, False, 500)
    redone = token_rows(arr, tok, True, 500)
    same = np.mean([np.array_equal(a, b) for a, b in zip(stored, redone)])
    assert same > 0.9  # the release's ids are uncased BERT WordPiece, as MiniLM's
    summary, warnings, problems = check_dataset(REAL_DATA, tok)
    assert not problems and not warnings


# --- data check: every bad-input case is one line and exit 1 ------------------------------------

def _good_dataset(tmp_path):
    return write_synthetic(tmp_path / "d", seed=2, n_train=6, n_val=3, n_test=3)


def _check_cli(root):
    return subprocess.run([sys.executable, "-m", "mtl_core.data", "check", str(root)], capture_output=True, text=True)


def test_check_cli_good(tmp_path):
    proc = _check_cli(_good_dataset(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "train: 6 clips" in proc.stdout and "usable" in proc.stdout


def _first_clip(root, split="train"):
    return next(iter(json.loads((root / f"{split}.json").read_text())))


@pytest.mark.parametrize("breakage, expected", [
    ("json", "unreadable JSON"),
    ("label", "label `gory` not a one-hot pair or 0/1"),
    ("width", "expected shape [T, 128]"),
    ("nan", "contains NaN or inf"),
    ("duplicate", "is also in split 'train'"),
    ("empty", "split 'test' is empty"),
])
def test_check_cli_problems(tmp_path, capsys, breakage, expected):
    """The check's main in-process (the subprocess entry point is tested above): one `problem:` line, exit 1."""
    root = _good_dataset(tmp_path)
    clip = _first_clip(root)
    if breakage == "json":
        (root / "val.json").write_text("{not json")
    elif breakage == "label":
        recs = json.loads((root / "train.json").read_text())
        recs[clip]["gory"] = [1, 1]
        (root / "train.json").write_text(json.dumps(recs))
    elif breakage == "width":
        np.save(root / "vggish" / f"{clip}_vggish.npy", np.zeros((4, 100), np.float32))
    elif breakage == "nan":
        np.save(root / "i3d" / f"{clip}_rgb.npy", np.full((4, 1024), np.nan, np.float32))
    elif breakage == "duplicate":
        train, val = (json.loads((root / f"{s}.json").read_text()) for s in ("train", "val"))
        val[clip] = train[clip]
        (root / "val.json").write_text(json.dumps(val))
    elif breakage == "empty":
        (root / "test.json").write_text("{}")
    code = data_main(["check", str(root)])  # a traceback would raise here
    stderr = capsys.readouterr().err
    assert code == 1
    problems = [line for line in stderr.splitlines() if line.startswith("problem:")]
    assert len(problems) == 1 and expected in problems[0], stderr


def test_check_warns_on_foreign_vocabulary(tmp_path):
    root = _good_dataset(tmp_path)
    for split in ("train", "val", "test"):
        recs = json.loads((root / f"{split}.json").read_text())
        for rec in recs.values():  # shift ids as a cased vocabulary would: words no longer match
            rec["indexes"] = [101] + [i + 7 for i in rec["indexes"][1:-1]] + [102]
        (root / f"{split}.json").write_text(json.dumps(recs))
    summary, warnings, problems = check_dataset(root, load_tokenizer("minilm"))
    assert not problems
    assert any("another BERT vocabulary" in w for w in warnings)


def test_reader_names_file_and_clip(tmp_path):
    _write_split(tmp_path, {"clipX": {"indexes": [101], "words": [], "mature": [2, 0]}})
    with pytest.raises(DataError, match=r"train.json: clip clipX: label `mature`"):
        read_split(tmp_path / "train.json")


def test_a_split_file_is_bounded_before_it_is_parsed(tmp_path, monkeypatch):
    import mtl_core.data.layout as layout

    _write_split(tmp_path, {"clipX": {"indexes": [101], "words": [], "mature": [1, 0]}})
    monkeypatch.setattr(layout, "MAX_SPLIT_BYTES", 10)
    monkeypatch.setattr(layout.json, "loads", lambda *a, **k: pytest.fail("parsed before the size check"))
    with pytest.raises(DataError, match=r"train.json: \d+ bytes, more than a split file may hold \(10;"):
        read_split(tmp_path / "train.json")


def test_a_clip_id_never_leads_outside_the_feature_folders(tmp_path):
    """An id is one plain file name: `../../outside/evil` would read `outside/evil_vggish.npy` beside the
    dataset, and a 300-character id makes a file name the system refuses (ENAMETOOLONG)."""
    from mtl_core.data.layout import MAX_CLIP_ID_BYTES, audio_path, load_audio, video_paths

    root = tmp_path / "data" / "d"
    (tmp_path / "data" / "outside").mkdir(parents=True)
    np.save(tmp_path / "data" / "outside" / "evil_vggish.npy", np.ones((3, 128), np.float32))
    for bad in ("../../outside/evil", "c" * 300, "a\\b", "..", ".", "", "two\nlines", "nul\x00", "é" * 123):
        _write_split(root, {bad: {"indexes": [101], "words": []}})
        with pytest.raises(DataError, match="is not a plain file name") as caught:
            read_split(root / "train.json")
        assert "\n" not in str(caught.value)
        with pytest.raises(DataError, match="is not a plain file name"):
            audio_path(root, bad)
    with pytest.raises(DataError):
        load_audio(root / "vggish" / "x", "../../../outside/evil")
    longest = "é" * (MAX_CLIP_ID_BYTES // 2) + "a" * (MAX_CLIP_ID_BYTES % 2)  # exactly the limit in UTF-8
    _write_split(root, {longest: {"indexes": [101], "words": []}, "clip 1 (copy)": {"indexes": [101]}})
    assert read_split(root / "train.json").clip_ids == [longest, "clip 1 (copy)"]
    assert not video_paths(root, longest)[0].is_file()  # a name the system accepts: missing, not an error


def test_malformed_json_values_are_one_data_error(tmp_path):
    """Nesting past the recursion limit, NaN/Infinity (json reads them; int(inf) overflows) and a label that
    is a deeply nested JSON string: each a DataError naming the file (and clip), never another exception."""
    deep = "[" * 100_000 + "]" * 100_000
    cases = {
        deep: "unreadable JSON (nested too deeply)",
        '{"c": {"indexes": [1, Infinity]}}': "unreadable JSON (Infinity is not JSON)",
        '{"c": {"indexes": [1, -Infinity]}}': "unreadable JSON (-Infinity is not JSON)",
        '{"c": {"y": NaN}}': "unreadable JSON (NaN is not JSON)",
        '{"c": {"indexes": [1, 1e400]}}': "clip c: `indexes`/`words` are not lists",
        '{"c": {"indexes": [1, -5]}}': "clip c: `indexes` holds -5, not a token id",
        json.dumps({"c": {"mature": deep}}): "clip c: label `mature` not a one-hot pair or 0/1 (nested too deeply)",
        json.dumps({"c": {"mature": "[1, NaN]"}}): "clip c: label `mature` not a one-hot pair or 0/1 (NaN is not",
        json.dumps({"c": {"indexes": deep}}): "clip c: `indexes`/`words` are not lists",
        json.dumps({"c": {"mature": list(range(10_000))}}): "clip c: label `mature` not a one-hot pair or 0/1: [0,",
    }
    for text, says in cases.items():
        (tmp_path / "train.json").write_text(text)
        with pytest.raises(DataError) as caught:
            read_split(tmp_path / "train.json")
        message = str(caught.value)
        assert message.startswith(str(tmp_path / "train.json")) and says in message and len(message) < 400, message
    assert parse_label("[0, 1]") == 1


def test_an_unreadable_cache_stamp_rebuilds_the_cache(tmp_path):
    root = _good_dataset(tmp_path)
    folder = build_cache(root, cache_dir=tmp_path / "cache")
    for text in ("{not json", "[1, 2]", "[" * 100_000):
        (folder / "fingerprint.json").write_text(text)
        assert build_cache(root, cache_dir=tmp_path / "cache") == folder
        assert json.loads((folder / "fingerprint.json").read_text())["root"] == str(root.resolve())
