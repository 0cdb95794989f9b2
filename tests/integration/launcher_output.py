"""Reading a launcher subprocess's output in the end-to-end tests: act on a line as it appears, never leave
the launcher (or the Ray it started) behind."""
import time

from conftest import kill_session


def finish(proc, timeout=600) -> tuple[int, str]:
    """(exit code, the rest of the output) once the launcher ends; killed with its session otherwise."""
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out
    finally:
        kill_session(proc)


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
        kill_session(proc)
    return "".join(lines) + (rest or "")
