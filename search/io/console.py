"""A quiet console: the service's own lines on the terminal, everything else in the experiment's log.

Ray, Tune, MLflow and Optuna each print their own banners, hints and warnings (Tune's configuration
box and TensorBoard hint, Ray's token-authentication notice, MLflow's table creation, Optuna's
ExperimentalWarning). Without `--verbose` those go to `<experiment>/launch.log`; the terminal keeps
progress, the leaderboard, where the results are, and any third-party error.
"""
from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from mtl_core.cli import LOG_FORMAT, NOISY
from search.io.files import Files

OURS = ("search", "mtl_core", "__main__")
THIRD_PARTY = ("ray", "mlflow", "optuna", "alembic", "py.warnings")
TRIAL_FAILED = "Trial task failed"  # how Tune logs each failure of a trial, with its traceback
_quiet = False  # set by setup_console; later calls (after ray.init) follow it


class _ConsoleFilter(logging.Filter):
    """Our loggers at their level; anyone else's only from ERROR up, except a full disk (the launcher says
    it in one line: search.io.disk)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("ray.tune") and str(record.msg).startswith(TRIAL_FAILED):
            return False  # a trial's traceback: launch.log has it, the console gets Progress's one line
        if record.name.startswith(OURS):
            return True
        return record.levelno >= logging.ERROR and not _no_space(record)


def _no_space(record: logging.LogRecord) -> bool:
    """A record about a full disk: Tune's failed state save, MLflow's SQLite store refusing a write."""
    from search.io.disk import is_no_space, says_no_space

    try:
        text = record.getMessage()
    except Exception:  # a record whose arguments do not fit its message
        text = str(record.msg)
    return says_no_space(text) or bool(record.exc_info and is_no_space(record.exc_info[1]))


class _LogFile(logging.FileHandler):
    """The experiment's log file. A write that fails (a full disk) stops it, with one line on the console,
    instead of logging's "--- Logging error ---" traceback for every record from then on."""

    def __init__(self, path: Path):
        super().__init__(path)
        self.failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failed:
            super().emit(record)

    def flush(self) -> None:
        try:
            super().flush()
        except OSError as exc:
            self._stop(exc)

    def handleError(self, record: logging.LogRecord) -> None:
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            super().handleError(record)
            return
        self._stop(exc)

    def close(self) -> None:
        try:
            super().close()
        except OSError:  # the buffered lines a full disk did not take: already said
            pass

    def _stop(self, exc: OSError) -> None:
        if not self.failed:
            self.failed = True
            print(f"warning: {self.baseFilename}: cannot write ({exc.strerror or exc}); other libraries' messages "
                  f"are not kept from now on", file=sys.stderr, flush=True)


def is_quiet() -> bool:
    return _quiet


def quiet_environment() -> None:
    """Before ray, mlflow or optuna are imported: let them log through ours instead of their own
    console handlers, and silence Tune's console reporter (our Progress callback reports)."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # with verbose=0 the legacy reporter prints nothing
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    logging.captureWarnings(True)  # warnings (Optuna's ExperimentalWarning, ...) become log records


def route_third_party_logs() -> None:
    """Remove the console handlers that ray, mlflow and optuna install on their own loggers and let
    their records reach the root logger (and so the log file). Call again after ray.init, which
    reconfigures the `ray` logger. Does nothing with --verbose."""
    if not _quiet:
        return
    for name in THIRD_PARTY:
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                logger.removeHandler(handler)
        logger.propagate = True
    try:
        import optuna

        optuna.logging.disable_default_handler()
        optuna.logging.enable_propagation()
    except ImportError:  # pragma: no cover - optuna is a dependency
        pass


def setup_console(verbose: bool) -> None:
    """The launcher's logging: one console handler (filtered unless verbose) on the root logger."""
    global _quiet
    _quiet = not verbose
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in list(root.handlers):
        root.removeHandler(handler)
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter(LOG_FORMAT, "%H:%M:%S"))
    if not verbose:
        console.addFilter(_ConsoleFilter())
        quiet_environment()
    root.addHandler(console)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def log_to_file(exp_dir: Path) -> Path:
    """Everything, ours and theirs, also goes to the experiment's log file."""
    path = exp_dir / Files.LOG
    handler = _LogFile(path)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    logging.getLogger().addHandler(handler)
    return path


def close_log_file() -> None:
    """Stop writing the experiment's log file (a failed start removes its folder)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).name == Files.LOG:
            root.removeHandler(handler)
            handler.close()


def error_line(error: Any, default: str = "error") -> str:
    """The last non-empty line of an error or traceback (e.g. `TrainingDiverged: epoch 1 step 9: ...`)."""
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else default
