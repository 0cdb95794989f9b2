"""The multi-objective scheduler's decisions on scripted results (fake trials, no Ray cluster)."""
import math
import pickle
import random
from types import SimpleNamespace

import pytest
from ray.tune.schedulers import ASHAScheduler, TrialScheduler

from search.space.rungs import rungs
from search.tune.mo_asha import MultiObjectiveASHA

GO, STOP = TrialScheduler.CONTINUE, TrialScheduler.STOP
METRICS = ["a", "b"]


def _scheduler(**kwargs):
    args = dict(metrics=METRICS, modes=["max", "max"], max_t=8, grace_period=1, reduction_factor=2,
                tie_break="crowding")
    return MultiObjectiveASHA(**{**args, **kwargs})


def _report(s, trial_id, t, a, b):
    return s.on_trial_result(None, SimpleNamespace(trial_id=trial_id), {"training_iteration": t, "a": a, "b": b})


def test_rungs_are_those_of_ray_asha():
    assert rungs(1, 2, 8)[:-1] == [1, 2, 4]
    assert rungs(1, 3, 9)[:-1] == [1, 3]  # at 9 = max_t a trial ends anyway
    assert rungs(10, 3, 100)[:-1] == [10, 30, 90]
    assert rungs(4, 2, 4)[:-1] == []


def test_promotions_on_a_scripted_sequence():
    s = _scheduler()
    # rung 1 (epoch 1): (decision, why)
    assert _report(s, "A", 1, 0.5, 0.5) == GO    # the first at its rung: continue
    assert _report(s, "B", 1, 0.6, 0.6) == GO    # 2 vectors, keep 1: B dominates A
    assert _report(s, "C", 1, 0.4, 0.4) == STOP  # 3, keep 1: C is in the last front
    assert _report(s, "D", 1, 0.7, 0.3) == GO    # 4, keep 2: front {B, D}, both ends of it
    assert _report(s, "E", 1, math.nan, 9.0) == STOP  # 5, keep 2: diverged, dominated by everything
    assert _report(s, "F", 1, 0.3, 0.9) == GO    # 6, keep 3: front {B, D, F}, F an end (crowding inf)
    assert _report(s, "G", 1, 0.55, 0.55) == STOP  # 7, keep 3: front 1 (B dominates it), three ahead
    assert _report(s, "H", 1, 0.65, 0.45) == GO  # 8, keep 4: front 0 = {B, D, F, H}; of its inner points
    # B is the more isolated (crowding 1.625 vs 0.75), so D, F and B rank ahead of H: fourth, kept
    assert _report(s, "I", 1, 0.62, 0.5) == STOP  # 9, keep 4: front 0 again, and the most crowded of five
    # later epochs: recorded once per rung, decided by what that rung holds so far
    assert _report(s, "B", 2, 0.65, 0.6) == GO   # alone at rung 2
    assert _report(s, "B", 3, 0.1, 0.1) == GO    # no rung at 3: no decision
    assert _report(s, "D", 2, 0.6, 0.2) == STOP  # 2 vectors, keep 1: B dominates D
    assert _report(s, "F", 2, 0.3, 0.9) == GO    # 3, keep 1: F on the front with B, an end of it
    assert _report(s, "B", 4, 0.7, 0.7) == GO
    assert _report(s, "B", 8, 0.7, 0.7) == STOP  # max_t
    assert set(s.rungs[1]) == set("ABCDEFGHI") and set(s.rungs[2]) == {"B", "D", "F"} and set(s.rungs[4]) == {"B"}
    assert s.num_stopped == 6


@pytest.mark.parametrize("eta", [2, 3, 4])
def test_with_one_objective_the_cut_is_ray_asha_s(eta):
    """With one objective the decisions are those of Ray's ASHA (the scalar search it is benchmarked against)
    wherever Ray's cutoff, the (1 - 1/eta) quantile of the scores recorded before, is one of those scores; where
    the quantile falls between two, Ray interpolates and a score inside that gap is stopped here."""
    rng = random.Random(eta)
    theirs = ASHAScheduler(metric="a", mode="max", max_t=8, grace_period=1, reduction_factor=eta)
    ours = MultiObjectiveASHA(["a"], ["max"], max_t=8, grace_period=1, reduction_factor=eta)
    before, differed = [], 0
    for i in range(60):
        trial, score = SimpleNamespace(trial_id=str(i)), rng.random()
        theirs.on_trial_add(None, trial)
        result = {"training_iteration": 1, "a": score}
        ray_says, we_say = theirs.on_trial_result(None, trial, result), ours.on_trial_result(None, trial, result)
        if we_say != ray_says:
            q, ranked = (1 - 1 / eta) * (len(before) - 1), sorted(before)
            assert q != int(q) and ranked[int(q)] < score < ranked[int(q) + 1] and we_say == STOP, (i, eta)
            differed += 1
        before.append(score)
    assert ours.num_stopped >= theirs._num_stopped > 0 and differed <= 60 // eta


def test_a_second_trial_behind_the_first_stops_even_below_eta_vectors():
    """The early trials are not waved through: with eta 4, the second trial at a rung continues only if the
    first is not ahead of it (Ray's ASHA: its score must reach the first's)."""
    s = _scheduler(reduction_factor=4, max_t=16)
    assert _report(s, "A", 1, 0.5, 0.5) == GO
    assert _report(s, "B", 1, 0.4, 0.4) == STOP
    assert _report(s, "C", 1, 0.6, 0.3) == GO  # on the front with A: nothing ahead of it


def test_the_hypervolume_contribution_keeps_a_knee_that_crowding_would_stop():
    # X and Y are the ends of the front, Z its knee. Scaled to [0, 1] with the reference 0.1 below the
    # worst of each objective, X and Y each own a 0.1 x 0.1 corner, Z the 0.9 x 0.9 square: Z ranks first.
    for tie_break, decision in (("crowding", STOP), ("hypervolume", GO)):
        s = _scheduler(tie_break=tie_break)
        assert _report(s, "X", 1, 1.0, 0.0) == GO
        assert _report(s, "Y", 1, 0.0, 1.0) == GO
        assert _report(s, "Z", 1, 0.9, 0.9) == decision, tie_break
    assert MultiObjectiveASHA(METRICS, ["max", "max"], max_t=4).tie_break == "hypervolume"  # the default


def test_the_epsilon_net_orders_every_front_strictly_and_spreads_it():
    # A and B are mirror images, C lies between them; each is on the front, and every mean ties (scaled,
    # 0.5). The ε-net seeds at the first best mean (A), places the farthest next (B), then C: B and C each
    # have a trial ahead, more than a rung of 2 or 3 allows at eta 2. The hypervolume contribution keeps
    # both (B ties with A; C owns the largest square); so does crowding at these sizes (every row an end).
    decisions = {}
    for tie_break in ("epsilon_net", "hypervolume"):
        s = _scheduler(tie_break=tie_break)
        decisions[tie_break] = [_report(s, "A", 1, 0.6, 0.4), _report(s, "B", 1, 0.4, 0.6), _report(s, "C", 1, 0.5, 0.5)]
    assert decisions == {"epsilon_net": [GO, STOP, STOP], "hypervolume": [GO, GO, GO]}
    s = _scheduler(tie_break="epsilon_net")
    assert [_report(s, t, 1, 0.5, 0.5) for t in "ABC"] == [GO, GO, GO]  # equal vectors still tie


def test_the_trainables_worst_score_counts_as_diverged_and_does_not_squash_the_others():
    from mtl_core import keys

    s = _scheduler(tie_break="hypervolume")
    assert _report(s, "X", 1, 1.0, 0.0) == GO
    assert _report(s, "W", 1, -keys.WORST, 0.95) == STOP  # its sarcasm score alone would put it on the front
    assert all(math.isnan(v) for v in s.rungs[1]["W"])
    # scaled over X, Y and Z only, Z keeps its knee (with -1e9 in the scale every gory value would be 1.0)
    assert _report(s, "Y", 1, 0.0, 1.0) == GO
    assert _report(s, "Z", 1, 0.9, 0.9) == GO


def test_minimised_objectives_are_turned_around():
    s = _scheduler(modes=["min", "max"])
    assert _report(s, "A", 1, 0.2, 0.5) == GO
    assert _report(s, "B", 1, 0.1, 0.6) == GO    # lower a, higher b: B dominates A
    assert _report(s, "C", 1, 0.3, 0.4) == STOP


def test_equal_vectors_continue_or_stop_together():
    s = _scheduler()
    assert [_report(s, t, 1, 0.5, 0.5) for t in "ABCD"] == [GO, GO, GO, GO]
    assert _report(s, "E", 1, 0.4, 0.4) == STOP


def test_a_result_without_the_objectives_decides_nothing():
    s = _scheduler()
    assert s.on_trial_result(None, SimpleNamespace(trial_id="A"), {"training_iteration": 1, "a": 0.1}) == GO
    assert s.rungs[1] == {}


def test_a_trial_first_seen_past_a_rung_is_recorded_at_the_highest_it_reached():
    s = _scheduler()
    assert _report(s, "A", 3, 0.5, 0.5) == GO
    assert set(s.rungs[2]) == {"A"} and s.rungs[1] == {}


def test_a_trial_that_ends_at_a_rung_is_recorded_there():
    s = _scheduler()
    s.on_trial_complete(None, SimpleNamespace(trial_id="A"), {"training_iteration": 1, "a": 0.5, "b": 0.5})
    assert s.rungs[1] == {"A": [0.5, 0.5]}


def test_tune_may_not_set_a_single_metric_beside_the_objectives():
    s = _scheduler()
    assert s.set_search_properties(None, None) is True
    assert s.set_search_properties("search/score", "max") is False


def test_a_restored_scheduler_ranks_against_what_was_recorded_before_the_interrupt(tmp_path):
    state = tmp_path / "rungs.json"
    built = _scheduler(state_file=str(state))
    pristine = pickle.dumps(built)  # what tuner.pkl holds: the scheduler as the experiment was built
    assert _report(built, "A", 1, 0.5, 0.5) == GO
    assert _report(built, "B", 1, 0.6, 0.6) == GO
    assert _report(built, "X", 1, math.nan, math.nan) == STOP  # diverged
    restored = pickle.loads(pristine)
    assert restored.rungs[1] == {}
    # with the rungs read back, C faces A, B and X: keep 2 of 4, C is behind B only
    assert _report(restored, "C", 1, 0.55, 0.55) == GO
    assert set(restored.rungs[1]) == {"A", "B", "X", "C"}
    assert _report(restored, "D", 1, 0.4, 0.4) == STOP
    fresh = _scheduler()  # without the recorded vectors the same result would have continued
    assert _report(fresh, "D", 1, 0.4, 0.4) == GO


def test_save_and_restore_round_trip(tmp_path):
    s = _scheduler()
    _report(s, "A", 1, 0.5, math.nan)
    _report(s, "B", 2, 0.6, 0.6)
    s.save(str(tmp_path / "s.json"))
    other = _scheduler()
    other.restore(str(tmp_path / "s.json"))
    assert set(other.rungs[1]) == {"A"} and other.rungs[2] == {"B": [0.6, 0.6]} and other.num_stopped == s.num_stopped


def test_one_mode_per_metric():
    with pytest.raises(ValueError):
        MultiObjectiveASHA(["a", "b"], ["max"], max_t=4)


def test_a_stop_cut_off_by_a_kill_still_stops_the_trial_after_resume(tmp_path):
    """The scheduler told X to stop and wrote so, then the launcher was killed before Tune applied it: a
    resumed experiment restores X from its checkpoint and X reports its next epoch. It must stop."""
    state = tmp_path / "rungs.json"
    built = _scheduler(state_file=str(state))
    pristine = pickle.dumps(built)
    assert _report(built, "A", 1, 0.6, 0.6) == GO
    assert _report(built, "X", 1, 0.4, 0.4) == STOP
    restored = pickle.loads(pristine)  # --resume: the scheduler as built, the state file read back
    assert _report(restored, "X", 2, 0.9, 0.9) == STOP
    assert _report(restored, "A", 2, 0.7, 0.7) == GO


def test_an_exact_copy_of_a_front_member_ranks_with_it():
    """Equal vectors tie (macro-F1 on a hundred clips ties often): a trial whose vector equals a front
    member's ranks as a variant 1e-4 better than that member does, not behind the whole front (each twin
    alone adds no hypervolume the other does not, so a contribution counted per row gives both 0)."""
    front = [(0.9, 0.1), (0.75, 0.3), (0.6, 0.45), (0.45, 0.6), (0.3, 0.75), (0.1, 0.9), (0.2, 0.2)]
    for last in [(0.6001, 0.45), (0.6, 0.45)]:
        s = _scheduler(tie_break="hypervolume")
        for i, (a, b) in enumerate(front):
            _report(s, f"T{i}", 1, a, b)
        assert _report(s, "Z", 1, *last) == GO, last
