"""A full disk under the experiment folder: the launch stops with one line naming the path and exit 1, keeps
what it wrote, and `--resume` continues once there is space.

Every library says it its own way: Python's OSError (errno ENOSPC), pyarrow's (Tune copying a checkpoint or
its state into the folder: an OSError whose errno may be unset, "[errno 28] No space left on device" in its
text), SQLite's "database or disk is full" (the MLflow store in the folder), and a failed trial's error text.
"""
from __future__ import annotations

import errno
import logging
import os
import pickletools
import re
import shutil
from pathlib import Path

NO_SPACE = os.strerror(errno.ENOSPC)  # "No space left on device"
SIGNS = (NO_SPACE.lower(), "[errno 28]", "database or disk is full")

log = logging.getLogger(__name__)


class DiskFull(OSError):
    """A write under `path` failed for want of space (errno ENOSPC, `filename` the path). `elsewhere`: the error
    named no path and `path` (the experiment folder) still has room, so the full device is another one."""

    def __init__(self, path: str | Path, elsewhere: bool = False):
        super().__init__(errno.ENOSPC, NO_SPACE, str(path))
        self.elsewhere = elsewhere


ROOM = 64 * 2**20  # free bytes above which a folder's device is not the one that filled up


def named_path(text: str) -> str | None:
    """The path a full-disk error's text names (Python's "[Errno 28] No space left on device: '/dev/shm/x'"),
    the last such one; None when it names none (pyarrow's, SQLite's)."""
    found = re.findall(re.escape(NO_SPACE) + r":\s*'([^'\n]+)'", text, re.IGNORECASE)
    return found[-1] if found else None


def has_room(path: str | Path) -> bool:
    try:
        usage = shutil.disk_usage(path)
    except OSError:
        return False
    return usage.free > max(ROOM, usage.total // 100)


def says_no_space(text: str) -> bool:
    text = text.lower()
    return any(sign in text for sign in SIGNS)


def is_no_space(exc: BaseException | None) -> bool:
    """Whether `exc`, or an exception it was raised from or during, is a full disk."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if getattr(exc, "errno", None) == errno.ENOSPC or says_no_space(str(exc)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _full(exc: BaseException | None) -> BaseException | None:
    """The full-disk error in `exc`'s chain that names a path (a DiskFull first), else None."""
    seen, named = set(), None
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, DiskFull):
            return exc
        if named is None and getattr(exc, "filename", None) and is_no_space(exc):
            named = exc
        exc = exc.__cause__ or exc.__context__
    return named


def no_space_line(exc: BaseException, where: Path, hint: str | None) -> str:
    """The launcher's one line: the path that could not be written (the file when the error names one, else
    the experiment folder `where`; a device other than it when the error names none and the folder has room)
    and what to do. `hint`: how to continue the experiment ("continue with: ..."), None when nothing was kept
    (a start that failed before the experiment existed)."""
    full = _full(exc)
    if getattr(full, "elsewhere", False):
        what = (f"no space left on a device other than the experiment folder's ({where} has room; the error names "
                f"no path: Ray's object store in /dev/shm and the temporary folder are the usual ones)")
    else:
        what = f"no space left on device writing {getattr(full, 'filename', None) or where}"
    return (f"{what}; what was written is kept; free space and {hint}" if hint
            else f"{what}; nothing was kept; free space and run the same command again")


def drop_broken_error_pickles(exp_dir: Path, limit: int = 64 * 2**20) -> list[Path]:
    """Remove each trial's `error.pkl` that is not one whole pickle (empty or cut short by a full disk while Tune
    wrote it): Tune unpickles it to build a phase's results and fails on it (EOFError), while the trial's
    `error.txt` says the same in text. Walked opcode by opcode, never run. Returns the files removed, each said
    in one line."""
    removed = []
    for path in sorted(exp_dir.glob("*/trial_*/error.pkl")):
        try:
            if path.is_symlink() or not path.is_file() or path.stat().st_size > limit:
                continue
            data = path.read_bytes()
        except OSError as exc:
            log.warning("%s: could not check (%s)", path, exc)
            continue
        try:
            for _ in pickletools.genops(data):  # stops at the pickle's STOP; raises when the data ends first
                pass
            whole = bool(data)
        except Exception:  # cut short, or not a pickle
            whole = False
        if not whole:
            path.unlink()
            removed.append(path)
            print(f"warning: {path}: removed an empty or cut-short error file (its trial's error.txt is kept)",
                  flush=True)
    return removed
