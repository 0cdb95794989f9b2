import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mtl_core.config import ConfigError
from search.space.optuna import DefineByRun, sample_configs
from search.space.settings import corner_samples
from search.space.parse import load_space
from search.space.trial import trial_config

ROOT = Path(__file__).resolve().parents[2]
SPACES = sorted((ROOT / "spaces").glob("*.yaml"))


def _write(tmp_path, data, name="s.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


BASE = {"model": {"text_encoder": "tiny"}, "train": {"epochs": 2},
        "space": {"train": {"lr": {"loguniform": [1e-4, 1e-2]}},
                  "strategy": {"combiner": {"choice": {"equal": {}, "gradnorm": {"alpha": {"uniform": [0.5, 2]}}}}}}}


@pytest.mark.parametrize("space", SPACES, ids=lambda p: p.name)
def test_shipped_spaces_are_valid(space, monkeypatch, tmp_path):
    monkeypatch.setenv("CM_DATA", str(tmp_path))  # the real-data space reads its path from here
    spec = load_space(space, ["data.root=" + str(tmp_path)] if "real" in space.name else [])
    assert spec.search.num_samples >= 1
    for cfg in sample_configs(spec, 5):
        trial_config(spec.base, cfg)


def test_define_by_run_samples_only_the_chosen_branch(tmp_path):
    spec = load_space(_write(tmp_path, BASE))
    configs = sample_configs(spec, 30)
    names = {c["strategy.combiner.name"] for c in configs}
    assert names == {"equal", "gradnorm"}
    for c in configs:
        assert ("strategy.combiner.alpha" in c) == (c["strategy.combiner.name"] == "gradnorm")
        assert 1e-4 <= c["train.lr"] <= 1e-2
        cfg = trial_config(spec.base, c)
        assert cfg.strategy.combiner.name == c["strategy.combiner.name"]


def test_branch_parameters_have_unique_optuna_names():
    import optuna

    space = {"strategy": {"scheduler": {"choice": {"dsg": {"iter_gap": {"int": [2, 4]}},
                                                  "sequential": {"patience": {"int": [1, 3]}}}}}}
    study = optuna.create_study()
    trial = study.ask()
    DefineByRun(space)(trial)
    assert all(name == "strategy.scheduler" or name.startswith("strategy.scheduler.") for name in trial.params)
    assert any(name.startswith("strategy.scheduler.dsg.") or name.startswith("strategy.scheduler.sequential.")
               for name in trial.params)


def test_corner_samples_cover_every_option():
    corners = corner_samples(BASE["space"])
    assert {c["strategy.combiner.name"] for c in corners} == {"equal", "gradnorm"}
    assert {c["train.lr"] for c in corners} == {1e-4, 1e-2}


BAD = [
    ({"space": {"train": {"lrr": {"uniform": [0.1, 0.2]}}}}, "space.train.lrr: unknown key"),
    ({"space": {"strategy": {"combiner": {"choice": {"equal": {}, "magic": {}}}}}},
     "space.strategy.combiner.name: unknown combiner 'magic'"),
    ({"space": {"strategy": {"combiner": {"choice": {"gradnorm": {"alpah": {"uniform": [0, 1]}}}}}}},
     "space.strategy.combiner.alpah: unknown parameter of combiner 'gradnorm'"),
    ({"search": {"num_samples": "many"}}, "search.num_samples: expected an integer"),
    ({"space": {"train": {"lr": {"uniform": [0.1, 0.01]}}}}, "space.train.lr.uniform: low must be below high"),
    ({"space": {"train": {"lr": {"loguniform": [0, 0.01]}}}}, "space.train.lr.loguniform: bounds must be > 0"),
    ({"space": {"train": {"epochs": {"int": [1.5, 3]}}}}, "space.train.epochs.int: bounds must be integers"),
    ({"data": {"root": "/no/such/dataset"}}, "data.root: dataset folder not found"),
    ({"search": {"metric": "val/avg_f2"}}, "search.metric: 'val/avg_f2' is not a reported metric"),
    ({"search": {"resources_per_trial": {"gpu": 0.3}}}, "a fraction must divide 1"),
    ({"serach": {}}, "serach: unknown key"),
]


@pytest.mark.parametrize("patch, message", BAD)
def test_invalid_spaces_are_one_line_errors(tmp_path, patch, message):
    data = yaml.safe_load(yaml.safe_dump(BASE))
    for key, value in patch.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) and key != "space" else value
    with pytest.raises(ConfigError) as err:
        load_space(_write(tmp_path, data))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_launch_rejects_bad_space_with_exit_2_before_ray(tmp_path):
    data = dict(BASE, space={"train": {"lr": {"uniform": [1, 0]}}})
    path = _write(tmp_path, data)
    code = ("import sys; from search.run.launch import main; rc = main(sys.argv[1:]); "
            "print('ray imported' if 'ray' in sys.modules else 'no ray'); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code, str(path), "--storage", str(tmp_path / "exp")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "error: space.train.lr.uniform: low must be below high, got [1, 0]"
    assert proc.stdout.strip() == "no ray"
    assert not (tmp_path / "exp").exists()


def test_an_encoder_not_on_this_machine_is_one_line_and_exit_2_before_anything_starts(tmp_path, capsys):
    from search.run.launch import main

    assert main([str(ROOT / "spaces" / "smoke.yaml"), "--set", "model.text_encoder=no-such/encoder",
                 "--storage", str(tmp_path / "exp")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: model.text_encoder: 'no-such/encoder' is not on this machine") and err.count("\n") == 1
    assert not (tmp_path / "exp").exists()


def test_dry_run_prints_configurations(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "search.launch", str(ROOT / "spaces" / "smoke.yaml"), "--dry-run",
                           "--num-samples", "3", "--set", "train.epochs=2"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "3 trials of up to 2 epochs" in proc.stdout
    assert proc.stdout.count("strategy.combiner.name") == 3


def test_the_space_file_reference_example_is_valid(tmp_path):
    text = (ROOT / "docs" / "spaces.md").read_text()
    block = text.split("# The space file", 1)[1].split("```yaml", 1)[1].split("```", 1)[0]
    spec = load_space(_write(tmp_path, yaml.safe_load(block)))
    configs = sample_configs(spec, 20)
    assert {c["train.batch_size"] for c in configs} <= {8, 16, 32}
    assert spec.search.gpu == 0.5 and spec.search.final.k == 2


def test_partition_entries_sample_valid_groupings(tmp_path):
    data = dict(BASE, space={"groups": {"partition": "all"}})
    spec = load_space(_write(tmp_path, data))
    seen = set()
    for c in sample_configs(spec, 200):
        cfg = trial_config(spec.base, c)
        seen.add(cfg.partition())
    assert 30 < len(seen) <= 52
    bad = dict(BASE, space={"groups": {"partition": [[["binary", "gory"], ["mature"]]]}})
    with pytest.raises(ConfigError, match=r"^space\.groups: not a partition of the tasks: leaves out"):
        load_space(_write(tmp_path, bad, "bad.yaml"))


def test_unreachable_tracking_server_is_rejected_before_training(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "search.launch", str(ROOT / "spaces" / "smoke.yaml"),
                           "--storage", str(tmp_path), "--name", "x", "--mlflow-uri", "http://127.0.0.1:9"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(
        "error: --mlflow-uri: cannot reach the MLflow tracking store at http://127.0.0.1:9")
    assert not (tmp_path / "x" / "search").exists()  # no Tune experiment was started


def test_a_space_file_reports_every_problem_at_once(tmp_path):
    data = dict(BASE, train={"epochs": 0}, search={"num_samples": 0, "mode": "maximise", "baselines": ["equal_sum", "stl"],
                                                   "resources_per_trial": {"gpu": 0.3, "tpu": 1}},
                space={"train": {"lr": {"uniform": [1, 0]}},
                       "strategy": {"combiner": {"choice": {"equal": {}, "gradnorm": {"alpha": {"int": [1.5, 3]}}}}}})
    with pytest.raises(ConfigError) as err:
        load_space(_write(tmp_path, data))
    lines = str(err.value).splitlines()
    expected = ["train.epochs: must be positive", "search.resources_per_trial.tpu: unknown key",
                "search.mode: expected min or max", "search.num_samples: must be >= 1",
                "search.baselines: unknown baseline 'stl'", "search.resources_per_trial.gpu: a fraction must divide 1",
                "space.train.lr.uniform: low must be below high",
                "space.strategy.combiner.choice.gradnorm.alpha.int: bounds must be integers"]
    for message in expected:
        assert sum(line.startswith(message) for line in lines) == 1, (message, lines)
    assert len(lines) == len(expected)
    proc = subprocess.run([sys.executable, "-m", "search.launch", str(tmp_path / "s.yaml"), "--dry-run"],
                          capture_output=True, text=True)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == len(expected) and all(line.startswith("error: ") for line in err)


def _launch_dry_run(path, capsys, *extra):
    from search.run.launch import main

    rc = main([str(path), "--dry-run", *extra])
    return rc, capsys.readouterr()


@pytest.mark.parametrize("search, message", [
    ({"metric": "val/avg_f1", "objectives": "tasks"},
     "error: search.objectives: set search.metric (one objective) or search.objectives (several), not both"),
    ({"objectives": ["val/gory/f1", "val/gorey/f1"]},
     "error: search.objectives: 'val/gorey/f1' is not a reported metric of the tasks binary, mature, gory, "
     "slapstick, sarcasm (e.g. val/binary/f1, val/avg_f1; or `tasks`)"),
    ({"objectives": ["val/gory/f1", "val/gory/f2"]}, "error: search.objectives: 'val/gory/f2' is not a reported metric"),
    ({"objectives": ["val/gory/f1", "val/gory/f1"]}, "error: search.objectives: 'val/gory/f1' is named twice"),
    ({"objectives": ["val/gory/f1"]}, "error: search.objectives: needs two or more metrics"),
    ({"objectives": "val/gory/f1"}, "error: search.objectives: expected a list, got 'val/gory/f1'"),
    ({"sampler": "cmaes"}, "error: search.sampler: unknown sampler 'cmaes'; valid choices: tpe, nsga2"),
    ({"tie_break": "random"}, "error: search.tie_break: unknown rule 'random'; valid choices: crowding, hypervolume"),
])
def test_a_bad_multi_objective_space_is_one_line_and_exit_2_before_ray(tmp_path, capsys, search, message):
    rc, out = _launch_dry_run(_write(tmp_path, {**BASE, "search": search}), capsys, "--storage", str(tmp_path / "exp"))
    assert rc == 2 and out.err.startswith(message) and out.err.count("\n") == 1, out.err
    assert not (tmp_path / "exp").exists()  # refused before anything was set up


def test_an_objective_of_a_task_the_experiment_does_not_train_is_refused(tmp_path, capsys):
    data = {**BASE, "tasks": ["gory", "sarcasm"], "search": {"objectives": ["val/gory/f1", "val/mature/f1"]}}
    rc, out = _launch_dry_run(_write(tmp_path, data), capsys)
    assert rc == 2 and "'val/mature/f1' is not a reported metric of the tasks gory, sarcasm" in out.err


def test_objectives_tasks_means_each_tasks_val_f1(tmp_path, capsys):
    data = {**BASE, "tasks": ["gory", "sarcasm", "mature"], "search": {"objectives": "tasks", "sampler": "nsga2"}}
    spec = load_space(_write(tmp_path, data))
    assert spec.search.multi.objectives == ("val/gory/f1", "val/sarcasm/f1", "val/mature/f1")
    assert spec.search.multi.sampler == "nsga2" and spec.search.metric == "val/avg_f1"  # the metric stays the default
    from search.space.parse import dump_resolved

    assert yaml.safe_load(dump_resolved(spec))["search"]["objectives"] == list(spec.search.multi.objectives)
    again = load_space(_write(tmp_path, yaml.safe_load(dump_resolved(spec)), "resolved.yaml"))  # runs as it ran
    assert again.search == spec.search
    rc, out = _launch_dry_run(_write(tmp_path, data), capsys)
    assert rc == 0 and "is valid" in out.out
    mixed = load_space(_write(tmp_path, {**BASE, "search": {"objectives": ["val/gory/f1", "val/avg_loss"]}}))
    assert mixed.search.multi.objectives == ("val/gory/f1", "val/avg_loss")


def test_the_flat_search_section_maps_onto_nested_settings_and_back():
    """A space file's `search` keys are flat (`final_k`, `tune_baselines`); the settings nest them (`final.k`,
    `baselines.tuned`), and `as_keys` writes them flat again, the same values."""
    from mtl_core.validation import Problems
    from search.space.parse import _build_search
    from search.space.settings import search_keys

    raw = {"final_k": 2, "cv_folds": 5, "final_max_seeds": 9, "tune_baselines": ["equal_sum"], "baseline_samples": 4,
           "num_samples": 7, "resources_per_trial": {"cpu": 2, "gpu": 0.5}, "sampler": "nsga2", "tie_break": "crowding"}
    problems = Problems()
    s = _build_search(raw, problems)
    assert problems.items == []
    assert (s.final.k, s.final.cv_folds, s.final.seed_cap, s.final.round_seeds) == (2, 5, 9, 3)
    assert s.baselines.tuned == ("equal_sum",) and s.baselines.samples == 4 and s.num_samples == 7
    assert (s.multi.sampler, s.multi.tie_break, s.multi.objectives) == ("nsga2", "crowding", ())
    keys = s.as_keys()
    assert list(keys) == list(search_keys()) and {k: keys[k] for k in raw} == raw
    assert _build_search(keys, Problems()) == s
