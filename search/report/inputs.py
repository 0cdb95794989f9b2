"""What the report is written from: an experiment's tables and the settings that read them, in memory.

The launcher's finish step hands them over as the phases made them (`search.run.finish.report_input`);
`ReportInput.read` takes them back from an experiment folder, for `python -m search.report` alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from mtl_core import keys
from search.io.files import CorruptFile, Files
from search.io.folder_read import read_json, read_space, read_table
from search.report.front import read_front
from search.space.rungs import rungs

TRIAL_COLUMNS = ("trial_id", "status")  # what every report section reads from the tables
HISTORY_COLUMNS = ("trial_id", "training_iteration")


@dataclass
class ReportInput:
    name: str  # the experiment's
    metric: str = keys.DEFAULT_METRIC
    mode: str = "max"
    milestones: list[int] = field(default_factory=list)  # the ASHA rungs, in epochs
    base: dict[str, Any] = field(default_factory=dict)  # the space's run sections (labels of an older table)
    baselines: list[str] = field(default_factory=list)  # search.space.baselines
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
    observed: pd.DataFrame = field(default_factory=pd.DataFrame)  # its results in arrival order (front_report.observed)
    reference: list[float] | None = None  # its hypervolume's reference point

    @classmethod
    def read(cls, exp_dir: Path) -> "ReportInput":
        """The tables an experiment folder holds (the ones an interrupted or older experiment lacks: empty),
        read as a stranger may have left them (`search.io.folder_read`: CorruptFile naming the file)."""
        exp_dir = Path(exp_dir)
        space = read_space(exp_dir / Files.SPACE)
        search, train = (_section(space, name, exp_dir / Files.SPACE) for name in ("search", "train"))
        objectives, observed, reference = read_front(exp_dir)
        return cls(
            name=exp_dir.name, metric=str(search.get("metric", keys.DEFAULT_METRIC)), mode=str(search.get("mode", "max")),
            milestones=rungs(_int(search, "grace_period", 1, exp_dir), _int(search, "reduction_factor", 3, exp_dir),
                             _int(train, "epochs", 10, exp_dir)),
            base=space, baselines=[str(b) for b in search.get("baselines") or []],
            trials=read_table(exp_dir / Files.TRIALS, TRIAL_COLUMNS),
            history=read_table(exp_dir / Files.HISTORY, HISTORY_COLUMNS),
            leaderboard=read_table(exp_dir / Files.LEADERBOARD) if (exp_dir / Files.LEADERBOARD).is_file() else None,
            final_runs=read_table(exp_dir / Files.FINAL_RUNS), decisions=read_table(exp_dir / Files.DECISION),
            axis_study=read_table(exp_dir / Files.AXIS_STUDY), pretraining_study=read_table(exp_dir / Files.PRETRAIN_STUDY),
            tuning=read_json(exp_dir / Files.TUNED, default={}), floor=read_json(exp_dir / Files.FLOOR, default={}),
            objectives=objectives, observed=observed, reference=reference)



def _section(space: dict, name: str, path: Path) -> dict:
    value = space.get(name) or {}
    if not isinstance(value, dict):
        raise CorruptFile(f"{path}: {name} is not a mapping; not a space this service recorded")
    return value


def _int(section: dict, key: str, default: int, exp_dir: Path) -> int:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10**6:
        raise CorruptFile(f"{exp_dir / Files.SPACE}: {key} is {value!r}, not a count of epochs or a factor "
                          f"(1 to 10**6); not a space this service recorded")
    return value
