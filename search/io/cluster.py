"""Joining an existing Ray cluster: token authentication and a fast, one-line check of the address.

Ray reads RAY_AUTH_MODE when it is imported, so `auth_env` must run before anything imports ray.
`check_cluster` connects from a short-lived child process with a deadline: a bad address, a cluster
that refuses our token, or nothing listening is reported in one line within seconds, instead of
ray.init's half-minute of retries and a 40-line traceback in the launcher.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

TOKEN_FILE = Path.home() / ".ray" / "auth_token"
PROBE_S = 10.0  # a joinable cluster answers within seconds; a refused token shows on the first try

_PROBE = """
import sys, ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")
ray.shutdown()
"""


class ClusterUnavailable(RuntimeError):
    """The cluster at --address cannot be joined: the message is one line with the likely cause."""


def auth_env(address: str | None) -> None:
    """Opt in to token authentication when joining a cluster and this machine has a token (Ray 2.60
    clusters use it by default); an explicit RAY_AUTH_MODE wins."""
    if address is not None and "RAY_AUTH_MODE" not in os.environ and TOKEN_FILE.is_file():
        os.environ["RAY_AUTH_MODE"] = "token"


def _listening(host: str, port: int, timeout_s: float = 2.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def address_source(address: str | None) -> tuple[str | None, str]:
    """The cluster to join and how the console names it, as ray.init reads its arguments: `--address` when
    given, except that `auto` means RAY_ADDRESS when that is set; without the option a non-empty RAY_ADDRESS
    (which `ray job submit` sets for its drivers). None (a private local Ray) for `local` in either, or for
    neither; the value is returned stripped and explicit, so Ray does not read the variable again."""
    env = os.environ.get("RAY_ADDRESS", "").strip()
    if address is not None and address.strip() not in ("auto", "local"):
        return address.strip(), f"--address {address.strip()}"
    if address is not None and address.strip() == "local" or env == "local":
        return None, ""
    if env:
        return env, f"--address {env} ({'auto: ' if address else 'from '}RAY_ADDRESS)"
    return ("auto", "--address auto") if address is not None else (None, "")


def check_cluster(address: str, source: str | None = None) -> None:
    """Raise ClusterUnavailable (one line naming the address and the likely cause) unless a driver
    can join the cluster at `address` (auto, HOST:PORT or ray://HOST:PORT). `source`: how the line names
    it (default `--address ADDRESS`; see `address_source`)."""
    source = source or f"--address {address}"
    target = address.removeprefix("ray://")
    if address.startswith(("http://", "https://")):  # Ray's docs export RAY_ADDRESS=http://HEAD:8265 for the job CLI
        raise ClusterUnavailable(f"{source}: a job server's address (for `ray job submit`), not a cluster's; "
                                 "expected auto, HOST:PORT, ray://HOST:PORT, or local for a Ray of our own")
    if address != "auto":
        host, _, port = target.rpartition(":")
        if not host or not port.isdigit():
            raise ClusterUnavailable(f"{source}: expected auto, HOST:PORT or ray://HOST:PORT")
        if not _listening(host, int(port)):
            raise ClusterUnavailable(f"{source}: nothing is listening there (is the cluster up? "
                                     f"a local one starts with cluster/local.sh up N)")
    if address.startswith("ray://"):
        return  # Ray Client: its server answered; authentication is checked by the connection itself
    said = _probe(address)
    if said is None:
        return
    if said == _TIMED_OUT:
        raise ClusterUnavailable(f"{source}: the cluster did not answer within {PROBE_S:.0f} s "
                                 f"(wrong port, or a firewall between here and the head node?)")
    raise ClusterUnavailable(f"{source}: {_cause(said)}")


_TIMED_OUT = "\0timed out"
_REFUSED = ("InvalidAuthToken", "Unauthenticated")


def _probe(address: str) -> str | None:
    """Join from a child process: None when it worked, else what it printed (or _TIMED_OUT). A refused
    token shows on the first retry, so the child is stopped as soon as it says so."""
    proc = subprocess.Popen([sys.executable, "-c", _PROBE, address], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    lines: list[str] = []
    refused = threading.Event()

    def read() -> None:
        for line in proc.stderr:
            lines.append(line)
            if any(word in line for word in _REFUSED):
                refused.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + PROBE_S
    while proc.poll() is None and not refused.is_set() and time.monotonic() < deadline:
        time.sleep(0.1)
    timed_out = proc.poll() is None and not refused.is_set()
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    reader.join(timeout=2)
    if proc.returncode == 0:
        return None
    return _TIMED_OUT if timed_out else "".join(lines)


def _cause(stderr: str) -> str:
    if any(word in stderr for word in _REFUSED):
        if os.environ.get("RAY_AUTH_MODE") != "token" or not TOKEN_FILE.is_file():
            return (f"the cluster requires token authentication and this machine has no token at {TOKEN_FILE} "
                    f"(copy the head node's token there)")
        return f"the cluster refused the token in {TOKEN_FILE} (a different cluster's token? copy the head node's)"
    if "Could not find any running Ray instance" in stderr:
        return "no running Ray cluster was found on this machine (start one, or pass HOST:PORT)"
    last = [line for line in stderr.strip().splitlines() if line.strip()]
    return f"cannot join the cluster ({last[-1][:200] if last else 'no detail'})"


def joined_cluster(address: str, source: str | None = None) -> str:
    """One line saying which cluster `--address` joined (`auto` takes whatever local Ray runs here, maybe
    another user's): its GCS address, live nodes and resources, and who started it when Ray's session
    folder is on this machine. Call after ray.init."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    res = ray.cluster_resources()
    line = (f"joined the Ray cluster at {ray.get_runtime_context().gcs_address} ({source or f'--address {address}'}): "
            f"{len(nodes)} node(s), {res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs")
    owner = _session_owner(nodes)
    return line + (f"; started by {owner}" if owner else "")


def _session_owner(nodes: list[dict]) -> str | None:
    """`user <name>, session <folder>` from the Ray session folder of a node on this machine, if any."""
    import pwd

    for node in nodes:
        session = Path(node.get("RayletSocketName", "")).parent.parent
        if session.name.startswith("session_") and session.is_dir():
            try:
                user = pwd.getpwuid(session.stat().st_uid).pw_name
            except (KeyError, OSError):
                continue
            return f"user {user} (session {session})"
    return None
