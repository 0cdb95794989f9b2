"""python -m search.report EXPERIMENT_DIR: the report of a sweep, written whole in a new folder and moved in place."""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import matplotlib
import pandas as pd

matplotlib.use("Agg")  # files only: no display on workers or CI

from mtl_core.cli import OneLineParser, fail
from search.io.files import CorruptFile, Files
from search.io.folder_read import check_output_folder, read_table
from search.report.inputs import ReportInput

log = logging.getLogger(__name__)
from search.report.front import front_section
from search.report.inputs import read_front
from search.report.sections import fresh_folder, move_in, write_report
from search.space.parse import recorded_space


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
        fresh = fresh_folder(exp_dir)
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
        move_in(fresh, out)
    except OSError as exc:
        return fail(f"{out}: cannot replace it ({exc.strerror}); the new report is in {fresh}", code=1)
    print(f"report written to {out / Files.SUMMARY}")
    return 0


def front_main(argv: list[str] | None = None) -> int:
    """python -m search.front_report EXPERIMENT_DIR: the front section alone, into report/front.md."""
    p = OneLineParser(prog="python -m search.front_report", description=__doc__)
    p.add_argument("experiment_dir", type=Path)
    args = p.parse_args(argv)
    out = args.experiment_dir / Files.REPORT
    if not args.experiment_dir.is_dir():
        return fail(f"{args.experiment_dir}: no such experiment folder")
    try:  # everything read before anything is written
        objectives, seen, reference = read_front(args.experiment_dir, recorded_space(args.experiment_dir))
        trials = read_table(args.experiment_dir / Files.TRIALS, ("trial_id",)) if objectives else pd.DataFrame()
        check_output_folder(out)
    except CorruptFile as exc:
        return fail(str(exc), code=1)
    if not objectives:
        return fail(f"{args.experiment_dir}: not a multi-objective search (no search.objectives)")
    try:
        with tempfile.TemporaryDirectory(prefix=".front-", dir=args.experiment_dir) as fresh:
            fresh = Path(fresh)  # written here, then moved in: a link already at a name is replaced, never followed
            (fresh / "front.md").write_text("\n".join(front_section(objectives, seen, trials, fresh, reference)))
            out.mkdir(exist_ok=True)
            for path in fresh.iterdir():
                os.replace(path, out / path.name)
    except OSError as exc:  # a read-only folder, a full disk
        return fail(f"{args.experiment_dir}: cannot write the front there ({exc.strerror or type(exc).__name__})",
                    code=1)
    print(f"front written to {out / 'front.md'}")
    return 0
