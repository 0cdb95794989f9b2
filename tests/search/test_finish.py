import pandas as pd

from search.analysis.decision import Comparison
from search.run.finish import answer_markdown, conclusion, duration
from search.analysis.stats import SeedClipEstimate

BEST = "dsg+equal+all | bin+sla+sar/mat+gor"


def _table():
    rows = [(BEST, "final", 0.630, 0.036), ("equal_sum", "baseline", 0.580, 0.020), ("single_task", "baseline", 0.636, 0.007)]
    return pd.DataFrame([{"name": n, "role": r, "final/test/avg_f1/mean": m, "final/test/avg_f1/std": s, "final/seeds": 3}
                         for n, r, m, s in rows])


def _comparisons():
    return [Comparison(BEST, "equal_sum", SeedClipEstimate(0.05, 0.01, 0.0, 3), "beats", 1, 0.01),
            Comparison(BEST, "single_task", SeedClipEstimate(-0.006, 0.03, 0.0, 3), "undecided", 2, 0.01)]


def test_the_conclusion_names_the_best_and_what_it_beats():
    lines = conclusion(pd.DataFrame(), _table(), _comparisons(), "val/avg_f1")
    assert lines[0] == f"answer: the best configuration is {BEST}: test macro-F1 0.630 ± 0.036 over 3 seeds the search never used"
    assert lines[1].startswith("  beats equal_sum (0.580 ± 0.020): +0.0500 [") and "decided (better)" in lines[1]
    assert lines[2].startswith("  does not beat single_task (0.636 ± 0.007): -0.0060 [") and "undecided" in lines[2]
    assert lines[3] == "  the highest test mean is single_task's (0.636 ± 0.007), not the searched configuration's"


def test_the_parent_run_description_holds_the_same_answer_as_a_table():
    text = answer_markdown(pd.DataFrame(), _table(), _comparisons(), "val/avg_f1")
    assert text.startswith(f"**answer: the best configuration is {BEST}")
    assert "| dsg+equal+all \\| bin+sla+sar/mat+gor | final | 0.630 ± 0.036 | 3 | - |" in text
    assert "| equal_sum | baseline | 0.580 ± 0.020 | 3 | beats +0.0500 [" in text


def test_without_a_final_phase_the_best_trial_is_named_on_validation():
    board = pd.DataFrame([{"trial_id": "t_1", "label": "all+pcgrad+all", "status": "finished", "val/avg_f1": 0.71}])
    lines = conclusion(board, pd.DataFrame(), [], "val/avg_f1")
    assert lines == ["answer: the best trial is all+pcgrad+all (val/avg_f1 0.7100 on validation); "
                     "no final retraining on the test split (search.final_k 0), so no decision"]
    assert conclusion(board.assign(status="failed"), pd.DataFrame(), [], "val/avg_f1") == ["answer: no trial produced a score"]


def test_without_a_final_phase_a_multi_objective_search_answers_with_its_front():
    """The leaderboard of a multi-objective search ranks by front, then crowding: its first row is an end of the
    front, not the trial with the best val/avg_f1, so the answer names the front and the best on it by the metric."""
    board = pd.DataFrame([
        {"trial_id": "t_1", "label": "all+pcgrad+all", "status": "finished", "front": 0, "crowding": float("inf"), "val/avg_f1": 0.52},
        {"trial_id": "t_2", "label": "dsg+equal+all", "status": "stopped", "front": 0, "crowding": 0.4, "val/avg_f1": 0.61},
        {"trial_id": "t_3", "label": "all+rlw+all", "status": "finished", "front": 1, "crowding": float("inf"), "val/avg_f1": 0.50},
        {"trial_id": "t_4", "label": "sequential+equal+all", "status": "failed", "front": 2, "crowding": 0.0, "val/avg_f1": None}])
    lines = conclusion(board, pd.DataFrame(), [], "val/avg_f1")
    assert lines == ["answer: the validation front holds 2 trials (all+pcgrad+all, dsg+equal+all); the highest val/avg_f1 "
                     "on it is dsg+equal+all's (0.6100); no final retraining on the test split (search.final_k 0), so no decision"]
    assert answer_markdown(board, pd.DataFrame(), [], "val/avg_f1").startswith("**answer: the validation front holds 2")


def test_duration():
    assert (duration(12.2), duration(424), duration(3723)) == ("12s", "7m 04s", "1h 02m 03s")


def test_the_report_gets_the_phases_tables_as_they_are(tmp_path):
    """The finish step hands the report what the phases made: nothing is read back from the folder."""
    from types import SimpleNamespace

    from search.tune.experiment import Outcome
    from search.run.finish import report_input
    from search.space.parse import load_space

    spec = load_space("spaces/smoke.yaml")
    exp = SimpleNamespace(spec=spec, name="exp", max_t=spec.max_t, dir=tmp_path)
    out = Outcome(trials=pd.DataFrame({"trial_id": ["a"], "status": ["finished"]}),
                  axis_study=pd.DataFrame({"axis": ["combiner"], "value": ["rlw"], "diff": [0.1]}),
                  tuning={"equal_sum": {"trials": 3, "score": 0.5, "overrides": {}}}, comparisons=_comparisons())
    board = pd.DataFrame({"rank": [1], "trial_id": ["a"]})
    given = report_input(exp, out, board, {"test/avg_f1": 0.5})
    assert given.trials is out.trials and given.axis_study is out.axis_study and given.tuning is out.tuning
    assert given.leaderboard is board and given.floor == {"test/avg_f1": 0.5} and given.base is spec.base
    assert list(given.decisions["other"]) == ["equal_sum", "single_task"]  # the race's table, as decision.csv holds it
    assert given.milestones == [1, 2, 4] and given.metric == spec.search.metric  # grace 1 (auto), factor 2, 4 epochs
    assert given.objectives == [] and given.observed.empty and given.reference is None
    assert list(tmp_path.iterdir()) == []


def test_the_tables_and_the_floor_never_write_through_a_link(tmp_path, monkeypatch, capsys):
    """A link planted at a table's or the floor's name is replaced by the file, and the file it pointed at
    stays as it was (an interrupted launch writes the tables, a finished one the floor too)."""
    from types import SimpleNamespace

    import search.run.finish
    from search.io.files import Files
    from search.tune.experiment import Outcome
    from search.run.finish import _bow_floor, finish
    from search.space.parse import load_space

    spec = load_space("spaces/smoke.yaml")
    exp_dir, elsewhere = tmp_path / "exp", tmp_path / "elsewhere"
    exp_dir.mkdir()
    elsewhere.mkdir()
    names = (Files.LEADERBOARD, Files.TRIALS, Files.HISTORY, Files.FLOOR)
    for name in names:
        (elsewhere / name).write_text("precious")
        (exp_dir / name).symlink_to(elsewhere / name)
    tracker = SimpleNamespace(call=lambda *a, **k: None, close=lambda: 0, log_metrics=lambda *a, **k: None)
    exp = SimpleNamespace(spec=spec, name="exp", max_t=spec.max_t, dir=exp_dir, tracker=tracker,
                          resume_hint=lambda: "resume it")
    trials = pd.DataFrame({"trial_id": ["a"], "status": ["finished"], "epochs": [1], spec.search.metric: [0.5]})
    history = pd.DataFrame({"trial_id": ["a"], "training_iteration": [1], spec.search.metric: [0.5]})
    assert finish(exp, Outcome(trials=trials, history=history, expected=1, interrupted=True)) == 130
    monkeypatch.setattr(search.run.finish, "bag_of_words_floor", lambda *a, **k: {"test/avg_f1": 0.5})
    assert _bow_floor(exp) == {"test/avg_f1": 0.5}
    for name in names:
        assert (elsewhere / name).read_text() == "precious", name
        assert not (exp_dir / name).is_symlink() and (exp_dir / name).stat().st_size > 0, name
    assert sorted(p.name for p in exp_dir.iterdir()) == sorted(names)  # no temporary file left beside them


def test_under_cross_validation_the_floor_is_labelled_as_another_protocol_and_not_compared(tmp_path, capsys,
                                                                                            monkeypatch):
    """The floor is scored on the dataset's test split while the configurations are scored over folds of the
    pooled train and test splits: bow_floor.json says which protocol is which, and the report's floor section
    sets no gap between the two."""
    import dataclasses
    import json
    from types import SimpleNamespace

    import search.run.finish
    from search.io.files import Files
    from search.run.finish import _bow_floor
    from search.report.sections import _floor_section
    from search.space.parse import load_space

    spec = load_space("spaces/smoke.yaml")
    spec = dataclasses.replace(spec, search=dataclasses.replace(spec.search, cv_folds=5))
    tracker = SimpleNamespace(log_metrics=lambda *a, **k: None)
    exp = SimpleNamespace(spec=spec, dir=tmp_path, tracker=tracker)
    monkeypatch.setattr(search.run.finish, "bag_of_words_floor", lambda *a, **k: {"test/avg_f1": 0.5, "test/gory/f1": 0.5})
    floor = _bow_floor(exp)
    saved = json.loads((tmp_path / Files.FLOOR).read_text())
    assert saved == floor and saved["protocol"] == "test_split"
    assert saved["configurations_protocol"] == "cross_validation" and saved["cv_folds"] == 5
    assert "cross-validation" in capsys.readouterr().out
    board = pd.DataFrame({"trial_id": ["a"], "final/name": [BEST], "final/test/avg_f1/mean": [0.63],
                          "final/test/avg_f1/std": [0.03]})  # the leaderboard's best, above the floor's 0.5
    text = "\n".join(_floor_section(saved, board))
    assert "cross-validation" in text and "above the floor" not in text and "below the floor" not in text
    plain = {k: v for k, v in saved.items() if k.startswith("test/")}
    assert "above the floor" in "\n".join(_floor_section(plain, board))  # the test-split protocol: compared
