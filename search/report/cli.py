"""python -m search.report EXPERIMENT_DIR: the report of a sweep, written whole in a new folder and moved in place."""
from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on workers or CI

from mtl_core.cli import OneLineParser, fail
from search.io.files import CorruptFile, Files
from search.io.folder_read import check_output_folder
from search.report.inputs import ReportInput

log = logging.getLogger(__name__)
from search.report.sections import write_report


def main(argv: list[str] | None = None) -> int:
    p = OneLineParser(prog="python -m search.report", description=__doc__)
    p.add_argument("experiment_dir", type=Path)
    args = p.parse_args(argv)
    exp_dir, out = args.experiment_dir, args.experiment_dir / Files.REPORT
    if not (exp_dir / Files.TRIALS).is_file():
        return fail(f"{exp_dir}: no trials.parquet (not an experiment folder, or no trial ended yet)")
    try:  # everything read, bounded and checked, before anything is written
        given = ReportInput.read(exp_dir)
        check_output_folder(out)
    except CorruptFile as exc:
        return fail(str(exc), code=1)
    try:
        fresh = _fresh_folder(exp_dir)
    except OSError as exc:  # a read-only folder, a full disk
        return fail(f"{exp_dir}: cannot write the report there ({exc.strerror or type(exc).__name__})", code=1)
    try:
        write_report(given, fresh)
    except OSError as exc:
        shutil.rmtree(fresh, ignore_errors=True)
        return fail(f"{exp_dir}: cannot write the report there ({exc.strerror or type(exc).__name__})", code=1)
    except Exception as exc:  # a table with the columns we write but values we never would
        shutil.rmtree(fresh, ignore_errors=True)
        return fail(f"{exp_dir}: no report from these files ({type(exc).__name__}: {str(exc)[:200]}); "
                    f"they are not what this service writes", code=1)
    try:
        _move_in(fresh, out)
    except OSError as exc:
        return fail(f"{out}: cannot replace it ({exc.strerror}); the new report is in {fresh}", code=1)
    print(f"report written to {out / Files.SUMMARY}")
    return 0

def _fresh_folder(exp_dir: Path) -> Path:
    """A new folder in the experiment folder to write a report into: new, so nothing in it leads elsewhere."""
    return Path(tempfile.mkdtemp(prefix=".report-", dir=exp_dir))

def _move_in(fresh: Path, out: Path) -> None:
    """The report written in `fresh` becomes `out`, the old one removed (a link inside it is removed, never
    followed)."""
    fresh.chmod(0o755)
    if out.is_dir() and not out.is_symlink():
        shutil.rmtree(out)
    fresh.rename(out)

def write_report_folder(given: ReportInput, exp_dir: Path) -> Path:
    """The report in `exp_dir/report`, written in a new folder and then moved in place (the launcher's end):
    a link at `report` is refused (CorruptFile), one inside it replaced, never written through."""
    out = exp_dir / Files.REPORT
    check_output_folder(out)
    fresh = _fresh_folder(exp_dir)
    try:
        write_report(given, fresh)
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    _move_in(fresh, out)
    return out
