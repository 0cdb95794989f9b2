"""The first rung against the epoch each sampleable strategy first acts in."""
from mtl_core.strategies import REGISTRIES
from search.first_rung import first_rung_warning, late_strategies
from search.space import load_space

def _spec(space: dict, grace: int = 1, epochs: int = 8):
    import yaml

    def load(tmp):
        path = tmp / "s.yaml"
        path.write_text(yaml.safe_dump({"train": {"epochs": epochs}, "search": {"grace_period": grace},
                                        "space": {"strategy": space}}))
        return load_space(path)
    return load


def test_the_earliest_epoch_of_each_late_strategy_is_its_rule():
    assert REGISTRIES["combiner"]["dwa"].earliest_act({}) == 2  # two epochs of losses first
    assert REGISTRIES["combiner"]["equal"].earliest_act({}) == 0
    assert REGISTRIES["scheduler"]["curriculum"].earliest_act({"mode": "assessed", "assessment_epochs": 3}) == 3
    dsg = REGISTRIES["scheduler"]["dsg"]
    assert dsg.acts_from({}) is None and dsg.earliest_act({"patience": 1}) == 3 and dsg.earliest_act({"patience": 0}) == 2


def test_a_first_rung_before_a_strategy_acts_is_named_and_after_it_is_not(tmp_path):
    space = {"combiner": {"choice": {"equal": {}, "dwa": {}}},
             "scheduler": {"choice": {"all": {}, "curriculum": {"mode": "assessed", "assessment_epochs": {"int": [1, 3]}}}}}
    spec = _spec(space, grace=1)(tmp_path)
    assert late_strategies(spec) == {"combiner dwa": 3, "scheduler curriculum": 4}  # the range's worst corner
    line = first_rung_warning(spec)
    assert line.startswith("warning:") and "combiner dwa (from epoch 3)" in line and "grace_period 4" in line
    assert first_rung_warning(_spec(space, grace=4)(tmp_path)) is None
    assert first_rung_warning(_spec({"combiner": {"choice": {"equal": {}, "pcgrad": {}}}})(tmp_path)) is None
