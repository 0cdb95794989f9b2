"""search.report's pieces without an experiment: importances at a matched budget, the HTML page, tick labels;
the whole report from tables in memory, and from the same tables read back from a folder."""
import base64
import re

import numpy as np
import pandas as pd

from search.report.cli import main
from search.report.html import html_page
from search.report.plots import wrap_label
from search.report.sections import matched_importances, write_report
from search.report.inputs import ReportInput
from search.analysis.results import leaderboard
from search.space.rungs import rungs


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
    lines = ["# Report", "", "Best `dsg+equal+all_modalities | bin/mat` is **here**.", "", "- one", "- two", "",
             "| configuration | avg |", "|---|---|", "| dsg \\| bin | 0.5 |", "", "![plot](a.png)", ""]
    page = re.sub(r">\s+<", "><", html_page(lines, tmp_path, "t"))
    assert "<h1>Report</h1>" in page and "<code>dsg+equal+all_modalities | bin/mat</code>" in page and "<strong>here</strong>" in page
    assert "<ul><li>one</li><li>two</li></ul>" in page
    assert re.search("<tr><th[^>]*>configuration</th><th[^>]*>avg</th></tr></thead><tbody><tr><td[^>]*>dsg | bin</td>"
                     "<td[^>]*>0.5</td></tr>", page)
    assert f'src="data:image/png;base64,{base64.b64encode(png).decode()}"' in page


def test_long_tick_labels_are_wrapped():
    assert wrap_label("bin+sla+sar/mat+gor/xyz", 10) == "bin+sla+\nsar/mat+\ngor/xyz"
    assert wrap_label("none") == "none"


def _given(n=6):
    """A finished search's tables as the launcher's finish step holds them (no final phase)."""
    history, trials = _sweep(n)
    best = history.groupby("trial_id")["val/avg_f1"].max()
    trials = trials.assign(label=[f"all_tasks+equal+all_modalities #{i}" for i in range(n)], **{"val/avg_f1": best[trials["trial_id"]].to_numpy()})
    return ReportInput("exp", milestones=rungs(1, 3, 3), baselines=["equal_sum"], trials=trials, history=history,
                       leaderboard=leaderboard(trials, "val/avg_f1", "max"), floor={"test/avg_f1": 0.5, "test/gory/f1": 0.5})


def test_the_report_is_written_from_the_tables_in_memory(tmp_path):
    out = write_report(_given(), tmp_path / "report")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]  # nothing read from, or written beside, it
    text = (out / "summary.md").read_text()
    assert text.startswith("# Sweep report: exp") and "6 trials: 3 finished, 3 stopped early by ASHA" in text
    assert "## Bag-of-words floor" in text and "Full ranking: [leaderboard.csv](../leaderboard.csv)." in text


def test_the_command_reads_the_same_tables_back_from_the_folder(tmp_path):
    """`python -m search.report` on the folder the launcher wrote gives the report the launcher wrote."""
    import json

    import yaml

    from search.io.files import Files
    from search.analysis.results import write_parquet

    given = _given()
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / Files.SPACE).write_text(yaml.safe_dump({"search": {"metric": "val/avg_f1", "mode": "max", "grace_period": 1,
                                                              "reduction_factor": 3, "baselines": ["equal_sum"]},
                                                   "train": {"epochs": 3}}))
    write_parquet(given.trials, exp / Files.TRIALS)
    write_parquet(given.history, exp / Files.HISTORY)
    given.leaderboard.to_csv(exp / Files.LEADERBOARD, index=False)
    (exp / Files.FLOOR).write_text(json.dumps(given.floor))
    read = ReportInput.read(exp)
    assert (read.name, read.metric, read.mode, read.milestones, read.baselines) == \
        (given.name, given.metric, given.mode, given.milestones, given.baselines)
    assert main([str(exp)]) == 0
    in_memory = write_report(given, tmp_path / "in_memory")
    assert (exp / Files.REPORT / "summary.md").read_text() == (in_memory / "summary.md").read_text()


def test_the_html_page_embeds_only_the_report_s_own_plots(tmp_path):
    """A table value from the folder reaches the page's text: an image it names (`![k](/any/file)` in a label)
    is never embedded (it could be any file the user can read), its text never reaches an attribute, a
    `javascript:` link is cut and raw HTML stays text."""
    secret = tmp_path / "creds"
    secret.write_bytes(b"aws_secret_access_key=abc")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "linked.png").symlink_to(secret)
    lines = [f"Best `x` ![k]({secret}) `y`, ![l](linked.png) and ![m](nope\" onerror=\"alert(1))", "",
             "[a](javascript:alert(1)) [b](../leaderboard.csv) [c](http://127.0.0.1:5000/#/x) [d](javascript&#58;x())", "",
             "<script>x()</script> and <b onclick=x()>b</b>"]
    page = html_page(lines, tmp_path / "out", "t")
    assert base64.b64encode(secret.read_bytes()).decode() not in page and "<img" not in page
    assert 'onerror="' not in page and 'href="javascript' not in page and '<a href="#">a</a>' in page
    assert '<a href="#">d</a>' in page  # an entity that spells `:` is no way round it
    assert '<a href="../leaderboard.csv">b</a>' in page and '<a href="http://127.0.0.1:5000/#/x">c</a>' in page
    assert "<script" not in page and "<b " not in page and "&lt;script&gt;" in page  # raw HTML in a value is text


def test_the_command_never_writes_through_a_link_in_the_folder(tmp_path, capsys):
    """A `report/summary.md` linked to a file elsewhere is replaced, the file it points at untouched; a
    `report` linked to a folder is refused, nothing written into it."""
    test_the_command_reads_the_same_tables_back_from_the_folder(tmp_path)
    exp, victim = tmp_path / "exp", tmp_path / "victim.txt"
    victim.write_text("precious")
    (exp / "report" / "summary.md").unlink()
    (exp / "report" / "summary.md").symlink_to(victim)
    assert main([str(exp)]) == 0
    assert victim.read_text() == "precious" and not (exp / "report" / "summary.md").is_symlink()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    import shutil
    shutil.rmtree(exp / "report")
    (exp / "report").symlink_to(elsewhere)
    assert main([str(exp)]) == 1 and "a link or a file, not the report folder" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == [] and not list(exp.glob(".report-*"))


def test_a_folder_the_report_cannot_be_written_in_is_one_line(tmp_path, capsys, monkeypatch):
    """A read-only experiment folder (or a full disk): one line naming it and exit 1, nothing left behind."""
    import errno
    import tempfile

    test_the_command_reads_the_same_tables_back_from_the_folder(tmp_path)
    exp = tmp_path / "exp"
    before = sorted(p.name for p in exp.iterdir())

    def refused(*_, **__):
        raise PermissionError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(tempfile, "mkdtemp", refused)
    capsys.readouterr()
    assert main([str(exp)]) == 1
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and str(exp) in err and "Permission denied" in err and "Traceback" not in err
    assert sorted(p.name for p in exp.iterdir()) == before


def test_the_launcher_s_report_replaces_links_and_refuses_a_linked_folder(tmp_path):
    """The end of a launch writes the report as the command does: a link inside `report/` is replaced, the
    file it pointed at kept; a `report` that is a link is refused."""
    import pytest

    from search.io.files import CorruptFile
    from search.report.sections import write_report_folder

    exp, victim = tmp_path / "exp", tmp_path / "victim.txt"
    (exp / "report").mkdir(parents=True)
    victim.write_text("precious")
    (exp / "report" / "summary.md").symlink_to(victim)
    out = write_report_folder(_given(), exp)
    assert victim.read_text() == "precious" and (out / "summary.md").read_text().startswith("# Sweep report")
    assert sorted(p.name for p in exp.iterdir()) == ["report"]
    (tmp_path / "elsewhere").mkdir()
    import shutil
    shutil.rmtree(out)
    out.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(CorruptFile, match="a link or a file"):
        write_report_folder(_given(), exp)
    assert list((tmp_path / "elsewhere").iterdir()) == [] and sorted(p.name for p in exp.iterdir()) == ["report"]


def test_the_answer_states_how_the_family_wise_error_is_kept():
    from search.report.sections import family_wise

    decisions = pd.DataFrame([{"tests": 4, "look": 2, "margin": 0.02}, {"tests": 4, "look": 1, "margin": 0.02}])
    text = family_wise(decisions)
    assert "Holm" in text and "4 hypotheses" in text and "2 looks" in text and "±0.02" in text
    assert "hypotheses" not in family_wise(decisions.assign(margin=0.0))
