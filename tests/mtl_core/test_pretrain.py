"""Hybrid pretraining (docs/methods.md#pretraining): the objectives, the cache, and fine-tuning from it."""
from __future__ import annotations

import multiprocessing
import threading
import time
from dataclasses import replace

import pytest
import torch

from mtl_core import keys
from mtl_core.checkpoint import CheckpointError
from mtl_core.config import ConfigError, build_config
from mtl_core.pretrain import PRETRAIN_TASKS, check_modalities
from mtl_core.pretrain.cache import cache_parts, cached, write_entry
from mtl_core.pretrain.objectives import PretrainModel, derangement, info_nce, masked_mean, retrieval_accuracy
from mtl_core.train import pretrain
from mtl_core.prepare import prepare
from tests.conftest import tiny_raw

ALL = list(PRETRAIN_TASKS)


# -- the objectives ---------------------------------------------------------------------------------


def test_info_nce_of_an_aligned_batch_is_lower_than_of_a_shuffled_one():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(16, 8, generator=g)
    b = a + 0.1 * torch.randn(16, 8, generator=g)
    shuffled = b[derangement(16, g)]
    assert info_nce(a, b, 0.1) < info_nce(a, shuffled, 0.1) - 1.0
    assert retrieval_accuracy(a, b) == 1.0 and retrieval_accuracy(a, shuffled) < 0.2
    # orthogonal partners at a small temperature: the loss is near zero; it is symmetric in its sides
    eye = torch.eye(6)
    assert float(info_nce(eye, eye, 0.01)) < 1e-6
    assert torch.isclose(info_nce(a, shuffled, 0.1), info_nce(shuffled, a, 0.1))


def test_derangement_is_a_permutation_without_fixed_points():
    g = torch.Generator().manual_seed(1)
    seen_pairs = set()
    for n in (2, 3, 5, 16):
        for _ in range(50):
            p = derangement(n, g)
            assert sorted(p.tolist()) == list(range(n))
            assert (p != torch.arange(n)).all()
            seen_pairs.add((n, tuple(p.tolist())))
    assert len({p for n, p in seen_pairs if n == 5}) > 5  # random, not one fixed shift
    with pytest.raises(ValueError):
        derangement(1, g)


@pytest.fixture
def tiny_pretrain(tiny_cfg):
    """A PretrainModel of all six tasks over the tiny data's encoder, and one training batch."""
    from mtl_core.train import build_model

    cfg = tiny_cfg(pretrain={"tasks": ALL, "batch_size": 8})
    data = prepare(cfg, torch.device("cpu"), splits=("train", "val"))
    torch.manual_seed(0)
    model = PretrainModel(build_model(replace(cfg, tasks=()), data.encoder), tuple(ALL), data.encoder.hidden_size)
    return cfg, data, model


def test_matching_negatives_pair_a_clip_with_another_clip_that_has_the_modality(tiny_pretrain):
    cfg, data, model = tiny_pretrain
    inputs, _ = data.splits["train"].batch(torch.arange(8).numpy())
    inputs.present[3, 2] = False  # clip 3 has no audio
    for _ in range(3):
        z = model.encode(inputs)
        for t in ("vtm", "vam", "atm"):
            pos_ok, neg_ok, perm = model._batch[t]
            assert (perm != torch.arange(8)).all()
            a, b = PRETRAIN_TASKS[t][0]
            if "audio" in (a, b):  # clip 3 is in no pair of an audio task, as itself or as a partner
                assert not pos_ok[3]
                who = 3 if b == "audio" else None
                assert not neg_ok[perm == 3].any() if b == "audio" else not neg_ok[3]
                assert who in (3, None)
            else:
                assert pos_ok.all() and neg_ok.all()
    losses, has = model.task_losses(z)
    assert losses.shape == (6,) and has.all() and torch.isfinite(losses).all()
    # z is each modality's summary in the order text, video, audio (eval: no dropout between the two passes)
    model.eval()
    z = model.encode(inputs)
    d = model.width
    seqs, masks = model.encoder.encode_modalities(inputs)
    for j in range(3):
        torch.testing.assert_close(z[:, j * d:(j + 1) * d], masked_mean(seqs[j], masks[j]))
    # the head reads clip i's video summary with its own text (positives), then with clip perm[i]'s (negatives)
    video, text = z[:, d:2 * d], z[:, :d]
    pos_ok, neg_ok, perm = model._batch["vtm"]
    logits, target = model.outputs(z)["vtm"]
    head = model.heads["vtm"]
    torch.testing.assert_close(logits, torch.cat([head(video[pos_ok], text[pos_ok]),
                                                  head(video[neg_ok], text[perm][neg_ok])]))
    assert target.tolist() == [1] * int(pos_ok.sum()) + [0] * int(neg_ok.sum())


@pytest.mark.parametrize("arch,freeze_text", [("hiccap", True), ("late_fusion", True), ("early_fusion", True), ("hiccap", False)])
def test_shared_parameters_are_exactly_what_z_depends_on(tiny_cfg, arch, freeze_text):
    """The gradient combiners' Jacobian and GradNorm read `shared_parameters`: every one must reach z, and every
    trainable parameter that reaches z must be in it (a parameter z never reads, such as the HCA's, would get a
    zero gradient from them, and AdamW's weight decay would move it)."""
    from mtl_core.train import build_model

    cfg = tiny_cfg(model={"arch": arch, "freeze_text": freeze_text}, pretrain={"tasks": ALL, "batch_size": 8})
    data = prepare(cfg, torch.device("cpu"), splits=("train", "val"))
    model = PretrainModel(build_model(replace(cfg, tasks=()), data.encoder), tuple(ALL), data.encoder.hidden_size)
    inputs, _ = data.splits["train"].batch(torch.arange(8).numpy())
    inputs.present[0, 2] = False  # one clip without audio: the missing tokens are read
    if not freeze_text:
        inputs.text_hidden = None  # the trained encoder runs
    z = model.encode(inputs)
    heads = {id(p) for p in model.heads.parameters()}
    candidates = [p for p in model.parameters() if p.requires_grad and id(p) not in heads]
    grads = torch.autograd.grad((z * torch.randn_like(z)).sum(), candidates, allow_unused=True)
    reached = {id(p) for p, g in zip(candidates, grads) if g is not None and bool(g.abs().sum() > 0)}
    assert {id(p) for p in model.shared_parameters()} == reached
    assert {id(p) for p in model.last_shared_parameters()} <= reached


def test_a_task_with_no_usable_pair_trains_nothing(tiny_pretrain):
    _, data, model = tiny_pretrain
    inputs, _ = data.splits["train"].batch(torch.arange(8).numpy())
    inputs.present[:, 1] = False  # the modality schedule dropped video for the whole batch
    losses, has = model.task_losses(model.encode(inputs))
    video_tasks = [t for t in ALL if "video" in PRETRAIN_TASKS[t][0]]
    assert [bool(h) for h in has] == [t not in video_tasks for t in ALL]


def test_a_matching_task_trains_only_on_a_batch_with_both_classes(tiny_pretrain):
    """A batch whose usable pairs are all positives (or all negatives) can teach a matching head only a
    constant answer: it counts as untrainable, as a batch without pairs does."""
    _, data, model = tiny_pretrain
    inputs, _ = data.splits["train"].batch(torch.arange(8).numpy())
    inputs, _ = data.splits["train"].batch(torch.nonzero(inputs.available().all(1))[:2, 0].numpy())  # two clips with everything
    inputs.present[1, 1:] = False  # then clip 1 has text only
    losses, has = model.task_losses(model.encode(inputs))
    trains = dict(zip(ALL, has.tolist()))
    assert trains["vam"] is False  # clip 0's own pair is a positive; clip 1 has neither video nor audio: no negative
    assert losses[ALL.index("vam")] == 0
    assert trains["vtm"] and trains["atm"]  # clip 0's video (audio) with clip 1's text: a negative beside it


def test_missing_modality_is_refused_in_one_line_naming_task_and_modality():
    with pytest.raises(ConfigError) as err:
        check_modalities(("contrast_ta", "vtm"), ("text", "audio"), "/data/text_only")
    assert str(err.value).count("\n") == 0
    assert "vtm" in str(err.value) and "video" in str(err.value) and str(err.value).startswith("pretrain.tasks:")
    check_modalities(("contrast_ta",), ("text", "audio"), "/data/text_only")  # no video needed: fine


def test_config_pretrain_section_is_validated(tiny_data):
    cfg = build_config(tiny_raw(tiny_data, pretrain={"tasks": ["vtm", "contrast_av"], "scheduler": "round_robin",
                                                     "combiner": {"name": "gradnorm", "alpha": 1.0}}))
    assert cfg.pretrain.tasks == ("vtm", "contrast_av") and cfg.pretrain.scheduler.name == "round_robin"
    assert build_config(tiny_raw(tiny_data)).pretrain.tasks == ()  # no pretraining by default
    with pytest.raises(ConfigError) as err:
        build_config(tiny_raw(tiny_data, pretrain={"tasks": ["vtm", "itm", "vtm"], "epochs": 0, "batch_size": 1,
                                                   "scheduler": "nope", "combiner": {"name": "gradnorm", "beta": 1}}))
    text = str(err.value)
    for expected in ("pretrain.tasks: unknown pretraining task 'itm'", "pretrain.tasks: a task is listed twice",
                     "pretrain.epochs:", "pretrain.batch_size:"):
        assert expected in text, text
    with pytest.raises(ConfigError) as err:
        build_config(tiny_raw(tiny_data, pretrain={"tasks": ["vtm"], "scheduler": "nope",
                                                   "combiner": {"name": "gradnorm", "beta": 1}}))
    assert "pretrain.scheduler.name: unknown scheduler 'nope'" in str(err.value)
    assert "pretrain.combiner.beta: unknown parameter" in str(err.value)


# -- the cache --------------------------------------------------------------------------------------


def _slow_compute(log_path):
    def compute():
        with open(log_path, "a") as f:
            f.write("trained\n")
        time.sleep(0.3)  # long enough for every racer to arrive while it trains
        return {"encoder": {"w": torch.arange(4.0)}, "history_json": "[]"}
    return compute


def _race(folder, log_path, out_q):
    entry, trained = cached(folder, "k", _slow_compute(log_path))
    out_q.put((entry["encoder"]["w"].tolist(), trained))


def test_cache_trains_once_when_processes_and_threads_race(tmp_path):
    log_path = tmp_path / "log"
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_race, args=(tmp_path / "c", log_path, q)) for _ in range(2)]
    threads = [threading.Thread(target=_race, args=(tmp_path / "c", log_path, q)) for _ in range(2)]
    for w in procs + threads:
        w.start()
    for w in procs + threads:
        w.join(10)
    results = [q.get(timeout=5) for _ in range(4)]
    assert log_path.read_text() == "trained\n"
    assert all(r[0] == [0.0, 1.0, 2.0, 3.0] for r in results)
    assert sorted(r[1] for r in results) == [False, False, False, True]


def test_a_half_written_entry_is_never_read_and_a_foreign_one_is_refused(tmp_path):
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / ".k.pt.tmp999").write_bytes(b"PK\x03\x04 half a zip")  # a writer killed midway
    entry, trained = cached(folder, "k", _slow_compute(tmp_path / "log"))
    assert trained and entry["encoder"]["w"].tolist() == [0.0, 1.0, 2.0, 3.0]
    write_entry(folder / "bad.pt", {"encoder": [1, 2], "history_json": "[]"})
    with pytest.raises(CheckpointError, match="not a pretrained state"):
        cached(folder, "bad", _slow_compute(tmp_path / "log"))
    (folder / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        cached(folder, "junk", _slow_compute(tmp_path / "log"))


def test_cache_key_follows_what_pretraining_depends_on(tiny_cfg):
    from mtl_core.pretrain.cache import entry_key

    cfg = tiny_cfg(pretrain={"tasks": ["vtm"]})
    data = prepare(cfg, torch.device("cpu"), splits=("train", "val"))
    key = entry_key(cache_parts(cfg, data))
    same = [replace(cfg, model=replace(cfg.model, head_dims=(8, 4))), replace(cfg, train=replace(cfg.train, lr=0.1)),
            replace(cfg, strategy=replace(cfg.strategy, combiner=replace(cfg.strategy.combiner, name="dwa")))]
    other = [replace(cfg, train=replace(cfg.train, seed=1)), replace(cfg, model=replace(cfg.model, rnn_units=8)),
             replace(cfg, pretrain=replace(cfg.pretrain, epochs=5)),
             replace(cfg, pretrain=replace(cfg.pretrain, tasks=("vtm", "atm")))]
    assert all(entry_key(cache_parts(c, data)) == key for c in same)
    assert len({entry_key(cache_parts(c, data)) for c in other} | {key}) == len(other) + 1
    arrays = data.splits["train"].arrays
    data.splits["train"].arrays = replace(arrays, video=arrays.video.copy())  # other data: one value changed
    data.splits["train"].arrays.video[0, 0, 0] += 1.0
    assert entry_key(cache_parts(cfg, data)) != key


def test_cache_key_changes_with_the_objectives_version(tiny_cfg, monkeypatch):
    """An entry trained by older objectives (matching through the HCA) is never read as this version's."""
    from mtl_core.pretrain import objectives
    from mtl_core.pretrain.cache import entry_key

    cfg = tiny_cfg(pretrain={"tasks": ["vtm"]})
    data = prepare(cfg, torch.device("cpu"), splits=("train", "val"))
    key = entry_key(cache_parts(cfg, data))
    monkeypatch.setattr(objectives, "OBJECTIVES_VERSION", objectives.OBJECTIVES_VERSION + 1)
    assert entry_key(cache_parts(cfg, data)) != key


# -- fine-tuning from the pretrained encoder --------------------------------------------------------


def test_finetuning_starts_from_the_pretrained_encoder_with_fresh_heads(tiny_cfg, tmp_path, monkeypatch):
    from mtl_core.prepare import cache_root
    from mtl_core.pretrain.cache import entry_key
    from mtl_core.train import _start_from_pretrained, build_group

    cfg = tiny_cfg(pretrain={"tasks": ["vtm", "contrast_tv"]}, groups=[["binary", "mature"], ["gory", "slapstick", "sarcasm"]])
    data = prepare(cfg, torch.device("cpu"), splits=("train", "val"))
    torch.manual_seed(0)
    fresh = [build_group(cfg, g, data, torch.device("cpu")) for g in cfg.partition()]
    torch.manual_seed(0)
    runs = [build_group(cfg, g, data, torch.device("cpu")) for g in cfg.partition()]
    # a cached entry under the config's key: what a finished pretraining left
    pretrained = {k: torch.randn_like(v.float()).to(v.dtype) for k, v in runs[0].model.encoder_state().items()}
    folder = cache_root(cfg) / "pretrain"
    folder.mkdir(parents=True, exist_ok=True)
    write_entry(folder / f"{entry_key(cache_parts(cfg, data))}.pt",
                {"encoder": pretrained, "history_json": '[{"epoch": 0, "pretrain/val/vtm/acc": 0.75}]'})
    monkeypatch.setattr("mtl_core.train.pretrain", lambda *a: pytest.fail("trained although cached"))
    rng = torch.get_rng_state()
    curve = _start_from_pretrained(cfg, runs, data, torch.device("cpu"))
    assert curve == [{"epoch": 0, "pretrain/val/vtm/acc": 0.75}]
    assert torch.equal(torch.get_rng_state(), rng)  # fine-tuning draws as it would without pretraining
    for run, new in zip(runs, fresh):
        state, init = run.model.state_dict(), new.model.state_dict()
        for k, v in pretrained.items():
            assert torch.equal(state[k], v), k
        heads = [k for k in state if k.startswith("heads.")]
        assert heads and all(torch.equal(state[k], init[k]) for k in heads)
        assert any(not torch.equal(state[k], init[k]) for k in pretrained)


# -- the phase, end to end (slow) -------------------------------------------------------------------


@pytest.mark.slow
def test_matching_is_learned_above_chance_on_validation_clips(tmp_path):
    """The hybrid pretraining of all six tasks on the synthetic default: each matching task's validation
    accuracy (chance 0.5, 128 pairs) at chance after the first epoch and clearly above it over the last five,
    and audio-video retrieval (chance 1/16) above chance. Through the HCA, VTM and ATM stayed at chance here
    (docs/methods.md#pretrain-matching)."""
    from mtl_core.data.synth import write_synthetic

    root = write_synthetic(tmp_path / "data", seed=0, n_train=160, n_val=64, n_test=4)
    cfg = build_config(tiny_raw(root, pretrain={"tasks": ALL, "epochs": 20, "batch_size": 16, "lr": 0.003}))
    data = prepare(cfg, torch.device("cpu"), splits=("train", "val"))
    _, history = pretrain(cfg, data, torch.device("cpu"))
    acc = lambda t: [h[keys.pretrain(keys.task("val", t, "acc"))] for h in history]  # noqa: E731
    # validation accuracy moves by a few points from epoch to epoch at 128 pairs: the mean of the last five
    for t, above in {"vtm": 0.58, "atm": 0.58, "vam": 0.7}.items():
        assert acc(t)[0] < 0.56 and sum(acc(t)[-5:]) / 5 > above, (t, acc(t))
    assert max(acc("contrast_av")[-3:]) > 0.2, acc("contrast_av")
    assert len(history) == 20 and history[0]["epoch"] == 0


@pytest.mark.slow
def test_strategies_pick_and_weight_pretraining_tasks(tiny_cfg, tmp_path):
    cfg = tiny_cfg(pretrain={"tasks": ["contrast_av", "vam"], "epochs": 2, "batch_size": 8,
                             "scheduler": "round_robin", "combiner": "pcgrad", "modality": "one_at_a_time"})
    data = prepare(cfg, torch.device("cpu"), splits=("train", "val"))
    _, history = pretrain(cfg, data, torch.device("cpu"))
    active = [{t: h[keys.pretrain(keys.strategy("active", t))] for t in ("contrast_av", "vam")} for h in history]
    # one_at_a_time: epoch 0 uses text+video only, so neither audio task has a pair; epoch 1 (text+audio)
    # neither; round robin alternates the tasks whenever they can train
    assert active[0] == {"contrast_av": 0.0, "vam": 0.0}
    assert all(keys.pretrain(keys.modality("audio")) in h for h in history)
    cfg = replace(cfg, pretrain=replace(cfg.pretrain, modality=replace(cfg.pretrain.modality, name="all_modalities")))
    _, history = pretrain(cfg, data, torch.device("cpu"))
    for h in history:
        assert h[keys.pretrain(keys.strategy("active", "vam"))] == pytest.approx(0.5, abs=0.2)
        assert keys.pretrain(keys.strategy("weight", "vam")) in h  # pcgrad's applied weights
