"""Every file the service writes into an experiment folder goes through here: written whole to a new
temporary file beside it and renamed over the name. A rename replaces whatever is at the name, a link
included, and never writes through it (so a link planted in the folder cannot make us overwrite the file it
points at), and a crash or a full disk mid-write leaves the old file or none, never half of one. Files that
are appended to as the launch runs (the spool) are opened without following a link."""
from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path

import pandas as pd


@functools.cache
def _file_mode() -> int:
    """What `open(path, "w")` would give a new file under this process's umask (mkstemp gives 0600)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc: read it by setting it (and put it back at once)
    os.umask(mask)
    return 0o666 & ~mask


def write_bytes(path: Path, data: bytes) -> None:
    """`data` at `path`, atomically (see the module)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:100]}.", suffix=".tmp", dir=path.parent)  # O_EXCL: a new file
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            os.fchmod(f.fileno(), _file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_csv(table: pd.DataFrame, path: Path) -> None:
    write_text(path, table.to_csv(index=False))


def append_text(path: Path, text: str) -> None:
    """`text` added at the end of `path` (made if missing); a link at `path` is refused (OSError ELOOP)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, _file_mode())
    with os.fdopen(fd, "a", encoding="utf-8") as f:
        f.write(text)

