"""A local Ray cluster (cluster/local.sh) for the cluster tests: started in a fixture, stopped exactly."""
import contextlib
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


# Ports the OS never hands out by itself: below Linux's ephemeral range (32768-60999, where every outgoing
# connection and every `bind(0)` draws, so a port found free there can be taken before Ray binds it: a CI run
# lost the dashboard port that way) and above Ray's worker ports (10002-19999).
QUIET_PORTS = range(20000, 32000)


def free_port(taken=()) -> int:
    """A port nobody listens on now, drawn where no other process picks ports by itself."""
    while True:
        port = random.choice(QUIET_PORTS)
        if port in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port


@contextlib.contextmanager
def local_cluster(workers: int, **extra_env):
    # a short folder: Ray's unix socket paths live below it and must stay under 108 characters
    state = tempfile.mkdtemp(prefix="mtlc-", dir="/tmp")
    script = str(ROOT / "cluster" / "local.sh")
    env = {}
    try:
        for attempt in range(2):  # once more on fresh ports when Ray lost one of its own to another process
            gcs = free_port()
            # RAY_TMPDIR: `--address auto` reads the address file that `ray start --temp-dir $state/ray` writes
            # there, so it joins this cluster even with another Ray on the machine (a sweep of the user's, say)
            env = {**os.environ, "MTL_LOCAL_CLUSTER": state, "RAY_TMPDIR": state, "RAY_PORT": str(gcs), "RAY_AUTH_MODE": "token",
                   "RAY_DASHBOARD_PORT": str(free_port(taken={gcs})),
                   "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}", **extra_env}
            up = subprocess.run([script, "up", str(workers)], env=env, capture_output=True, text=True, timeout=180)
            if up.returncode == 0 or "address already in use" not in up.stdout + up.stderr or attempt:
                break
            subprocess.run([script, "down"], env=env, capture_output=True, timeout=120)
        assert up.returncode == 0, up.stdout + up.stderr
        yield env
    finally:  # stop exactly what the fixture started, even when the test failed
        if env:
            subprocess.run([script, "down"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(state, ignore_errors=True)
