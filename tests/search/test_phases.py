"""The final phase's race, driven through `search.phases.final` with Tune replaced by a fake that 'trains'
each entry to a known score: which entries get which seeds in which round."""
import zlib
from types import SimpleNamespace

import numpy as np
import pytest

from search import phases
from search.phases import Candidate, Outcome
from search.space import load_space
from search.trial import meta_of

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
    return SimpleNamespace(spec=spec, dir=tmp_path)


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
