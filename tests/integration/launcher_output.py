"""Reading a launcher subprocess's output in the end-to-end tests: act on a line as it appears, never leave
the launcher (or the Ray it started) behind."""
import os
import signal
import time


def finish(proc, timeout=600) -> tuple[int, str]:
    """(exit code, the rest of the output) once the launcher ends; killed with its session otherwise."""
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out
    finally:
        if proc.poll() is None:  # never leave a launcher (or its Ray) behind
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def act_when(proc, when, act, timeout=300) -> str:
    """Read the launcher's output line by line; the first line for which `when(line)` holds calls `act()`
    (a signal, a kill); then read to the end. The whole output."""
    lines, rest = [], ""
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
            if when(line):
                act()
                break
        _, rest = finish(proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return "".join(lines) + (rest or "")
