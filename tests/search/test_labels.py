import pandas as pd

from search.analysis.labels import (config_label, distinct, groups_label, partition_label, partition_of, run_name,
                           short_names, trial_number)
from search.space.trial import TrialMeta, meta_of, trial_entry

TASKS = ["binary", "mature", "gory", "slapstick", "sarcasm"]
BASE = {"tasks": TASKS, "strategy": {"combiner": {"name": "pcgrad"}}}


def test_short_names_are_unique_prefixes():
    assert short_names(TASKS) == {"binary": "bin", "mature": "mat", "gory": "gor", "slapstick": "sla", "sarcasm": "sar"}
    assert short_names(["gory", "goryish"]) == {"gory": "gory", "goryish": "goryi"}


def test_a_configuration_is_named_by_its_strategy_and_grouping():
    groups = [["binary", "slapstick", "sarcasm"], ["mature", "gory"]]
    overrides = {"strategy.scheduler.name": "dsg", "strategy.combiner.name": "equal", "groups": groups, "train.lr": 0.01}
    assert config_label(overrides, {"tasks": TASKS}) == "dsg+equal+all_modalities | bin+sla+sar/mat+gor"
    assert config_label({}, BASE) == "all_tasks+pcgrad+all_modalities"  # the space's fixed strategy, all tasks in one model
    assert config_label({"groups": [TASKS]}, BASE) == "all_tasks+pcgrad+all_modalities"
    assert groups_label([[t] for t in TASKS]) == "bin/mat/gor/sla/sar"
    assert partition_label(groups) == "binary+slapstick+sarcasm|mature+gory" and partition_of(partition_label(groups)) == groups
    # a group trial of the exhaustive mode trains its tasks alone
    assert config_label({"tasks": ["mature", "gory"], "groups": None}, BASE) == "all_tasks+pcgrad+all_modalities | mat+gor"


def test_the_representation_space_is_its_own_variant():
    z = {"strategy.combiner.name": "upgrad", "strategy.combiner.space": "representation"}
    assert config_label(z, {"tasks": TASKS}) == "all_tasks+upgrad@z+all_modalities"
    assert config_label({**z, "strategy.combiner.space": "parameters"}, {"tasks": TASKS}) == "all_tasks+upgrad+all_modalities"
    fixed = {"tasks": TASKS, "strategy": {"combiner": {"name": "pcgrad", "space": "representation"}}}
    assert config_label({}, fixed) == "all_tasks+pcgrad@z+all_modalities"
    assert config_label({"strategy.combiner.name": "equal"}, fixed) == "all_tasks+equal+all_modalities"  # the sampled method's own


def test_repeated_labels_carry_the_trial_number_and_runs_are_named():
    assert trial_number("b7589_00003") == "3" and trial_number("d0c574b4") == "d0c574b4"
    assert trial_number("d0c574b4", 7) == "7" and trial_number("b7589_00003", float("nan")) == "3"  # Optuna's number
    assert distinct(["a", "b", "a"], ["1", "2", "3"]) == ["a #1", "b", "a #3"]
    final = trial_entry({}, TrialMeta("final", "final", "dsg+equal+all_modalities | bin+sla+sar/mat+gor", 1))
    assert run_name("final", "t_00001", final) == "final dsg+equal+all_modalities | bin+sla+sar/mat+gor seed 1"
    assert run_name("final", "t_00002", trial_entry({}, TrialMeta("final", "baseline", "equal_sum", 1))) \
        == "baseline equal_sum seed 1"
    search = trial_entry({"strategy.scheduler.name": "dsg"}, TrialMeta("search", number=3), BASE)
    assert run_name("search", "d0c574b4", search) == "search 3 dsg+pcgrad+all_modalities"
    assert meta_of(search).label == "dsg+pcgrad+all_modalities" and meta_of(search).partition == "binary+mature+gory+slapstick+sarcasm"


def test_repeated_labels_name_the_knobs_that_tell_them_apart():
    lr = lambda v, **more: {"train.lr": v, "strategy.scheduler.name": "dsg", **more}  # noqa: E731
    configs = [lr(0.0018, **{"train.class_weight": "balanced"}), lr(0.0005, **{"train.class_weight": None}),
               lr(0.01)]
    # lr tells the repeats apart; class weights are not set on every row, the scheduler is in the label already
    assert distinct(["a", "a", "b"], ["1", "2", "3"], configs) == ["a (lr 0.0018)", "a (lr 0.0005)", "b"]
    two = [lr(0.001, **{"train.class_weight": "balanced"}), lr(0.002, **{"train.class_weight": "none"})]
    assert distinct(["a", "a"], ["1", "2"], two) == ["a (class_weight balanced, lr 0.001)", "a (class_weight none, lr 0.002)"]
    # the knob with the most distinct values first; `.name` and `train.` dropped, a list of tasks joined
    pre = [{"pretrain.tasks": tasks, "pretrain.combiner.name": comb, "train.lr": 0.003}
           for tasks, comb in (([], "equal"), ('["vtm"]', "equal"), (["vtm", "atm"], "uncertainty"))]  # a cell: JSON
    assert distinct(["a"] * 3, ["1", "2", "3"], pre) == [
        "a (pretrain.tasks none, pretrain.combiner equal)", "a (pretrain.tasks vtm, pretrain.combiner equal)",
        "a (pretrain.tasks vtm+atm, pretrain.combiner uncertainty)"]
    # identical knobs, or knobs that print alike at two digits: the trial's number
    assert distinct(["a", "a"], ["4", "9"], [lr(0.01), lr(0.01)]) == ["a #4", "a #9"]
    assert distinct(["a", "a"], ["4", "9"], [lr(0.00181), lr(0.00184)]) == ["a #4", "a #9"]
    # a whole number read back as a float prints as one; a cell that only looks like JSON prints as it is
    assert distinct(["a", "a"], ["1", "2"], [lr(0.1, **{"model.rnn_units": 128.0}), lr(0.1, **{"model.rnn_units": 256.0})]) \
        == ["a (model.rnn_units 128)", "a (model.rnn_units 256)"]
    assert distinct(["a", "a"], ["1", "2"], [{"x": "[1"}, {"x": "[2"}]) == ["a (x [1)", "a (x [2)"]
    # a knob-named label never repeats another row's, repeated or not
    assert distinct(["a (lr 0.1)", "a", "a"], ["1", "2", "3"], [lr(0.5), lr(0.1), lr(0.2)]) == \
        ["a (lr 0.1)", "a #2", "a #3"]


def test_the_tables_label_repeats_by_their_config_cells():
    from search.analysis.labels import config_label, distinct
    from search.analysis.results import config_cells, numbers

    table = pd.DataFrame({"trial_id": ["t_00000", "t_00001"], "config/train.lr": [0.001, 0.002],
                          "config/strategy.scheduler.name": ["dsg", "dsg"], "val/avg_f1": [0.5, 0.6]})
    assert config_cells(table) == [{"train.lr": 0.001, "strategy.scheduler.name": "dsg"},
                                   {"train.lr": 0.002, "strategy.scheduler.name": "dsg"}]
    labels = distinct([config_label(c, BASE) for c in config_cells(table)], numbers(table), config_cells(table))
    assert labels == ["dsg+pcgrad+all_modalities (lr 0.001)", "dsg+pcgrad+all_modalities (lr 0.002)"]


def test_an_entry_that_unsets_the_grouping_is_labelled_and_partitioned_as_one_model():
    """A baseline or a group trial sets `groups: None` over a space whose shared sections group the tasks: its
    label and its partition both say one model, not the space's grouping."""
    base = {"tasks": ["binary", "mature"], "groups": [["binary"], ["mature"]]}
    plain = meta_of(trial_entry({"groups": None}, TrialMeta("final", "baseline", "equal_sum", 1), base))
    assert (plain.label, plain.partition) == ("all_tasks+equal+all_modalities", "binary+mature")
    grouped = meta_of(trial_entry({}, TrialMeta("search", number=0), base))
    assert (grouped.label, grouped.partition) == ("all_tasks+equal+all_modalities | bin/mat", "binary|mature")
