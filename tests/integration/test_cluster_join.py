"""A cluster that cannot be joined (wrong token, no token, nothing listening): one line, exit 2, within
seconds, nothing started. Joining with `--address auto` is tested in test_cluster.py."""
import subprocess
import sys
import time

import pytest

from cluster_helpers import ROOT, free_port, local_cluster

pytestmark = [pytest.mark.slow, pytest.mark.ray]


@pytest.fixture(scope="module")
def head_only():
    with local_cluster(0) as env:
        yield env


def _launch(args, env, cwd, timeout=300):
    return subprocess.run([sys.executable, "-m", "search.launch", str(ROOT / "spaces" / "smoke.yaml"), *args],
                          env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("case", ["wrong token", "no token", "nothing listening"])
def test_a_cluster_that_cannot_be_joined_is_one_line_and_exit_2(head_only, tmp_path, case):
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    if case == "wrong token":
        (home / ".ray" / "auth_token").write_text("0" * 64 + "\n")
    env = {**{k: v for k, v in head_only.items() if k != "RAY_AUTH_MODE"}, "HOME": str(home)}
    address = "127.0.0.1:" + (str(free_port()) if case == "nothing listening" else head_only["RAY_PORT"])
    start = time.monotonic()
    proc = _launch(["--address", address, "--storage", str(tmp_path / "exp")], env, tmp_path, timeout=60)
    took = time.monotonic() - start
    expected = {"wrong token": "the cluster refused the token", "no token": "this machine has no token",
                "nothing listening": "nothing is listening there"}[case]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and expected in proc.stderr
    assert proc.stderr.startswith(f"error: --address {address}: ") and "Traceback" not in proc.stdout
    assert took < 15, took
    assert not (tmp_path / "exp").exists()  # nothing started, nothing written
    probes = subprocess.run(["pgrep", "-f", "ray.init\\(address=sys.argv"], capture_output=True, text=True)
    assert probes.stdout.strip() == ""  # the probe child is gone
