"""One live launcher per experiment folder: an exclusive `flock` on `<experiment>/launch.lock`.

The kernel releases the lock when its holder exits, however it exits (SIGKILL included), so a killed
launcher never blocks `--resume`; the file's text (pid, host, start time) only names the holder in the
refusal. `flock` locks belong to an open file, so two launches in one process exclude each other too.
"""
from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path
from search.io.files import Files



class Locked(RuntimeError):
    """Another live launcher holds the experiment (the message names it)."""


class ExperimentLock:
    def __init__(self, exp_dir: Path):
        self.path = exp_dir / Files.LOCK
        self._fd: int | None = None

    def acquire(self) -> "ExperimentLock":
        """Take the lock or raise Locked. Retries when the file was replaced between open and lock (a
        failed start removes its folder, lock file included)."""
        for _ in range(5):
            try:  # never through a link: opening one would truncate whatever it points at
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
            except OSError as exc:
                raise Locked(f"--name: {self.path}: cannot open the lock file ({exc.strerror}); "
                             f"move it away if it is a link") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._locked() from None
            if self._same_file(fd):
                self._fd = fd
                os.ftruncate(fd, 0)
                os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since "
                             f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode())
                return self
            os.close(fd)  # locked a file that was unlinked meanwhile: take the new one
        raise Locked(f"--name: {self.path.parent} keeps changing under this launcher; try again")

    def check_free(self) -> None:
        """Raise Locked when a live launcher holds the folder; creates nothing (a check before writing)."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_NOFOLLOW)
        except OSError:  # no lock file (or none we can open, a link included): nobody holds it
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except BlockingIOError:
            raise self._locked() from None
        finally:
            os.close(fd)

    def _same_file(self, fd: int) -> bool:
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def _locked(self) -> Locked:
        return Locked(f"--name: {self.path.parent} is in use by another launcher ({self.holder()}); "
                      f"wait for it to end or stop it first")

    def holder(self) -> str:
        try:
            text = self.path.read_text(errors="replace")[:200].strip()
        except OSError:
            text = ""
        return text or "a launcher that is still starting"

    def release(self, remove: bool = False) -> None:
        """Unlock; `remove` also deletes the file (a failed start leaves nothing behind)."""
        if self._fd is None:
            return
        if remove:
            self.path.unlink(missing_ok=True)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
