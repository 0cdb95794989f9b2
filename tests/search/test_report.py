"""search.report's pieces without an experiment: importances at a matched budget, the HTML page, tick labels."""
import base64

import numpy as np
import pandas as pd

from search.report import _wrap, html_page, matched_importances


def _sweep(n=12, seed=0):
    """n trials of which the ones with class weights score higher; ASHA stopped half of them after 1 epoch."""
    rng = np.random.default_rng(seed)
    trials, history = [], []
    for i in range(n):
        weighted = i % 2 == 0
        epochs = 3 if i < n // 2 else 1
        trials.append({"trial_id": f"t_{i:05d}", "status": "finished" if epochs == 3 else "stopped", "epochs": epochs,
                       "config/train.class_weight": "balanced" if weighted else "none",
                       "config/train.lr": float(rng.uniform(1e-3, 1e-2)),
                       "config/strategy.combiner.alpha": 1.0 if i == 0 else np.nan})  # one method's own knob
        for e in range(1, epochs + 1):
            history.append({"trial_id": f"t_{i:05d}", "training_iteration": e,
                            "val/avg_f1": 0.4 + 0.2 * weighted + 0.05 * e + rng.normal(0, 0.01)})
    return pd.DataFrame(history), pd.DataFrame(trials)


def test_importances_count_every_trial_at_the_budget_all_reached():
    history, trials = _sweep()
    importances, n, budget = matched_importances(history, trials, "val/avg_f1", "max")
    assert (n, budget) == (12, 1)  # the stopped trials count too, all at epoch 1
    assert set(importances) == {"train.class_weight", "train.lr"}  # the one-method knob is left out
    assert importances["train.class_weight"] > 0.8
    assert matched_importances(history.iloc[0:0], trials, "val/avg_f1", "max")[0] == {}


def test_the_html_page_embeds_its_images(tmp_path):
    png = b"\x89PNG fake"
    (tmp_path / "a.png").write_bytes(png)
    lines = ["# Report", "", "Best `dsg+equal+all | bin/mat` is **here**.", "", "- one", "- two", "",
             "| configuration | avg |", "|---|---|", "| dsg \\| bin | 0.5 |", "", "![plot](a.png)", ""]
    page = html_page(lines, tmp_path, "t")
    assert "<h1>Report</h1>" in page and "<code>dsg+equal+all | bin/mat</code>" in page and "<b>here</b>" in page
    assert "<ul><li>one</li><li>two</li></ul>" in page
    assert "<tr><th>configuration</th><th>avg</th></tr><tr><td>dsg | bin</td><td>0.5</td></tr>" in page
    assert f'src="data:image/png;base64,{base64.b64encode(png).decode()}"' in page


def test_long_tick_labels_are_wrapped():
    assert _wrap("bin+sla+sar/mat+gor/xyz", 10) == "bin+sla+\nsar/mat+\ngor/xyz"
    assert _wrap("none") == "none"
