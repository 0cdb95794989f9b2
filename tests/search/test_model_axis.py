"""The space reaches the model axis (`model.arch`, `model.text_encoder`) and the transferred combiner's
`from_run`; each is checked before anything starts."""
import json
from pathlib import Path

import pytest
import yaml

from search.space.parse import load_space

from search.space.optuna import sample_configs
from search.space.trial import trial_config

BASE = {"model": {"text_encoder": "tiny", "attention_heads": 4}, "train": {"epochs": 2}}


def _write(tmp_path, space, **sections):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump({**BASE, **sections, "space": space}))
    return path


def test_arch_and_text_encoder_are_searchable(tmp_path):
    spec = load_space(_write(tmp_path, {"model": {"arch": {"choice": ["hiccap", "late_fusion", "early_fusion"]},
                                                  "text_encoder": {"choice": ["tiny", "minilm"]}}}))
    configs = sample_configs(spec, 24)
    assert {c["model.arch"] for c in configs} == {"hiccap", "late_fusion", "early_fusion"}
    assert {c["model.text_encoder"] for c in configs} == {"tiny", "minilm"}
    cfg = trial_config(spec.base, configs[0])
    assert (cfg.model.arch, cfg.model.text_encoder) == (configs[0]["model.arch"], configs[0]["model.text_encoder"])


@pytest.mark.parametrize("space, message", [
    ({"model": {"arch": {"choice": ["hiccap", "mlp"]}}}, "space.model.arch: unknown architecture 'mlp'; valid choices"),
    ({"model": {"text_encoder": {"choice": ["tiny", "no-such/encoder"]}}},
     "space.model.text_encoder: 'no-such/encoder' is not on this machine"),
    ({"model": {"attention_heads": {"choice": [4, 5]}}},
     "space.model.attention_heads: 5 does not divide the width 96 of text encoder 'tiny'"),
    ({"model": {"width": {"choice": [32, 30]}}}, "space.model.attention_heads: 4 does not divide model.width 30"),
])
def test_a_bad_model_option_is_one_line_before_anything_starts(tmp_path, capsys, space, message):
    from search.run.launch import main

    assert main([str(_write(tmp_path, space)), "--storage", str(tmp_path / "exp"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1
    assert not (tmp_path / "exp").exists()


def test_a_relative_from_run_is_resolved_where_the_search_is_launched(tmp_path, monkeypatch):
    run = tmp_path / "earlier"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({f"strategy/{t}/weight": 0.5 for t in
                                                   ("binary", "mature", "gory", "slapstick", "sarcasm")}) + "\n")
    monkeypatch.chdir(tmp_path)
    spec = load_space(_write(tmp_path, {"strategy": {"combiner": {"choice": {
        "transferred": {"from_run": {"choice": ["earlier", str(run)]}}, "equal": {}}}}},
        strategy={"combiner": {"name": "transferred", "from_run": "earlier"}}))
    assert spec.base["strategy"]["combiner"]["from_run"] == str(run)
    assert spec.space["strategy"]["combiner"]["choice"]["transferred"]["from_run"] == {"choice": [str(run)] * 2}
    monkeypatch.chdir(Path("/"))  # a trial in its own folder still finds it
    cfg = trial_config(spec.base, {"strategy.combiner.name": "transferred", "strategy.combiner.from_run": str(run)})
    assert cfg.strategy.combiner.params["from_run"] == str(run)


def test_the_report_has_a_table_for_the_architecture_and_the_text_encoder(tmp_path, monkeypatch):
    import pandas as pd

    from search.report import sections
    from search.report.sections import _axes_section

    monkeypatch.setattr(sections, "strip_plot", lambda *a: None)  # the tables are the point: no figures (seconds each)
    monkeypatch.setattr(sections, "save_figure", lambda fig, out, name, alt: sections.plt.close(fig) or [])

    (tmp_path / "space.yaml").write_text(yaml.safe_dump({"train": {"epochs": 1}, "search": {"grace_period": 1}}))
    rows, hist = [], []
    for i, (arch, encoder) in enumerate([("hiccap", "tiny"), ("late_fusion", "tiny"), ("early_fusion", "tiny"),
                                         ("hiccap", "tiny"), ("late_fusion", "other/encoder")]):
        rows.append({"trial_id": f"t{i}", "epochs": 1, "status": "finished", "config/model.arch": arch,
                     "config/model.text_encoder": encoder})
        hist.append({"trial_id": f"t{i}", "training_iteration": 1, "val/avg_f1": 0.5 + 0.1 * (arch == "late_fusion") + 0.01 * i})
    text = "\n".join(_axes_section(tmp_path, pd.DataFrame(hist), pd.DataFrame(rows), "val/avg_f1", "max", [1]))
    arch = text.split("### arch")[1].split("### text_encoder")[0]
    assert "| arch | trials | mean | difference vs hiccap" in arch
    assert "| late_fusion | 2 | 0.6250 | +0.1100" in arch and "| hiccap | 2 | 0.5150 | baseline |" in arch
    # no minilm among the trials: the commonest encoder is the baseline
    assert "| text_encoder | trials | mean | difference vs tiny" in text.split("### text_encoder")[1]
