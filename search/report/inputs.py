"""What the report is written from: an experiment's tables and the settings that read them, in memory.

The launcher's finish step hands them over as the phases made them (`search.run.finish.report_input`);
`ReportInput.read` takes them back from an experiment folder, for `python -m search.report` alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import pandas as pd

from mtl_core import keys
from mtl_core.validation import ConfigError
from search.io.files import CorruptFile, Files
from search.io.state import read_state
from search.io.folder_read import read_json_lines, read_json, read_table
from search.space.parse import load_space, recorded_space
from search.space.rungs import rungs
from search.space.settings import SpaceSpec

TRIAL_COLUMNS = ("trial_id", "status", "label")  # what every report section reads from the tables
HISTORY_COLUMNS = ("trial_id", "training_iteration")


@dataclass
class ReportInput:
    name: str  # the experiment's
    metric: str = keys.DEFAULT_METRIC
    mode: str = "max"
    milestones: list[int] = field(default_factory=list)  # the ASHA rungs, in epochs
    base: dict[str, Any] = field(default_factory=dict)  # the space's run sections
    baselines: list[str] = field(default_factory=list)  # search.baselines
    trials: pd.DataFrame = field(default_factory=pd.DataFrame)  # the leaderboard's trials, one row each
    history: pd.DataFrame = field(default_factory=pd.DataFrame)  # their metrics per epoch
    leaderboard: pd.DataFrame | None = None  # with the final phase's columns; None: no leaderboard.csv to link
    final_runs: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per retrained (configuration, seed)
    decisions: pd.DataFrame = field(default_factory=pd.DataFrame)  # the race's (search.analysis.decision.decision_table)
    axis_study: pd.DataFrame = field(default_factory=pd.DataFrame)
    pretraining_study: pd.DataFrame = field(default_factory=pd.DataFrame)
    tuning: dict[str, dict] = field(default_factory=dict)  # each tuned baseline's own search (tuned_baselines.json)
    floor: dict[str, float] = field(default_factory=dict)  # the bag-of-words floor's test metrics
    objectives: list[str] = field(default_factory=list)  # a multi-objective search's
    observed: pd.DataFrame = field(default_factory=pd.DataFrame)  # its results in arrival order (observed, below)
    reference: list[float] | None = None  # its hypervolume's reference point

    @classmethod
    def read(cls, exp_dir: Path) -> "ReportInput":
        """The tables an experiment folder holds (the ones an interrupted or older experiment lacks: empty),
        read as a stranger may have left them (`search.io.folder_read`: CorruptFile naming the file)."""
        exp_dir = Path(exp_dir)
        read_state(exp_dir)  # a folder of another format is refused here, not misread
        spec = recorded_space(exp_dir)
        s = spec.search
        objectives, observed, reference = read_front(exp_dir, spec)
        return cls(
            name=exp_dir.name, metric=s.metric, mode=s.mode, milestones=rungs(s.grace_period, s.reduction_factor, spec.max_t),
            base=spec.base, baselines=list(s.baselines.names),
            trials=read_table(exp_dir / Files.TRIALS, TRIAL_COLUMNS),
            history=read_table(exp_dir / Files.HISTORY, HISTORY_COLUMNS),
            leaderboard=read_table(exp_dir / Files.LEADERBOARD) if (exp_dir / Files.LEADERBOARD).is_file() else None,
            final_runs=read_table(exp_dir / Files.FINAL_RUNS), decisions=read_table(exp_dir / Files.DECISION),
            axis_study=read_table(exp_dir / Files.AXIS_STUDY), pretraining_study=read_table(exp_dir / Files.PRETRAIN_STUDY),
            tuning=read_json(exp_dir / Files.TUNED, default={}), floor=read_json(exp_dir / Files.FLOOR, default={}),
            objectives=objectives, observed=observed, reference=reference)


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


def read_front(exp_dir: Path, spec: SpaceSpec) -> tuple[list[str], pd.DataFrame, list[float] | None]:
    """From an experiment folder of the space `spec`: the search's objectives (none: a single metric), its
    results in the order received (Tune's own record of them) and the hypervolume's reference point."""
    objectives = list(spec.search.multi.objectives)
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
