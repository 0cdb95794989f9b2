"""Which Ray the launcher uses. Without an address, one of its own, even where another is found (a `ray start`
cluster in /tmp/ray/ray_current_cluster, or RAY_ADDRESS, which ray.init would otherwise join and then refuse
num_cpus with a traceback); with `--address`, or a RAY_ADDRESS it takes as one, the cluster named, and it
says which it joined (`auto` joins whatever Ray runs on this machine, maybe another process's)."""
import re
from pathlib import Path

import pytest

from search.io.cluster import address_source
from search.run.launch import main

SMOKE = Path(__file__).resolve().parents[2] / "spaces" / "smoke.yaml"


@pytest.mark.slow
@pytest.mark.ray
def test_a_local_launch_starts_its_own_ray_and_a_join_says_which_cluster(monkeypatch):
    import ray

    from search.io.cluster import joined_cluster
    from search.run.sweep import _start_ray

    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # what ray.init(address=None) would try to join
    try:
        assert _start_ray(None) is True  # started, not joined
        assert ray.get_runtime_context().gcs_address != "127.0.0.1:1"
        line = joined_cluster("auto")
    finally:
        ray.shutdown()
    assert re.fullmatch(r"joined the Ray cluster at [\d.]+:\d+ \(--address auto\): 1 node\(s\), \d+ CPUs, 0 GPUs; "
                        r"started by user \S+ \(session \S+session_\S+\)", line), line


@pytest.mark.parametrize("given, env, expected", [
    (None, None, (None, "")),
    (None, "  ", (None, "")),
    (None, " 10.0.0.1:6379 ", ("10.0.0.1:6379", "--address 10.0.0.1:6379 (from RAY_ADDRESS)")),
    (None, "local", (None, "")),
    ("10.0.0.2:6379", "10.0.0.1:6379", ("10.0.0.2:6379", "--address 10.0.0.2:6379")),  # the option wins
    ("auto", "10.0.0.1:6379", ("10.0.0.1:6379", "--address 10.0.0.1:6379 (auto: RAY_ADDRESS)")),  # as ray.init reads auto
    ("auto", None, ("auto", "--address auto")),
    ("local", "10.0.0.1:6379", (None, "")),  # the way out of an exported RAY_ADDRESS
])
def test_the_address_comes_from_the_option_then_ray_address(monkeypatch, given, env, expected):
    if env is None:
        monkeypatch.delenv("RAY_ADDRESS", raising=False)
    else:
        monkeypatch.setenv("RAY_ADDRESS", env)
    assert address_source(given) == expected


@pytest.mark.parametrize("value, says", [
    ("127.0.0.1:9", "nothing is listening there"),  # the discard port: nothing listens there
    ("http://127.0.0.1:8265", "a job server's address (for `ray job submit`), not a cluster's"),  # Ray's job CLI's
])
def test_a_ray_address_that_cannot_be_joined_is_one_line_naming_it(monkeypatch, tmp_path, capsys, value, says):
    monkeypatch.setenv("RAY_ADDRESS", value)
    assert main([str(SMOKE), "--storage", str(tmp_path / "exp"), "--name", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.splitlines() == [err] and err.startswith(f"error: --address {value} (from RAY_ADDRESS): {says}"), err
    assert not (tmp_path / "exp").exists()  # nothing written
