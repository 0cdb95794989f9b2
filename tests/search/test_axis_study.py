"""search.run.axis_study: the one-factor-at-a-time design around the best configuration, and its paired effects."""
import pandas as pd
import pytest

from search.run.axis_study import axis_design, axis_effects_table, axis_values

TASKS = ("binary", "gory", "sarcasm")
SPACE = {"train": {"lr": {"loguniform": [1e-3, 1e-2]}},
         "groups": {"partition": [[["binary", "gory", "sarcasm"]], [["binary", "gory"], ["sarcasm"]]]},
         "strategy": {"scheduler": {"choice": {"all_tasks": {}, "dsg": {"iter_gap": {"int": [2, 6]}}}},
                      "combiner": {"choice": {"equal": {}, "gradnorm": {"alpha": {"uniform": [0.5, 2]}}, "pcgrad": {}}},
                      "modality": "all_modalities"}}
BEST = {"train.lr": 0.004, "groups": [["binary", "gory"], ["sarcasm"]], "strategy.scheduler.name": "dsg",
        "strategy.scheduler.iter_gap": 4, "strategy.combiner.name": "gradnorm", "strategy.combiner.alpha": 1.5,
        "strategy.modality.name": "all_modalities"}


def test_every_value_of_every_axis_once_with_the_others_held_at_the_best():
    values = axis_values(SPACE, TASKS)
    assert set(values) == {"strategy.scheduler", "strategy.combiner", "groups"}  # a fixed modality is no axis
    design = dict(axis_design(BEST, values, TASKS))
    assert set(design) == {"scheduler=all_tasks", "combiner=equal", "combiner=pcgrad", "groups=binary+gory+sarcasm"}
    # the changed axis loses the best's option parameters; everything else stays as in the best
    assert design["scheduler=all_tasks"] == {**{k: v for k, v in BEST.items() if k != "strategy.scheduler.iter_gap"},
                                       "strategy.scheduler.name": "all_tasks"}
    assert design["combiner=pcgrad"]["strategy.scheduler.iter_gap"] == 4
    assert "strategy.combiner.alpha" not in design["combiner=pcgrad"]
    assert design["groups=binary+gory+sarcasm"]["groups"] == [["binary", "gory", "sarcasm"]]


def test_effects_are_paired_by_seed_against_the_axis_baseline_value():
    rows = []
    for seed in range(3):
        for name, role, value in (("rank 1", "final", 0.70 + 0.01 * seed), ("combiner=equal", "axis", 0.60 + 0.02 * seed),
                                  ("combiner=pcgrad", "axis", 0.65), ("scheduler=all_tasks", "axis", 0.71),
                                  ("groups=binary+gory+sarcasm", "axis", 0.5)):
            rows.append({"name": name, "role": role, "seed": seed, "test/avg_f1": value})
    table = axis_effects_table(pd.DataFrame(rows), BEST, axis_values(SPACE, TASKS), TASKS).set_index(["axis", "value"])
    gradnorm = table.loc[("combiner", "gradnorm")]  # the best's own value: rank 1's runs
    assert gradnorm["best"] and gradnorm["diff"] == pytest.approx(0.71 - 0.62)  # means of the paired differences
    assert gradnorm["low"] < gradnorm["diff"] < gradnorm["high"]
    assert table.loc[("combiner", "equal"), "diff"] == 0 and table.loc[("combiner", "pcgrad"), "diff"] == pytest.approx(0.03)
    # the baseline of the scheduler axis is `all_tasks`: the best (dsg) is compared against it
    assert table.loc[("scheduler", "dsg"), "diff"] == pytest.approx(0.71 - 0.71)
    assert table.loc[("groups", "binary+gory|sarcasm"), "diff"] == pytest.approx(0.71 - 0.5)


def test_the_model_architecture_and_text_encoder_are_axes():
    space = {**SPACE, "model": {"arch": {"choice": ["hiccap", "late_fusion", "early_fusion"]}},
             "model.text_encoder": {"choice": ["tiny", "minilm"]}}
    best = {**BEST, "model.arch": "late_fusion", "model.text_encoder": "tiny"}
    values = axis_values(space, TASKS)
    assert values["model.arch"] == ["hiccap", "late_fusion", "early_fusion"]
    design = dict(axis_design(best, values, TASKS))
    assert design["arch=hiccap"] == {**best, "model.arch": "hiccap"}  # everything else held at the best
    assert design["text_encoder=minilm"] == {**best, "model.text_encoder": "minilm"}
    assert "arch=late_fusion" not in design
    rows = [{"name": name, "role": role, "seed": seed, "test/avg_f1": value}
            for seed in range(3) for name, role, value in (("rank 1", "final", 0.70 + 0.01 * seed),
                                                           ("arch=hiccap", "axis", 0.60 + 0.01 * seed),
                                                           ("arch=early_fusion", "axis", 0.65))]
    table = axis_effects_table(pd.DataFrame(rows), best, {"model.arch": values["model.arch"]}, TASKS)
    table = table.set_index(["axis", "value"])
    assert table.loc[("arch", "hiccap"), "baseline"] == "hiccap"
    assert table.loc[("arch", "late_fusion"), "best"] and table.loc[("arch", "late_fusion"), "diff"] == pytest.approx(0.1)


PRETRAIN_SPACE = {**SPACE, "pretrain": {"tasks": {"choice": [[], ["vtm"], ["contrast_tv", "vtm"]]}}}


def test_pretraining_is_an_axis_with_no_pretraining_as_its_baseline():
    values = axis_values(PRETRAIN_SPACE, TASKS)
    assert values["pretrain.tasks"] == [[], ["vtm"], ["contrast_tv", "vtm"]]
    design = dict(axis_design({**BEST, "pretrain.tasks": ["vtm"]}, values, TASKS))
    assert design["pretrain=none"]["pretrain.tasks"] == [] and design["pretrain=contrast_tv+vtm"]["pretrain.tasks"] == ["contrast_tv", "vtm"]
    assert "pretrain=vtm" not in design  # the best's own value: its runs are the final phase's
    assert design["pretrain=none"]["strategy.combiner.alpha"] == 1.5  # the other axes as in the best
    assert "pretrain=none" not in dict(axis_design(BEST, values, TASKS))  # a best without the key: no pretraining


def test_pretraining_effects_per_task_are_paired_by_seed_against_no_pretraining():
    from search.run.axis_study import pretraining_effects_table

    best = {**BEST, "pretrain.tasks": ["vtm"]}
    rows = []
    for seed in range(4):
        # vtm helps binary by 0.05 on every seed and changes nothing for gory; sarcasm varies by seed
        for name, role, shift in (("rank 1", "final", {"binary": 0.05, "gory": 0.0, "sarcasm": 0.02 * (seed % 2) - 0.01}),
                                  ("pretrain=none", "axis", {"binary": 0.0, "gory": 0.0, "sarcasm": 0.0}),
                                  ("pretrain=contrast_tv+vtm", "axis", {"binary": -0.1, "gory": 0.0, "sarcasm": 0.0})):
            row = {"name": name, "role": role, "seed": seed, "test/avg_f1": 0.5}
            row.update({f"test/{t}/f1": 0.5 + 0.01 * seed + shift[t] for t in TASKS})
            rows.append(row)
    table = pretraining_effects_table(pd.DataFrame(rows), best, axis_values(PRETRAIN_SPACE, TASKS), TASKS)
    cell = table.set_index(["value", "task"])
    assert set(cell.index) == {(v, t) for v in ("vtm", "contrast_tv+vtm") for t in TASKS}  # the baseline left out
    assert cell.loc[("vtm", "binary"), "diff"] == pytest.approx(0.05)
    assert cell.loc[("vtm", "binary"), "low"] == pytest.approx(0.05)  # the same gain on every seed: sure
    assert cell.loc[("contrast_tv+vtm", "binary"), "diff"] == pytest.approx(-0.1)
    sarcasm = cell.loc[("vtm", "sarcasm")]
    assert sarcasm["low"] < 0 < sarcasm["high"]  # paired differences that disagree between seeds: not sure
    assert (cell["seeds"] == 4).all()


def test_pretraining_effects_are_kept_by_holm_over_every_option_and_task():
    """Six cells (two options x three tasks), each with an effect whose 95% interval alone excludes 0 (p about
    0.02): by chance alone some would; Holm over the six keeps only the effect that is there on every seed."""
    from search.run.axis_study import pretraining_effects_table
    from search.analysis.decision import RunScores

    best = {**BEST, "pretrain.tasks": ["vtm"]}
    marginal = [0.01, 0.03, 0.02, 0.00, 0.04, 0.02]  # mean 0.02, t 3.5 on 5 df: p 0.018 alone
    strong = [0.05, 0.051, 0.049, 0.05, 0.052, 0.048]
    rows = []
    for seed in range(6):
        for name, role in (("rank 1", "final"), ("pretrain=none", "axis"), ("pretrain=contrast_tv+vtm", "axis")):
            shift = {t: 0.0 if name == "pretrain=none" else (strong if (name, t) == ("rank 1", "binary") else marginal)[seed]
                     for t in TASKS}
            rows.append({"name": name, "role": role, "seed": seed, "error": "", "test/avg_f1": 0.5,
                         **{f"test/{t}/f1": 0.5 + 0.01 * seed + shift[t] for t in TASKS}})
    runs = pd.DataFrame(rows)
    table = pretraining_effects_table(runs, best, axis_values(PRETRAIN_SPACE, TASKS), TASKS, RunScores(runs, TASKS))
    cell = table.set_index(["value", "task"])
    assert len(cell) == 2 * len(TASKS)
    assert ((cell["high"] - cell["low"]) > 0).all() and (cell["low"] > 0).all()  # each alone excludes 0
    assert cell["shown"].sum() == 1 and cell.loc[("vtm", "binary"), "shown"]
