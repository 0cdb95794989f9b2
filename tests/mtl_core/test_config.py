import subprocess
import sys

import pytest

from mtl_core.config import ConfigError, apply_overrides, build_config, load_config


@pytest.mark.parametrize("raw, message", [
    ({"trian": {}}, "trian: unknown key"),
    ({"train": {"lr": "fast"}}, "train.lr: expected a number, got 'fast'"),
    ({"train": {"epochs": 2.5}}, "train.epochs: expected an integer"),
    ({"train": {"epochs": 0}}, "train.epochs: must be positive"),
    ({"model": {"freeze_text": "yes"}}, "model.freeze_text: expected true or false"),
    ({"data": {"root": "/no/such/folder"}}, "data.root: dataset folder not found"),
    ({"tasks": ["binary", "gorey"]}, "tasks: unknown task 'gorey'"),
    ({"strategy": {"scheduler": {"name": "nope"}}}, "strategy.scheduler.name: unknown scheduler 'nope'; valid choices: all"),
    ({"strategy": {"combiner": {"name": "equal", "alpha": 1}}}, "strategy.combiner.alpha: unknown parameter"),
    ({"model": {"dropout": 1.5}}, "model.dropout: must be in [0, 1)"),
    ({"train": {"lr_schedule": "step"}}, "train.lr_schedule: unknown schedule 'step'"),
])
def test_bad_config_names_the_key(raw, message):
    with pytest.raises(ConfigError) as err:
        build_config(raw)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_defaults_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 3\n")
    cfg = load_config(path, ["train.lr=0.01", "tasks=[gory, mature]", "strategy.combiner.name=equal"])
    assert cfg.train.epochs == 3 and cfg.train.lr == 0.01
    assert cfg.tasks == ("gory", "mature")
    assert cfg.data.text_max_len == 500
    assert build_config(cfg.to_dict()) == cfg  # round trip


def test_override_syntax_error():
    with pytest.raises(ConfigError, match="expected key.path=value"):
        apply_overrides({}, ["train.lr"])


def test_cli_bad_config_exits_2_with_one_line_per_problem(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  batch_sise: 4\n  lr: fast\nmodel:\n  dropout: 2\n")
    proc = subprocess.run([sys.executable, "-m", "mtl_core.train", str(path)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["error: train.batch_sise: unknown key; valid keys here: "
                                                "epochs, batch_size, eval_batch_size, lr, lr_schedule, weight_decay, "
                                                "grad_clip, seed, affinity_every, class_weight, device, precision, deterministic, "
                                                "num_threads, progress, select_metric, select_mode",
                                                "error: train.lr: expected a number, got 'fast'",
                                                "error: model.dropout: must be in [0, 1), got 2.0"]


def test_cli_missing_and_unparsable_files(tmp_path, capsys):
    """In-process (the subprocess entry point is tested above): a traceback would raise out of main."""
    from mtl_core.train_cli import main

    assert main([str(tmp_path / "nope.yaml")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "config file not found" in err and len(err.splitlines()) == 1
    bad = tmp_path / "broken.yaml"
    bad.write_text("train: [unclosed\n")
    assert main([str(bad)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_every_problem_is_reported_at_once_each_with_its_key_path():
    raw = {"trian": {}, "train": {"lr": "fast", "epochs": 0}, "model": {"dropout": 1.5, "freeze_text": "yes"},
           "tasks": ["binary", "gorey"], "strategy": {"combiner": {"name": "gradnorm", "alpah": 1, "alpha": "x"},
                                                      "scheduler": "nope"}}
    with pytest.raises(ConfigError) as err:
        build_config(raw)
    lines = str(err.value).splitlines()
    assert err.value.problems == lines
    expected = ["trian: unknown key", "train.lr: expected a number", "train.epochs: must be positive",
                "model.dropout: must be in [0, 1)", "model.freeze_text: expected true or false",
                "tasks: unknown task 'gorey'", "strategy.scheduler.name: unknown scheduler 'nope'",
                "strategy.combiner.alpah: unknown parameter", "strategy.combiner.alpha: expected a number"]
    for message in expected:
        assert sum(line.startswith(message) for line in lines) == 1, (message, lines)
    assert len(lines) == len(expected)
