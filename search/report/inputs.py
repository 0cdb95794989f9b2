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
from search.io.files import Files
from search.io.state import read_state
from search.io.folder_read import read_json, read_table
from search.report.front import read_front
from search.space.parse import recorded_space
from search.space.rungs import rungs

TRIAL_COLUMNS = ("trial_id", "status", "label")  # what every report section reads from the tables
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
        read_state(exp_dir)  # a folder of another format is refused here, not misread
        spec = recorded_space(exp_dir)
        s = spec.search
        objectives, observed, reference = read_front(exp_dir, spec)
        return cls(
            name=exp_dir.name, metric=s.metric, mode=s.mode, milestones=rungs(s.grace_period, s.reduction_factor, spec.max_t),
            base=spec.base, baselines=list(s.baselines),
            trials=read_table(exp_dir / Files.TRIALS, TRIAL_COLUMNS),
            history=read_table(exp_dir / Files.HISTORY, HISTORY_COLUMNS),
            leaderboard=read_table(exp_dir / Files.LEADERBOARD) if (exp_dir / Files.LEADERBOARD).is_file() else None,
            final_runs=read_table(exp_dir / Files.FINAL_RUNS), decisions=read_table(exp_dir / Files.DECISION),
            axis_study=read_table(exp_dir / Files.AXIS_STUDY), pretraining_study=read_table(exp_dir / Files.PRETRAIN_STUDY),
            tuning=read_json(exp_dir / Files.TUNED, default={}), floor=read_json(exp_dir / Files.FLOOR, default={}),
            objectives=objectives, observed=observed, reference=reference)
