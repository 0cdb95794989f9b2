"""What the report is written from: an experiment's tables and the settings that read them, in memory.

The launcher's finish step hands them over as the phases made them (`search.finish.report_input`);
`ReportInput.read` takes them back from an experiment folder, for `python -m search.report` alone.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from search.experiment import Files
from search.front_report import read_front
from search.stats import rungs


@dataclass
class ReportInput:
    name: str  # the experiment's
    metric: str = "val/avg_f1"
    mode: str = "max"
    milestones: list[int] = field(default_factory=list)  # the ASHA rungs, in epochs
    base: dict[str, Any] = field(default_factory=dict)  # the space's run sections (labels of an older table)
    baselines: list[str] = field(default_factory=list)  # search.baselines
    trials: pd.DataFrame = field(default_factory=pd.DataFrame)  # the leaderboard's trials, one row each
    history: pd.DataFrame = field(default_factory=pd.DataFrame)  # their metrics per epoch
    leaderboard: pd.DataFrame | None = None  # with the final phase's columns; None: no leaderboard.csv to link
    final_runs: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per retrained (configuration, seed)
    decisions: pd.DataFrame = field(default_factory=pd.DataFrame)  # the race's (search.decision.decision_table)
    axis_study: pd.DataFrame = field(default_factory=pd.DataFrame)
    pretraining_study: pd.DataFrame = field(default_factory=pd.DataFrame)
    tuning: dict[str, dict] = field(default_factory=dict)  # each tuned baseline's own search (tuned_baselines.json)
    floor: dict[str, float] = field(default_factory=dict)  # the bag-of-words floor's test metrics
    objectives: list[str] = field(default_factory=list)  # a multi-objective search's
    observed: pd.DataFrame = field(default_factory=pd.DataFrame)  # its results in arrival order (front_report.observed)
    reference: list[float] | None = None  # its hypervolume's reference point

    @classmethod
    def read(cls, exp_dir: Path) -> "ReportInput":
        """The tables an experiment folder holds (the ones an interrupted or older experiment lacks: empty)."""
        exp_dir = Path(exp_dir)
        space = _yaml(exp_dir / Files.SPACE)
        search, train = space.get("search") or {}, space.get("train") or {}
        objectives, observed, reference = read_front(exp_dir)
        return cls(
            name=exp_dir.name, metric=search.get("metric", "val/avg_f1"), mode=search.get("mode", "max"),
            milestones=rungs(int(search.get("grace_period", 1)), int(search.get("reduction_factor", 3)),
                             int(train.get("epochs", 10))),
            base=space, baselines=list(search.get("baselines", [])),
            trials=pd.read_parquet(exp_dir / Files.TRIALS), history=_parquet(exp_dir / Files.HISTORY),
            leaderboard=pd.read_csv(exp_dir / Files.LEADERBOARD) if (exp_dir / Files.LEADERBOARD).is_file() else None,
            final_runs=_parquet(exp_dir / Files.FINAL_RUNS), decisions=_csv(exp_dir / Files.DECISION),
            axis_study=_csv(exp_dir / Files.AXIS_STUDY), pretraining_study=_csv(exp_dir / Files.PRETRAIN_STUDY),
            tuning=_json(exp_dir / Files.TUNED), floor=_json(exp_dir / Files.FLOOR),
            objectives=objectives, observed=observed, reference=reference)


def _yaml(path: Path) -> dict:
    return (yaml.safe_load(path.read_text()) or {}) if path.is_file() else {}


def _json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def _csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path) if path.is_file() else pd.DataFrame()


def _parquet(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.is_file() else pd.DataFrame()
