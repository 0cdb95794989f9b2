"""Pretraining in the search: refused before Ray on data without the modality, its MLflow curve, its report."""
import json
import shutil

import pandas as pd
import pytest
import yaml

from mtl_core import keys

from conftest import kill_session


def test_launch_refuses_a_pretraining_task_the_data_cannot_feed_in_one_line(tmp_path, capsys):
    from mtl_core.data.synth import write_synthetic
    from search.run.launch import main

    root = write_synthetic(tmp_path / "text_only", seed=0, n_train=6, n_val=3, n_test=3)
    shutil.rmtree(root / "i3d")  # as the real text release: no video (audio kept)
    space = {"data": {"root": str(root)}, "model": {"text_encoder": "tiny"}, "train": {"epochs": 1},
             "space": {"pretrain": {"tasks": {"choice": [[], ["contrast_ta"], ["vtm", "contrast_ta"]]}}}}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(space))
    assert main([str(path), "--storage", str(tmp_path / "exp")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("error: pretrain.tasks: vtm needs video, which no training clip of ") and "text, audio" in err
    assert not (tmp_path / "exp").exists()
    space["space"]["pretrain"]["tasks"] = {"choice": [[], ["contrast_ta"]]}  # audio and text only: accepted
    path.write_text(yaml.safe_dump(space))
    assert main([str(path), "--storage", str(tmp_path / "exp"), "--dry-run"]) == 0


def test_the_pretraining_curve_becomes_one_mlflow_step_per_pretraining_epoch():
    from search.tracking.tracker import pretrain_curve

    curve = [{"epoch": 0, "pretrain/val/vtm/acc": 0.5, "pretrain/train/vtm/loss": 0.7, "other": 1.0},
             {"epoch": 1, "pretrain/val/vtm/acc": 0.6, "pretrain/train/vtm/loss": 0.6}]
    rows = pretrain_curve({keys.PRETRAIN_CURVE: curve, "train/binary/loss": 0.3})
    assert rows == [(0, {"pretrain/val/vtm/acc": 0.5, "pretrain/train/vtm/loss": 0.7}),
                    (1, {"pretrain/val/vtm/acc": 0.6, "pretrain/train/vtm/loss": 0.6})]
    assert pretrain_curve({"train/binary/loss": 0.3}) == []  # later epochs carry none
    assert pretrain_curve({keys.PRETRAIN_CURVE: "[{}]"}) == [] and pretrain_curve({keys.PRETRAIN_CURVE: 3}) == []


def test_report_section_marks_the_effects_holm_keeps():
    from search.report.sections import pretraining_section

    assert pretraining_section(pd.DataFrame()) == []  # no pretraining axis: no section
    table = pd.DataFrame([
        {"axis": "pretrain", "value": "vtm", "baseline": "none", "best": True, "seeds": 3, "mean": 0.6,
         "diff": 0.05, "low": 0.02, "high": 0.08, "task": "binary", "shown": True},
        {"axis": "pretrain", "value": "vtm", "baseline": "none", "best": True, "seeds": 3, "mean": 0.4,
         "diff": -0.01, "low": -0.05, "high": 0.03, "task": "gory", "shown": False},
    ])
    text = "\n".join(pretraining_section(table))
    assert "| pretraining | seeds | binary | gory |" in text
    assert "**+0.050 [+0.020, +0.080]**" in text and "-0.010 [-0.050, +0.030] |" in text
    assert "vtm helps binary" in text and "gory" not in text.split("Shown with Holm")[1]


@pytest.mark.slow
@pytest.mark.ray
def test_pretraining_sweep_logs_its_curve_and_shares_the_cached_states(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    from mlflow import MlflowClient

    root = Path(__file__).resolve().parents[2]
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "search.launch", str(root / "spaces" / "pretraining.yaml"), "--storage",
           str(tmp_path / "store"), "--name", "pre", "--set", "search.num_samples=3", "--set", "search.final_k=0",
           "--set", "train.epochs=1", "--set", "pretrain.epochs=2", "--set", "data.synthetic.n_train=32",
           "--set", "data.synthetic.n_val=16", "--set", "data.synthetic.n_test=16"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            env={**os.environ, "MTL_CACHE_DIR": str(cache)})
    try:
        out, _ = proc.communicate(timeout=1200)
    finally:
        kill_session(proc)
    assert proc.returncode == 0, out
    exp = tmp_path / "store" / "pre"
    client = MlflowClient(tracking_uri=f"sqlite:///{exp / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("pre").experiment_id], max_results=100)
    children = [r for r in runs if r.data.tags.get("phase") == "search"]
    assert len(children) == 3
    keys_of_pretraining = set()
    for r in children:
        tasks = json.loads(r.data.params["pretrain.tasks"])
        if not tasks:
            assert not any(k.startswith("pretrain/") for k in r.data.metrics)
            continue
        keys_of_pretraining.add((tuple(tasks), r.data.params["pretrain.scheduler.name"],
                                 r.data.params["pretrain.combiner.name"]))
        curve = client.get_metric_history(r.info.run_id, f"pretrain/val/{tasks[0]}/acc")
        assert sorted(m.step for m in curve) == [0, 1]  # one step per pretraining epoch
        assert client.get_metric_history(r.info.run_id, "val/avg_f1")  # and the fine-tuning's own
    assert len(list((cache / "pretrain").glob("*.pt"))) == len(keys_of_pretraining)  # one state per key
