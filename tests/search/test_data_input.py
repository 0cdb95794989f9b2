"""The data folder as the runs' MLflow dataset input: on the parent run and each trial's, through the outage queue
and its spool."""
import json
from types import SimpleNamespace

from mlflow import MlflowClient

from mtl_core.config import build_config
from search.io.state import FORMAT
from search.tracking.data_input import dataset, inputs
from search.tracking.store import default_tracking_uri, start_store
from search.tracking.replay import main as replay_main
from search.tracking.tracker import MLflowTrials, Tracker
from search.space.trial import TrialMeta, trial_entry

from conftest import tiny_raw


def _store(folder):
    start_store(folder)
    uri = default_tracking_uri(folder)
    client = MlflowClient(tracking_uri=uri)
    exp_id = client.create_experiment(folder.name)
    return uri, client, client.create_run(exp_id, tags={"sweep.kind": "optuna-tpe+asha"}).info.run_id


def test_the_digest_names_the_data_folder_s_files(tiny_data, tmp_path):
    import shutil

    fields = dataset(build_config(tiny_raw(tiny_data)))
    assert fields["name"] == tiny_data.name and json.loads(fields["source"])["uri"] == str(tiny_data)
    assert fields["digest"] == dataset(build_config(tiny_raw(tiny_data)))["digest"]  # the same files, the same digest
    copy = tmp_path / tiny_data.name
    shutil.copytree(tiny_data, copy)
    (copy / "test.json").write_text((copy / "test.json").read_text() + " ")  # one byte more
    assert dataset(build_config(tiny_raw(copy)))["digest"] != fields["digest"]
    assert dataset(build_config(tiny_raw(tmp_path / "missing", data={"root": str(tmp_path)}))) is None  # no split files


def test_the_parent_and_each_trial_run_name_the_dataset(tiny_data, tmp_path):
    uri, client, parent = _store(tmp_path / "exp")
    datasets = inputs(dataset(build_config(tiny_raw(tiny_data))), "train")
    tracker = Tracker(uri, "exp", parent)
    tracker.call("log_inputs", datasets=datasets)
    trials = MLflowTrials(tracker.fork(), "search", 4, datasets)
    trial = SimpleNamespace(trial_id="t1", config={"trial": trial_entry({"train.lr": 0.1}, TrialMeta("search"))})
    trials.on_trial_start(0, [], trial)
    child = client.search_runs([client.get_run(parent).info.experiment_id], "tags.tune_trial_id = 't1'")[0]
    for run_id in (parent, child.info.run_id):
        (got,) = client.get_run(run_id).inputs.dataset_inputs
        assert got.dataset.digest == datasets[0]["dataset"]["digest"] and got.dataset.name == tiny_data.name
        assert {t.key: t.value for t in got.tags} == {"mlflow.data.context": "train"}


def test_a_spooled_dataset_input_is_replayed(tiny_data, tmp_path, capsys):
    """A server down to the end: the inputs wait in the spool with the rest, and `search.tracking.replay` writes them."""
    exp = tmp_path / "exp"
    uri, client, parent = _store(exp)
    datasets = inputs(dataset(build_config(tiny_raw(tiny_data))), "train")
    ops = [["call", "log_inputs", [parent], {"datasets": datasets}],
           ["start", "search", "t1", {}, {"mlflow.runName": "search 0 all_tasks+equal+all_modalities"}], ["inputs", "search", "t1", datasets]]
    (exp / "mlflow_pending.jsonl").write_text("".join(json.dumps(op) + "\n" for op in ops))
    (exp / "launch_state.json").write_text(json.dumps({"parent_run_id": parent, "tracking_uri": uri, "format": FORMAT}))
    assert replay_main([str(exp)]) == 0, capsys.readouterr().err
    child = client.search_runs([client.get_run(parent).info.experiment_id], "tags.tune_trial_id = 't1'")[0]
    for run_id in (parent, child.info.run_id):
        assert [i.dataset.digest for i in client.get_run(run_id).inputs.dataset_inputs] == [datasets[0]["dataset"]["digest"]]
