import re

import pandas as pd

from search.analysis.decision import Comparison
from search.run.finish import answer_markdown, conclusion, duration
from search.analysis.stats import SeedClipEstimate

BEST = "dsg+equal+all_modalities | bin+sla+sar/mat+gor"


def _table():
    rows = [(BEST, "final", 0.630, 0.036), ("equal_sum", "baseline", 0.580, 0.020), ("single_task", "baseline", 0.636, 0.007)]
    return pd.DataFrame([{"name": n, "role": r, "final/test/avg_f1/mean": m, "final/test/avg_f1/std": s, "final/seeds": 3}
                         for n, r, m, s in rows])


def _comparisons():
    return [Comparison(BEST, "equal_sum", SeedClipEstimate(0.05, 0.01, 0.0, 3), "beats", 1, 0.01),
            Comparison(BEST, "single_task", SeedClipEstimate(-0.006, 0.03, 0.0, 3), "undecided", 2, 0.01)]


def _fields(line: str) -> tuple[str, str, str, str]:
    """A comparison line's verdict, baseline, its mean ± sd, and the difference: `  beats equal_sum (m ± s): +d [...`."""
    verb, rest = ("does not beat", line.split("does not beat ", 1)[1]) if "does not beat" in line else \
        ("beats", line.split("beats ", 1)[1])
    name, rest = rest.split(" (", 1)
    mean_sd, rest = rest.split("): ", 1)
    return verb, name, mean_sd, rest.split(" ", 1)[0]


def _table_rows(markdown: str) -> list[list[str]]:
    """The body rows of the Markdown table in `markdown`, as cells (an escaped `\\|` stays in its cell)."""
    rows = [line for line in markdown.splitlines() if line.startswith("|")][2:]
    return [[c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", r.strip())[1:-1]] for r in rows]


def test_the_conclusion_names_the_best_and_what_it_beats():
    lines = conclusion(pd.DataFrame(), _table(), _comparisons(), "val/avg_f1")
    assert len(lines) == 4 and lines[0].startswith("answer: ")  # the answer, then one line per comparison
    assert BEST in lines[0] and "0.630 ± 0.036" in lines[0] and "3 seeds" in lines[0]
    assert _fields(lines[1]) == ("beats", "equal_sum", "0.580 ± 0.020", "+0.0500") and "decided (better)" in lines[1]
    assert _fields(lines[2]) == ("does not beat", "single_task", "0.636 ± 0.007", "-0.0060") and "undecided" in lines[2]
    assert "single_task" in lines[3] and "0.636 ± 0.007" in lines[3]  # the highest mean is not the best's


def test_the_parent_run_description_holds_the_same_answer_as_a_table():
    text = answer_markdown(pd.DataFrame(), _table(), _comparisons(), "val/avg_f1")
    assert text.startswith("**answer: ") and BEST in text.splitlines()[0]
    rows = {r[0]: r for r in _table_rows(text)}
    assert rows[BEST][1:5] == ["final", "0.630 ± 0.036", "3", "-"]
    assert rows["equal_sum"][1:4] == ["baseline", "0.580 ± 0.020", "3"] and rows["equal_sum"][4].startswith("beats +0.0500 [")


def test_without_a_final_phase_the_best_trial_is_named_on_validation():
    board = pd.DataFrame([{"trial_id": "t_1", "label": "all_tasks+pcgrad+all_modalities", "status": "finished", "val/avg_f1": 0.71}])
    lines = conclusion(board, pd.DataFrame(), [], "val/avg_f1")
    assert len(lines) == 1 and lines[0].startswith("answer: ")
    assert "all_tasks+pcgrad+all_modalities" in lines[0] and "0.7100" in lines[0] and "search.final_k 0" in lines[0]
    assert conclusion(board.assign(status="failed"), pd.DataFrame(), [], "val/avg_f1") == ["answer: no trial produced a score"]


def test_without_a_final_phase_a_multi_objective_search_answers_with_its_front():
    """The leaderboard of a multi-objective search ranks by front, then crowding: its first row is an end of the
    front, not the trial with the best val/avg_f1, so the answer names the front and the best on it by the metric."""
    board = pd.DataFrame([
        {"trial_id": "t_1", "label": "all_tasks+pcgrad+all_modalities", "status": "finished", "front": 0, "crowding": float("inf"), "val/avg_f1": 0.52},
        {"trial_id": "t_2", "label": "dsg+equal+all_modalities", "status": "stopped", "front": 0, "crowding": 0.4, "val/avg_f1": 0.61},
        {"trial_id": "t_3", "label": "all_tasks+rlw+all_modalities", "status": "finished", "front": 1, "crowding": float("inf"), "val/avg_f1": 0.50},
        {"trial_id": "t_4", "label": "sequential+equal+all_modalities", "status": "failed", "front": 2, "crowding": 0.0, "val/avg_f1": None}])
    lines = conclusion(board, pd.DataFrame(), [], "val/avg_f1")
    assert len(lines) == 1 and lines[0].startswith("answer: ")
    front = lines[0][lines[0].index("(") + 1:lines[0].index(")")]  # the front's members, in order
    assert front.split(", ") == ["all_tasks+pcgrad+all_modalities", "dsg+equal+all_modalities"]
    assert "dsg+equal+all_modalities's (0.6100)" in lines[0] and "search.final_k 0" in lines[0]
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
    spec = dataclasses.replace(spec, search=dataclasses.replace(spec.search, final=dataclasses.replace(spec.search.final, cv_folds=5)))
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
