"""One experiment's context, handed to every phase: the space, its folder, the MLflow tracker (parent run
and outage queue) and whether it resumes; and what the phases hand on to each other."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from search.io.state import resume_hint
from search.space.settings import SpaceSpec
from search.space.trial import TrialSettings, scratch_key

if TYPE_CHECKING:  # the launcher reads this module before Ray may be imported (tracking imports it)
    from search.tracking.tracker import Tracker


@dataclass
class Candidate:
    """A configuration the final phase may retrain: its name there, its overrides, its validation score."""

    name: str
    overrides: dict[str, Any]
    score: float
    trial_id: str | None = None  # the leaderboard row it came from, if any


@dataclass
class Outcome:
    """What the phases of one experiment have produced so far."""

    trials: pd.DataFrame = field(default_factory=pd.DataFrame)  # the leaderboard's trials (one row each)
    history: pd.DataFrame = field(default_factory=pd.DataFrame)  # their metrics per epoch
    expected: int = 0  # how many trials that phase should have ended with
    configs: list[dict] = field(default_factory=list)  # strategy configurations of the grouping modes
    scores: pd.DataFrame = field(default_factory=pd.DataFrame)  # every partition's exhaustive score
    measured: list = field(default_factory=list)  # the affinity runs' results
    candidates: list[Candidate] = field(default_factory=list)
    final_runs: pd.DataFrame = field(default_factory=pd.DataFrame)  # one row per retrained (configuration, seed)
    comparisons: list = field(default_factory=list)  # the race's verdicts (search.analysis.decision.Comparison)
    axis_study: pd.DataFrame = field(default_factory=pd.DataFrame)  # search.run.axis_study's effects
    pretraining_study: pd.DataFrame = field(default_factory=pd.DataFrame)  # ... of pretraining, per task
    tuned: dict[str, dict] = field(default_factory=dict)  # tuned baselines: name -> their best knobs' overrides
    tuning: dict[str, dict] = field(default_factory=dict)  # ... and their searches: trials, score, knobs
    artifacts: list[Path] = field(default_factory=list)  # files for the parent run
    interrupted: bool = False
    started: float = field(default_factory=time.time)  # when the launch began (the console's total time)


@dataclass
class Experiment:
    spec: SpaceSpec
    dir: Path
    tracker: "Tracker"  # the parent run's calls; each phase's trials get their own tracker on the same run
    resume: bool

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def max_t(self) -> int:
        return self.spec.max_t

    def trial_settings(self, eval_test: bool = False) -> TrialSettings:
        s = self.spec.search
        return TrialSettings(self.spec.base, s.metric, s.mode, s.cpu, eval_test, tuple(s.multi.objectives),
                             scratch_key(self.dir))

    def resume_hint(self) -> str:
        return resume_hint(self.spec.path, self.dir)
