"""The shipped architecture space: it searches every architecture and every offline text encoder with the
strategies at their defaults, and its final phase compares like with like (the axis study and single_task keep
the best's model choice except on the axis they vary)."""
from pathlib import Path

from mtl_core.model.fusion import ARCHITECTURES
from mtl_core.strategies import AXES, BASELINE
from search.run.axis_study import axis_design, axis_values
from search.space.baselines import baseline_overrides
from search.space.parse import load_space
from search.space.optuna import sample_configs
from search.space.trial import trial_config

SPACE = Path(__file__).resolve().parents[2] / "spaces" / "architectures.yaml"
ENCODERS = {"minilm", "tiny"}  # the encoders that load here without a download


def test_the_space_loads_and_samples_every_architecture_and_encoder():
    spec = load_space(SPACE)
    assert spec.config.data.root is None  # the embedded synthetic default
    configs = sample_configs(spec, 40)
    assert {c["model.arch"] for c in configs} == set(ARCHITECTURES)
    assert {c["model.text_encoder"] for c in configs} == ENCODERS
    for c in configs[:6]:
        cfg = trial_config(spec.base, c)
        assert (cfg.model.arch, cfg.model.text_encoder) == (c["model.arch"], c["model.text_encoder"])
        assert {axis: getattr(cfg.strategy, axis).name for axis in AXES} == BASELINE  # all / equal / all
        assert not cfg.groups or len(cfg.groups) == 1  # one model for all tasks
    assert all(not k.startswith(("strategy.", "groups")) for c in configs for k in c)


def test_every_encoder_it_offers_is_on_this_machine(capsys):
    from search.run.launch import main

    assert main([str(SPACE), "--dry-run"]) == 0, capsys.readouterr().err


def test_the_final_phase_compares_at_the_best_model_choice():
    spec = load_space(SPACE)
    tasks = spec.config.tasks
    assert spec.search.axis_study and "equal_sum" not in spec.search.baselines.names  # equal sum is the best itself
    assert not spec.search.baselines.tuned  # a tuned baseline would search the model axis again
    best = {"model.arch": "late_fusion", "model.text_encoder": "tiny", "train.lr": 0.002,
            "train.class_weight": "balanced"}
    for name in spec.search.baselines.names:
        ov = baseline_overrides(name, best, tasks)
        assert {k: ov[k] for k in best} == best
    assert baseline_overrides("single_task", best, tasks)["groups"] == [[t] for t in tasks]
    values = axis_values(spec.space, tasks)
    assert set(values) == {"model.arch", "model.text_encoder"}
    design = dict(axis_design(best, values, tasks))
    assert set(design) == {"arch=hiccap", "arch=early_fusion", "text_encoder=minilm"}
    assert design["text_encoder=minilm"] == {**best, "model.text_encoder": "minilm"}
