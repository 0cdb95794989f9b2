"""The report's front section on a hand-made experiment folder (no training, no data)."""
import json

import numpy as np
import pandas as pd
import yaml

from search.analysis.pareto import hypervolume_trace
from search.space.parse import recorded_space
from search.report.cli import front_main as main
from search.report.front import front_section, markdown_table, parts_of_front
from search.report.inputs import observed, read_front

OBJECTIVES = ["val/gory/f1", "val/sarcasm/f1"]


def _experiment(tmp_path, objectives=OBJECTIVES):
    (tmp_path / "space.yaml").write_text(yaml.safe_dump({"search": {"objectives": objectives}}))
    results = {"a": [(10, 1, 0.6, 0.6), (13, 2, 0.7, 0.7)], "b": [(11, 1, 0.8, 0.55)], "c": [(12, 1, 0.5, 0.5)]}
    for trial, rows in results.items():
        folder = tmp_path / "search" / f"trial_{trial}"
        folder.mkdir(parents=True)
        lines = [json.dumps({"timestamp": ts, "training_iteration": it, OBJECTIVES[0]: g, OBJECTIVES[1]: s})
                 for ts, it, g, s in rows]
        if trial == "a":  # a restored trial re-reports its epoch: counted once
            lines.append(lines[-1])
        (folder / "result.json").write_text("\n".join(lines) + "\n")
    pd.DataFrame({"trial_id": ["a", "b", "c"], "front": [0, 0, 1],
                  "config/strategy.combiner.name": ["gradnorm", "pcgrad", "equal"], "config/groups": ['[["x"]]', "a|b", "-"],
                  OBJECTIVES[0]: [0.7, 0.8, 0.5], OBJECTIVES[1]: [0.7, 0.55, 0.5]}).to_parquet(tmp_path / "trials.parquet")
    (tmp_path / "report").mkdir()
    return tmp_path


def test_results_in_the_order_received_and_the_hypervolume_against_epochs(tmp_path):
    seen = observed(_experiment(tmp_path), OBJECTIVES)
    assert list(zip(seen["trial"], seen["iteration"])) == [("a", 1), ("b", 1), ("c", 1), ("a", 2)]
    trace = hypervolume_trace(seen[OBJECTIVES].to_numpy(), [0.5, 0.5])
    # a: 0.1 x 0.1; b: its 0.3 x 0.05 less the 0.1 x 0.05 inside a's box; c: nothing; a's second epoch:
    # 0.2 x 0.2, and b's 0.1 x 0.05 beyond it
    np.testing.assert_allclose(trace, [0.01, 0.01 + 0.3 * 0.05 - 0.1 * 0.05, 0.02, 0.04 + 0.1 * 0.05])


def test_the_section_names_which_strategy_holds_which_part_of_the_front(tmp_path):
    exp = _experiment(tmp_path)
    trials = pd.read_parquet(exp / "trials.parquet")
    lines = front_section(OBJECTIVES, observed(exp, OBJECTIVES), trials, exp / "report", reference=[0.5, 0.5])
    text = "\n".join(lines)
    assert "after 4 epochs: 0.045" in text and (exp / "report" / "hypervolume.png").stat().st_size > 1000
    assert "2 of 3 trials are non-dominated" in text
    assert "| a | gradnorm | [[\"x\"]] | 0.700 | 0.700 | val/sarcasm/f1 |" in text
    assert "| b | pcgrad | a\\|b | 0.800 | 0.550 | val/gory/f1 |" in text


def test_a_knee_is_best_on_nothing_and_a_single_metric_search_has_no_section(tmp_path):
    trials = pd.DataFrame({"trial_id": ["x", "y", "z"], "front": [0, 0, 0], OBJECTIVES[0]: [1.0, 0.0, 0.6],
                           OBJECTIVES[1]: [0.0, 1.0, 0.6]})
    assert parts_of_front(trials, OBJECTIVES)["best on"].tolist() == ["val/gory/f1", "val/sarcasm/f1", "knee"]
    named = parts_of_front(trials.assign(label=["dsg+equal+all_modalities", "all_tasks+pcgrad+all_modalities", "all_tasks+equal+all_modalities"]), OBJECTIVES)
    assert list(named.columns) == ["configuration", *OBJECTIVES, "best on"]  # by label, as everywhere
    (tmp_path / "space.yaml").write_text(yaml.safe_dump({"search": {"metric": "val/avg_f1"}}))
    objectives, seen, reference = read_front(tmp_path, recorded_space(tmp_path))
    assert objectives == [] and seen.empty and reference is None
    assert front_section([], pd.DataFrame(), trials, tmp_path, None) == []
    assert main([str(tmp_path)]) == 2
    assert markdown_table(pd.DataFrame({"a": [0.12345], "b": ["p|q"]})) == ["| a | b |", "|---|---|", "| 0.123 | p\\|q |"]


def test_the_command_writes_front_md(tmp_path, monkeypatch):
    exp = _experiment(tmp_path)
    monkeypatch.setattr("search.report.inputs._reference", lambda exp_dir, objectives: [0.5, 0.5])
    assert main([str(exp)]) == 0
    assert "## The front of the tasks" in (exp / "report" / "front.md").read_text()


def test_a_folder_the_front_cannot_be_written_in_is_one_line(tmp_path, monkeypatch, capsys):
    """A read-only experiment folder (or a full disk): one line naming it and exit 1, nothing left behind."""
    import errno
    import tempfile

    exp = _experiment(tmp_path)
    before = sorted(p.relative_to(exp) for p in exp.rglob("*"))
    monkeypatch.setattr("search.report.inputs._reference", lambda exp_dir, objectives: [0.5, 0.5])

    def refused(*_, **__):
        raise PermissionError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(tempfile, "mkdtemp", refused)
    assert main([str(exp)]) == 1
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and str(exp) in err and "Permission denied" in err
    assert sorted(p.relative_to(exp) for p in exp.rglob("*")) == before
