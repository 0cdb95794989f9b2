"""A full disk: recognised however a library says it, the log file goes quiet instead of a traceback per
record, a trial that failed for it stops the phase, and Tune's cut-short error pickles are removed before a
resume (the whole launch on a small tmpfs: tests/integration/test_faults.py)."""
import errno
import logging
import pickle
from types import SimpleNamespace

import pytest

from search.io.disk import DiskFull, drop_broken_error_pickles, is_no_space, no_space_line


def test_a_full_disk_is_recognised_however_it_is_said():
    assert is_no_space(OSError(errno.ENOSPC, "No space left on device"))
    assert is_no_space(OSError("Error writing bytes to file. Detail: [errno 28] No space left on device"))  # pyarrow
    assert is_no_space(RuntimeError("(sqlite3.OperationalError) database or disk is full"))
    try:
        try:
            raise OSError(errno.ENOSPC, "No space left on device")
        except OSError:
            raise RuntimeError("Trials did not complete")  # Tune's wrapping
    except RuntimeError as wrapped:
        assert is_no_space(wrapped)
    assert not is_no_space(OSError(errno.EACCES, "Permission denied")) and not is_no_space(None)


def test_the_line_names_the_path_and_how_to_continue(tmp_path):
    line = no_space_line(OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "x.csv")), tmp_path,
                         "continue with: python -m search.launch s.yaml --resume")
    assert str(tmp_path / "x.csv") in line and line.endswith("--resume") and "\n" not in line
    assert str(tmp_path) in no_space_line(DiskFull(tmp_path), tmp_path / "other", None)
    assert "run the same command again" in no_space_line(OSError("x"), tmp_path, None)


def test_an_empty_or_cut_short_error_pickle_is_removed_before_a_resume(tmp_path, capsys):
    """Tune unpickles a failed trial's error.pkl to build the phase's results: an empty one (a full disk while
    it was written) made --resume fail with EOFError. Judged without unpickling."""
    whole = pickle.dumps(ValueError("boom"))
    files = {"search/trial_a": whole, "search/trial_b": b"", "final/trial_c": whole[:-3]}
    for folder, data in files.items():
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "error.pkl").write_bytes(data)
        (tmp_path / folder / "error.txt").write_text("Failure # 1\n")
    removed = drop_broken_error_pickles(tmp_path)
    assert sorted(p.parent.name for p in removed) == ["trial_b", "trial_c"]
    assert (tmp_path / "search/trial_a/error.pkl").read_bytes() == whole
    assert all((tmp_path / f / "error.txt").is_file() for f in files)
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and all(line.startswith("warning: ") for line in out)


def test_the_log_file_goes_quiet_on_a_full_disk_instead_of_a_traceback_per_record(capsys):
    """/dev/full refuses every write with ENOSPC, as a full disk does."""
    from search.io.console import _LogFile

    handler = _LogFile("/dev/full")
    logger = logging.getLogger("test_disk.full")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        for i in range(3):
            logger.warning("record %d", i)
    finally:
        logger.removeHandler(handler)
        handler.close()
    err = capsys.readouterr().err
    assert "Logging error" not in err and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("warning: /dev/full") and "No space left on device" in lines[0]


def test_the_console_leaves_a_full_disk_to_the_launcher_s_one_line():
    from search.io.console import _ConsoleFilter

    def record(name, msg, exc=None):
        return logging.LogRecord(name, logging.ERROR, __file__, 1, msg, (), (type(exc), exc, None) if exc else None)

    keep = _ConsoleFilter().filter
    assert not keep(record("ray.tune.execution.experiment_state", "Saving experiment state failed",
                           OSError("[errno 28] No space left on device")))
    assert not keep(record("mlflow.store.db.utils", "SQLAlchemy database error: database or disk is full"))
    assert keep(record("ray.tune", "something else broke", ValueError("x")))


def test_a_trial_that_failed_for_a_full_disk_stops_the_phase(tmp_path):
    """Its retries would fail the same way, and a trial that used them up would stay failed on --resume."""
    from search.tune.trainable import StopOnFullDisk

    error = tmp_path / "error.txt"
    error.write_text("Failure # 1 (occurred at x)\nOSError: [Errno 28] Error writing bytes to file. Detail: "
                     "[errno 28] No space left on device\nFailure # 2 (occurred at y)\nValueError: other\n")
    stop = StopOnFullDisk(str(tmp_path))
    stop.on_trial_recover(0, [], SimpleNamespace(error_file=str(error), error_msg=None))  # the latest: not a full disk
    error.write_text(error.read_text() + "Failure # 3 (occurred at z)\nNo space left on device\n")
    with pytest.raises(DiskFull) as raised:
        stop.on_trial_recover(0, [], SimpleNamespace(error_file=str(error), error_msg=None))
    assert raised.value.filename == str(tmp_path)
    with pytest.raises(DiskFull):
        stop.on_trial_error(0, [], SimpleNamespace(error_file=None, error_msg="OSError: [Errno 28] No space left"))


def test_a_full_disk_elsewhere_is_not_blamed_on_the_experiment_folder(tmp_path, monkeypatch):
    """Ray's object store (/dev/shm) or the temporary folder can fill up while the experiment folder has room:
    the line names the path the error carries, or says that another device is full."""
    import search.io.disk as disk
    from search.tune.trainable import StopOnFullDisk

    stop = StopOnFullDisk(str(tmp_path))
    shm = "OSError: [Errno 28] No space left on device: '/dev/shm/plasma-17'\n"
    with pytest.raises(DiskFull) as raised:
        stop.on_trial_error(0, [], SimpleNamespace(error_file=None, error_msg=shm))
    line = no_space_line(raised.value, tmp_path, "continue with: --resume")
    assert raised.value.filename == "/dev/shm/plasma-17" and "/dev/shm/plasma-17" in line and str(tmp_path) not in line

    unnamed = "OSError: [Errno 28] Error writing bytes to file. Detail: [errno 28] No space left on device\n"
    for free, blamed in ((10 * 2**30, False), (2**20, True)):  # the folder's device with room, then full
        monkeypatch.setattr(disk.shutil, "disk_usage", lambda path: SimpleNamespace(total=20 * 2**30, free=free))
        with pytest.raises(DiskFull) as raised:
            stop.on_trial_error(0, [], SimpleNamespace(error_file=None, error_msg=unnamed))
        wrapped = RuntimeError("Tuner.fit failed")  # as it comes out of Tune: DiskFull its cause
        wrapped.__cause__ = raised.value
        line = no_space_line(wrapped, tmp_path, "continue with: --resume")
        assert (f"writing {tmp_path}" in line) == blamed and ("other than the experiment folder" in line) != blamed
