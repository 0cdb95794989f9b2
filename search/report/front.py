"""The front of a multi-objective search, for the report (alone: `python -m search.front_report`).

The hypervolume of every validation vector the search observed against the epochs it had spent (in the
order Tune received the results), with the reference point each objective's majority-class score on
validation, as `hypervolume.png`; and which strategies populate which part of the front: each trial of
front 0 with its strategy and the objectives on which it is the front's best (an end of the front) or
`knee` (none). `front_section` returns the Markdown for `search.report`'s summary (one line there calls
it); alone, this writes `report/front.md`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")  # files only
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from mtl_core import keys  # noqa: E402
from mtl_core.strategies import AXES  # noqa: E402
from search.analysis.labels import name_key  # noqa: E402
from search.analysis.pareto import hypervolume_trace  # noqa: E402

STRATEGY = {**{f"config/{name_key(axis)}": axis for axis in AXES}, "config/groups": "groups"}  # column -> name


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

