"""A local Ray cluster (cluster/local.sh) for the cluster tests: started in a fixture, stopped exactly."""
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_cluster(workers: int, **extra_env):
    # a short folder: Ray's unix socket paths live below it and must stay under 108 characters
    state = tempfile.mkdtemp(prefix="mtlc-", dir="/tmp")
    env = {**os.environ, "MTL_LOCAL_CLUSTER": state, "RAY_PORT": str(free_port()), "RAY_AUTH_MODE": "token",
           "RAY_DASHBOARD_PORT": str(free_port()),
           "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}", **extra_env}
    script = str(ROOT / "cluster" / "local.sh")
    try:
        up = subprocess.run([script, "up", str(workers)], env=env, capture_output=True, text=True, timeout=180)
        assert up.returncode == 0, up.stdout + up.stderr
        yield env
    finally:  # stop exactly what the fixture started, even when the test failed
        subprocess.run([script, "down"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(state, ignore_errors=True)
