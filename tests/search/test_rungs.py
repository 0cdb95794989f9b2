"""ASHA's first rung against the epoch each sampleable strategy first acts in: derived, or refused."""
import os
from pathlib import Path

import pytest
import yaml

from mtl_core.config import ConfigError
from mtl_core.strategies import REGISTRIES
from search.space.rungs import acting_epochs, check_first_rung, late_strategies
from search.space.parse import load_space

ROOT = Path(__file__).resolve().parents[2]
LATE = {"combiner": {"choice": {"equal": {}, "dwa": {}}},
        "scheduler": {"choice": {"all_tasks": {}, "curriculum": {"mode": "assessed", "assessment_epochs": {"int": [1, 3]}}}}}


def _load(tmp, space: dict, grace=None, epochs: int = 8):
    search = {} if grace is None else {"grace_period": grace}
    path = tmp / "s.yaml"
    path.write_text(yaml.safe_dump({"train": {"epochs": epochs}, "search": search, "space": {"strategy": space}}))
    return load_space(path)


def test_the_earliest_epoch_of_each_late_strategy_is_its_rule():
    assert REGISTRIES["combiner"]["dwa"].earliest_act({}) == 2  # two epochs of losses first
    assert REGISTRIES["combiner"]["equal"].earliest_act({}) == 0
    assert REGISTRIES["scheduler"]["curriculum"].earliest_act({"mode": "assessed", "assessment_epochs": 3}) == 3
    dsg = REGISTRIES["scheduler"]["dsg"]
    assert dsg.acts_from({}) is None and dsg.earliest_act({"patience": 1}) == 3 and dsg.earliest_act({"patience": 0}) == 2


def test_an_explicit_first_rung_before_a_strategy_acts_is_refused_naming_each_and_the_rung(tmp_path):
    spec = _load(tmp_path, LATE, grace=1)
    assert late_strategies(spec) == {"combiner dwa": 3, "scheduler curriculum": 4}  # the range's worst corner
    with pytest.raises(ConfigError) as info:
        check_first_rung(spec)
    line = str(info.value)
    assert line.startswith("search.grace_period: 1 ") and "\n" not in line
    assert "scheduler curriculum (acts in epoch 4)" in line and "combiner dwa (acts in epoch 3)" in line
    assert "use 4 (or auto" in line
    check_first_rung(_load(tmp_path, LATE, grace=4))  # after both: accepted
    check_first_rung(_load(tmp_path, LATE, grace=2, epochs=2))  # a rung at max_t stops nothing: accepted
    check_first_rung(_load(tmp_path, {"combiner": {"choice": {"equal": {}, "pcgrad": {}}}}, grace=1))


@pytest.mark.parametrize("grace", [None, "auto"])
def test_auto_puts_the_first_rung_after_every_strategy_acts_and_at_most_at_max_t(tmp_path, grace):
    assert _load(tmp_path, LATE, grace=grace).search.grace_period == 4
    assert _load(tmp_path, LATE, grace=grace, epochs=3).search.grace_period == 3  # capped: no rung below max_t
    assert _load(tmp_path, {"combiner": {"choice": {"equal": {}, "pcgrad": {}}}}, grace=grace).search.grace_period == 1
    check_first_rung(_load(tmp_path, LATE, grace=grace))


def test_every_shipped_space_passes_and_the_flagship_cuts_at_epoch_3(monkeypatch):
    monkeypatch.setitem(os.environ, "CM_DATA", str(ROOT.parent / "shared" / "data" / "comic_mischief"))
    for path in sorted((ROOT / "spaces").glob("*.yaml")):
        if "comic_mischief" in path.name and not Path(os.environ["CM_DATA"]).is_dir():
            continue
        spec = load_space(path)
        check_first_rung(spec)
        assert spec.search.grace_period == min(spec.max_t, max([1, *acting_epochs(spec.corner_configs).values()])), path.name
    flagship = load_space(ROOT / "spaces" / "groupings.yaml")
    assert (flagship.search.grace_period, flagship.max_t) == (3, 4)


def test_the_launcher_refuses_an_early_rung_in_one_line_before_writing_anything(tmp_path, capsys):
    from search.run.launch import main

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"train": {"epochs": 4}, "search": {"grace_period": 1},
                                    "space": {"strategy": {"scheduler": {"choice": {"all_tasks": {}, "dsg": {}}}}}}))
    rc = main([str(path), "--storage", str(tmp_path / "exp")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: search.grace_period: 1 ") and err.count("\n") == 1, err
    assert "scheduler dsg (acts in epoch 4)" in err
    assert not (tmp_path / "exp").exists()


@pytest.mark.parametrize("value", [None, "Auto", "soon"])
def test_a_grace_period_that_is_neither_a_number_nor_auto_is_named(tmp_path, value):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"search": {"grace_period": value}, "space": {"strategy": LATE}}))
    with pytest.raises(ConfigError, match=r"search.grace_period: expected an integer \(epochs\) or auto"):
        load_space(path)


def test_a_broken_base_still_has_the_space_corners_checked(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"train": {"lr": -1}, "space": {"strategy": {"scheduler": {"choice": {
        "all_tasks": {}, "dsg": {"bogus": 1}}}}}}))
    with pytest.raises(ConfigError) as info:
        load_space(path)
    assert "train.lr" in str(info.value) and "bogus" in str(info.value)


def test_a_dry_run_says_where_the_first_rung_is(tmp_path, capsys):
    from search.run.launch import main

    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({"train": {"epochs": 6}, "search": {"num_samples": 2},
                                    "space": {"strategy": {"combiner": {"choice": {"equal": {}, "dwa": {}}}}}}))
    assert main([str(path), "--dry-run", "--storage", str(tmp_path / "exp")]) == 0
    assert "ASHA's first rung at epoch 3" in capsys.readouterr().out
