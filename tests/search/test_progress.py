"""search.tune.progress: the console's line, in place on a terminal, on a change (or a minute) elsewhere."""
from types import SimpleNamespace

from search.space.rungs import expected_epochs
from search.tune.progress import Progress
from search.space.trial import TrialMeta, trial_entry

BASE = {"tasks": ["binary", "mature"]}


def _trial(tid, overrides=None, meta=TrialMeta("search"), status="RUNNING", epochs=0):
    config = {"settings": {"base": BASE}, "trial": trial_entry(overrides or {}, meta)}
    return SimpleNamespace(trial_id=tid, config=config, status=status, last_result={"training_iteration": epochs},
                           error_file=None, error_msg="boom")


def test_asha_spends_about_a_share_of_the_full_budget():
    assert expected_epochs(8, 4, 1, 2) == 8 * (1 + 1 / 2 + 2 / 4)  # rungs 1, 2, 4
    assert expected_epochs(3, 5, 5, 3) == 15  # one rung: every trial to the end


def test_a_log_gets_a_line_on_each_change_with_the_best_by_name(capsys):
    p = Progress("search", "val/avg_f1", "max", total=2, max_t=2, budget=4, live=False)
    a, b = _trial("x_00001", {"strategy.scheduler.name": "dsg"}), _trial("x_00002")
    p.on_trial_result(0, [a, b], a, {"val/avg_f1": 0.5})  # the first score: a change
    p.on_trial_result(0, [a, b], b, {"val/avg_f1": 0.7})  # a better one: no line (a minute has not passed)
    a.last_result = {"training_iteration": 1}  # still RUNNING: Tune marks it after the callbacks
    p.on_trial_complete(0, [a, b], a)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "best val/avg_f1 0.5000 (dsg+equal+all_modalities)" in lines[0]
    assert lines[1].startswith("search: 1/2 trials done (0 finished, 1 stopped early, 0 failed), 1 running; 2/4 epochs; "
                               "best val/avg_f1 0.7000 (all_tasks+equal+all_modalities); ")
    assert "left" in lines[1] and "x_0000" not in "".join(lines)


def test_the_final_phase_shows_no_score_and_no_ray_id(capsys):
    p = Progress("final", "val/avg_f1", "max", total=1, max_t=1, show_best=False, live=False)  # as the tuner builds it
    t = _trial("f_00000", meta=TrialMeta("final", "baseline", "equal_sum", 1))
    p.on_trial_result(0, [t], t, {"val/avg_f1": 0.5, "test/avg_f1": 0.4})
    p.on_trial_error(0, [t], t)
    out = capsys.readouterr().out
    assert "baseline equal_sum seed 1 failed: boom" in out
    assert "0.4" not in out and "0.5" not in out and "f_0000" not in out and "1 failed), 0 running" in out


def test_a_terminal_gets_one_line_rewritten_in_place(capsys):
    p = Progress("search", "val/avg_f1", "max", total=1, max_t=1, live=True)
    t = _trial("x_00001")
    p.on_trial_result(0, [t], t, {"val/avg_f1": 0.5})
    t.status = "TERMINATED"
    t.last_result = {"training_iteration": 1}
    p.on_trial_complete(0, [t], t)
    p.on_experiment_end([t])
    out = capsys.readouterr().out
    assert out.count("\r\x1b[K") >= 2 and out.endswith("\n") and out.count("\n") == 1


def test_epochs_past_the_estimate_are_not_shown_as_a_fraction_over_one(capsys):
    """Asynchronous ASHA can promote more than the estimate (a measured search: 27 epochs of 19 expected)."""
    p = Progress("search", "val/avg_f1", "max", total=4, max_t=3, budget=2, live=False)
    a, b = _trial("x_00001"), _trial("x_00002")
    for epoch in (1, 2, 3):
        a.last_result = {"training_iteration": epoch}
        p.on_trial_result(0, [a, b], a, {"val/avg_f1": 0.5})
    a.status = "TERMINATED"
    p.on_trial_complete(0, [a, b], a)
    last = capsys.readouterr().out.splitlines()[-1]
    assert "3/2" not in last and "3 epochs (about 2 expected)" in last
    assert "left" in last  # still an estimate of the time left, from the trials still to end


def test_the_eta_weighs_each_trial_by_the_models_it_trains(capsys, monkeypatch):
    """A final phase of a five-model single-task baseline and a one-model entry, 2 epochs each: after the
    baseline's first epoch, 5 of 12 model-epochs are done, not 1 of 4 epochs."""
    import search.tune.progress as progress

    clock = iter([0.0, 50.0, 50.0, 50.0])
    monkeypatch.setattr(progress.time, "monotonic", lambda: next(clock))
    single = _trial("f_00000", {"groups": [[t] for t in ("binary", "mature", "gory", "slapstick", "sarcasm")]})
    one = _trial("f_00001")
    p = Progress("final", "val/avg_f1", "max", total=2, max_t=2, show_best=False, live=False, every_s=0.0,
                 cost=lambda trial: len(trial.config["trial"]["overrides"].get("groups") or [0]), work=12)
    p.on_trial_result(0, [single, one], single, {"val/avg_f1": 0.5})
    line = capsys.readouterr().out.splitlines()[-1]
    assert "1/4 epochs" in line and "about 1m 10s left" in line  # 50 s x (12 - 5) / 5; by epochs: 2m 30s
