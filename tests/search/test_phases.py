"""The final phase's race, driven through `search.run.phases.final` with Tune replaced by a fake that 'trains'
each entry to a known score: which entries get which seeds in which round."""
import zlib
from types import SimpleNamespace

import numpy as np
import pytest

from search.run import phases
from search.run.phases import Candidate, Outcome
from search.space.parse import load_space
from search.space.trial import meta_of

TRUE = {"rank 1": 0.80, "rank 2": 0.79, "equal_sum": 0.40, "single_task": 0.45, "rlw": 0.795}


@pytest.fixture
def fake_tune(monkeypatch):
    rounds = []

    def fit(exp, phase, grid=None, **kwargs):
        rounds.append((phase, [(meta_of(e).name, meta_of(e).seed) for e in grid]))
        results = []
        for e in grid:
            meta = meta_of(e)
            noise = np.random.default_rng([meta.seed, zlib.crc32(meta.name.encode())]).normal(0, 0.01)
            value = TRUE[meta.name] + noise
            metrics = {"test/avg_f1": value, **{f"test/{t}/f1": value for t in exp.spec.config.tasks}}
            results.append(SimpleNamespace(config={"trial": e}, metrics=metrics, error=None, checkpoint=None))
        return results, len(grid), False

    monkeypatch.setattr(phases, "_fit", fit)
    return rounds


def _exp(tmp_path, *sets):
    spec = load_space("spaces/smoke.yaml", ["search.final_k=2", "search.final_seeds=3", "search.final_max_seeds=7",
                                             "search.final_seed_step=2", *sets])
    return SimpleNamespace(spec=spec, dir=tmp_path, name="exp", max_t=spec.max_t)


def test_the_race_adds_seeds_only_to_undecided_comparisons(tmp_path, fake_tune, capsys):
    exp = _exp(tmp_path)
    out = Outcome(candidates=[Candidate("rank 2", {}, 0.6), Candidate("rank 1", {}, 0.7)])
    phases.final(exp, out)
    first_phase, first = fake_tune[0]
    assert first_phase == "final"
    names = {n for n, _ in first}
    assert names == {"rank 1", "rank 2", "equal_sum", "single_task", "rlw"}
    assert {s for _, s in first} == {1, 2, 3}  # seed 0 trained the searched trials: never reused here
    # equal sum and single-task are far from rank 1 and decided; rank 2 and RLW are close: more seeds, with
    # rank 1 as their pair, nothing for the decided ones
    later = [pairs for _, pairs in fake_tune[1:]]
    assert later, "the race never added seeds"
    assert {n for pairs in later for n, _ in pairs} <= {"rank 1", "rank 2", "rlw"}
    assert {s for n, s in later[0]} == {4, 5}
    verdict = {c.other: c for c in out.comparisons}
    assert verdict["equal_sum"].status == "beats" and verdict["equal_sum"].estimate.n == 3
    assert verdict["rlw"].estimate.n > 3
    assert (tmp_path / "decision.csv").is_file() and (tmp_path / "final_runs.parquet").is_file()
    assert "undecided after 3 seeds" in capsys.readouterr().out


def test_without_room_to_race_every_entry_gets_the_same_seeds_once(tmp_path, fake_tune):
    exp = _exp(tmp_path, "search.final_max_seeds=3")
    out = Outcome(candidates=[Candidate("rank 1", {}, 0.7)])
    phases.final(exp, out)
    assert len(fake_tune) == 1 and sorted({s for _, s in fake_tune[0][1]}) == [1, 2, 3]
    assert len(out.final_runs) == 4 * 3


def test_a_tuned_baseline_searches_its_own_knobs_and_the_final_phase_uses_them(tmp_path, monkeypatch, capsys):
    """search.tune_baselines: equal_sum gets its own search over the space's non-strategy knobs (the
    strategy fixed to its own), kept apart from the leaderboard; the final phase trains it with its own best
    knobs, the other baselines with the winner's."""
    import pandas as pd

    from search.io.files import Files

    exp = _exp(tmp_path, "search.tune_baselines=[equal_sum]", "search.baseline_samples=3",
               "search.baselines=[equal_sum, rlw]")
    plans = []
    tuned = {"r1": 0.01, "r2": 0.002, "r3": 0.005}  # each trial's learning rate; r2 scores best
    configs = {r: {"trial": {"overrides": {"train.lr": lr, "strategy.combiner.name": "equal", "groups": None}}}
               for r, lr in tuned.items()}

    def fit(exp_, phase, grid=None, plan=None, **kwargs):
        plans.append((phase, plan))
        return [SimpleNamespace(config=configs[r], _id=r) for r in tuned], 3, False

    def collect(results, metric, mode, max_t):
        ids = [r._id for r in results]
        return pd.DataFrame(), pd.DataFrame({"trial_id": ids, "epochs": [4] * 3, "status": ["finished"] * 3,
                                             metric: [0.5, 0.7, 0.6], "error": [""] * 3})

    monkeypatch.setattr(phases, "_fit", fit)
    monkeypatch.setattr(phases, "collect", collect)
    monkeypatch.setattr(phases, "trial_id_of", lambda r: r._id)
    out = Outcome()
    phases.tune_baselines(exp, out)
    (phase, plan), = plans
    assert phase == "tune-equal_sum" and plan.num_samples == 3 and plan.study.endswith("-equal_sum")
    assert "strategy" not in plan.space and "groups" not in plan.space and "train" in plan.space  # knobs only
    assert plan.fixed["strategy.combiner.name"] == "equal" and plan.fixed["groups"] is None
    assert out.tuned["equal_sum"]["train.lr"] == 0.002  # the best of its own trials (0.7)
    record = __import__("json").loads((tmp_path / Files.TUNED).read_text())
    assert record["equal_sum"]["trials"] == 3 and record["equal_sum"]["overrides"] == {"train.lr": 0.002}
    entries = {name: ov for name, role, ov in phases._final_entries(exp, out, [Candidate("rank 1", {"train.lr": 0.009}, 0.7)])}
    assert entries["equal_sum"]["train.lr"] == 0.002 and entries["rlw"]["train.lr"] == 0.009


def test_the_final_phase_starts_the_partitions_with_most_models_first(tmp_path, fake_tune):
    """Two workers and a 5-model single-task baseline submitted last would train alone at the end: the
    grid is ordered by the models each entry trains, longest first (stable within a cost)."""
    exp = _exp(tmp_path, "search.final_max_seeds=3")
    two = {"groups": [["binary", "mature", "gory"], ["slapstick", "sarcasm"]]}
    out = Outcome(candidates=[Candidate("rank 1", two, 0.7)])
    phases.final(exp, out)
    order = [name for name, _ in fake_tune[0][1]]
    assert order[:3] == ["single_task"] * 3 and order[3:6] == ["rank 1"] * 3
    assert set(order[6:]) == {"equal_sum", "rlw"}


def test_picks_that_share_a_label_get_distinct_names():
    picks = [Candidate("dsg+equal+all_modalities", {"train.lr": 0.1}, 0.7), Candidate("all_tasks+equal+all_modalities", {}, 0.6),
             Candidate("dsg+equal+all_modalities", {"train.lr": 0.2}, 0.5)]
    assert [c.name for c in phases.distinct_names(picks)] == ["dsg+equal+all_modalities", "all_tasks+equal+all_modalities", "dsg+equal+all_modalities (2)"]


def test_under_cross_validation_every_seed_is_a_repeat_of_every_fold(tmp_path, fake_tune, monkeypatch):
    overrides = []
    fit = phases._fit
    monkeypatch.setattr(phases, "_fit", lambda exp, phase, grid=None, **kw: (
        overrides.extend(e["overrides"] for e in grid), fit(exp, phase, grid, **kw))[1])
    exp = _exp(tmp_path, "search.final_max_seeds=3", "search.cv_folds=3")
    out = Outcome(candidates=[Candidate("rank 1", {}, 0.7)])
    phases.final(exp, out)
    runs = out.final_runs
    assert len(runs) == 4 * 3 * 3 and set(runs["fold"]) == {0, 1, 2} and set(runs["folds"]) == {3}
    for (name, seed), group in runs.groupby(["name", "seed"]):
        assert sorted(group["fold"]) == [0, 1, 2]
    assert all(o["data.cv.folds"] == 3 and o["data.cv.shuffle"] == o["train.seed"] for o in overrides)
    c = {c.other: c for c in out.comparisons}["equal_sum"]
    assert c.estimate.folds == 3 and c.estimate.n == 9 and c.status == "beats"
