"""The cluster files are valid YAML with what `ray up` and KubeRay require."""
from pathlib import Path

import yaml

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"


def test_ray_cluster_launcher_yaml():
    cfg = yaml.safe_load((CLUSTER / "aws-gpu.yaml").read_text())
    for key in ("cluster_name", "max_workers", "provider", "auth", "available_node_types", "head_node_type",
                "setup_commands", "head_start_ray_commands", "worker_start_ray_commands"):
        assert key in cfg, key
    assert cfg["provider"]["type"] and cfg["head_node_type"] in cfg["available_node_types"]
    for name, node in cfg["available_node_types"].items():
        assert {"resources", "node_config"} <= set(node), name
    assert cfg["available_node_types"]["head"]["resources"] == {"CPU": 0}
    assert any("pip install" in c and "-e" in c for c in cfg["setup_commands"])  # the project on every node


def test_the_mlflow_server_on_the_head_is_not_open_to_the_world():
    """MLflow has no authentication by default: the head's private address only, and the file says how to
    put authentication in front of it."""
    text = (CLUSTER / "aws-gpu.yaml").read_text()
    cfg = yaml.safe_load(text)
    server = [c for c in cfg["head_start_ray_commands"] if "mlflow server" in c]
    assert len(server) == 1 and "0.0.0.0" not in server[0] and "--host \"$(hostname -I" in server[0]
    assert "basic-auth" in text and "reverse proxy" in text


def test_kuberay_rayjob_manifest():
    job = yaml.safe_load((CLUSTER / "kuberay-rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob" and job["metadata"]["name"]
    spec = job["spec"]
    assert "search.launch" in spec["entrypoint"] and "--address auto" in spec["entrypoint"]
    cluster = spec["rayClusterSpec"]
    assert cluster["headGroupSpec"]["template"]["spec"]["containers"]
    workers = cluster["workerGroupSpecs"]
    assert workers and all({"groupName", "template", "rayStartParams"} <= set(w) for w in workers)
    gpu = workers[0]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert gpu["nvidia.com/gpu"] == 1
