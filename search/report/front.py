"""python -m search.front_report EXPERIMENT_DIR: the front of a multi-objective search, for the report.

The hypervolume of every validation vector the search observed against the epochs it had spent (in the
order Tune received the results), with the reference point each objective's majority-class score on
validation, as `hypervolume.png`; and which strategies populate which part of the front: each trial of
front 0 with its strategy and the objectives on which it is the front's best (an end of the front) or
`knee` (none). `front_section` returns the Markdown for `search.report`'s summary (one line there calls
it); alone, this writes `report/front.md`.
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mtl_core import keys  # noqa: E402
from mtl_core.strategies import AXES  # noqa: E402
from mtl_core.cli import OneLineParser, fail  # noqa: E402
from mtl_core.validation import ConfigError  # noqa: E402
from search.io.files import CorruptFile, Files
from search.space.parse import load_space, recorded_space
from search.space.settings import SpaceSpec
from search.io.folder_read import check_output_folder, read_json_lines, read_table  # noqa: E402
from search.analysis.labels import name_key  # noqa: E402
from search.analysis.pareto import hypervolume_trace  # noqa: E402

STRATEGY = {**{f"config/{name_key(axis)}": axis for axis in AXES}, "config/groups": "groups"}  # column -> name


def observed(exp_dir: Path, objectives: Sequence[str], phase: str = "search") -> pd.DataFrame:
    """Every result of the phase's trials (one row per trial and epoch, a restored epoch once), in the
    order the driver received them (Tune's result.json timestamps)."""
    rows = []
    for path in sorted((Path(exp_dir) / phase).glob("trial_*/result.json")):
        for r in read_json_lines(path):
            if not isinstance(r, dict):
                raise CorruptFile(f"{path}: a line is not a result (a JSON object)")
            rows.append({"trial": path.parent.name.removeprefix("trial_"), "timestamp": _number(r.get("timestamp", 0)),
                         "iteration": _number(r.get("training_iteration", 0)), **{o: _number(r.get(o)) for o in objectives}})
    if not rows:
        return pd.DataFrame(columns=["trial", "timestamp", "iteration", *objectives])
    df = pd.DataFrame(rows).sort_values(["timestamp", "trial", "iteration"], kind="stable", ignore_index=True)
    return df.drop_duplicates(["trial", "iteration"], keep="last").reset_index(drop=True)


def _number(value) -> float:
    """An objective's value as Tune recorded it; anything but a number (a stranger's file) counts as missing."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else np.nan


def signed(df: pd.DataFrame, objectives: Sequence[str]) -> np.ndarray:
    """The objectives' columns, each turned so that higher is better."""
    return df[list(objectives)].to_numpy(float) * [1.0 if keys.direction(o) == "max" else -1.0 for o in objectives]


def parts_of_front(trials: pd.DataFrame, objectives: Sequence[str]) -> pd.DataFrame:
    """Front 0's trials, their strategy, and the objectives on which each is the front's best."""
    front = trials[trials["front"] == 0].copy() if "front" in trials else trials.iloc[0:0].copy()
    if front.empty:
        return front
    values = signed(front, objectives)
    best = values.max(axis=0)
    front["best on"] = [", ".join(o for o, v, b in zip(objectives, row, best) if v == b) or "knee" for row in values]
    if "label" in front:  # the configuration's label says its strategy and grouping (search.analysis.labels)
        cols = ["label"] + list(objectives) + ["best on"]
        return front[cols].rename(columns={"label": "configuration"})
    cols = ["trial_id"] + [c for c in STRATEGY if c in front] + list(objectives) + ["best on"]
    return front[cols].rename(columns=STRATEGY)


def markdown_table(df: pd.DataFrame) -> list[str]:
    """A plain Markdown table (floats to 3 places; a `|` inside a cell escaped)."""
    def cell(v) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v).replace("|", "\\|")
    return ["| " + " | ".join(map(str, df.columns)) + " |", "|" + "---|" * len(df.columns)] + \
        ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]


def front_section(objectives: Sequence[str], seen: pd.DataFrame, trials: pd.DataFrame, out: Path,
                  reference: Sequence[float] | None) -> list[str]:
    """The report's Markdown on the front (empty for a single-metric search); writes hypervolume.png.
    `seen`: every result of the search in the order received (`observed`); `reference`: the hypervolume's."""
    if not objectives:
        return []
    lines = ["## The front of the tasks (multi-objective search)", ""]
    if reference is not None and len(seen):
        trace = hypervolume_trace(signed(seen, objectives), reference)
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.step(np.arange(1, len(trace) + 1), trace, where="post")
        ax.set_xlabel("epochs spent (all trials)")
        ax.set_ylabel("hypervolume")
        ax.set_title("hypervolume of the validation front against the majority-class reference")
        fig.tight_layout()
        fig.savefig(out / "hypervolume.png", dpi=110)
        plt.close(fig)
        lines += [f"Hypervolume of the validation front after {len(trace)} epochs: {trace[-1]:.5g} (reference: "
                  "each objective's majority-class score on validation).", "",
                  "![hypervolume against epochs spent](hypervolume.png)", ""]
    parts = parts_of_front(trials, objectives)
    if not parts.empty:
        lines += [f"{len(parts)} of {len(trials)} trials are non-dominated; which strategies hold which part of "
                  "the front (`best on`: the objectives on which a trial is the front's best; `knee`: none):", "",
                  *markdown_table(parts), ""]
    return lines


def read_front(exp_dir: Path, spec: SpaceSpec) -> tuple[list[str], pd.DataFrame, list[float] | None]:
    """From an experiment folder of the space `spec`: the search's objectives (none: a single metric), its
    results in the order received (Tune's own record of them) and the hypervolume's reference point."""
    objectives = list(spec.search.objectives)
    if not objectives:
        return [], pd.DataFrame(), None
    return objectives, observed(exp_dir, objectives), _reference(exp_dir, objectives)


def _reference(exp_dir: Path, objectives: list[str]) -> list[float] | None:
    """The majority-class reference on validation: it reads the experiment's data, so the space is loaded as
    a launch loads it (its data folder must be there)."""
    from search.analysis.reference import validation_reference

    try:
        config = load_space(exp_dir / Files.SPACE).config
    except ConfigError as exc:  # the recorded space does not validate: not one this service wrote
        first = str(exc).splitlines()[0]
        where = str(exp_dir / Files.SPACE)
        raise CorruptFile(first if where in first else f"{where}: {first}") from None
    return validation_reference(objectives, config)


def main(argv: list[str] | None = None) -> int:
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


if __name__ == "__main__":
    sys.exit(main())
