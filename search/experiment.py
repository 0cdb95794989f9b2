"""One experiment's context, handed to every phase: the space, its folder, the MLflow tracker (parent run
and outage queue) and whether it resumes. The folder also holds `launch_state.json`, our bookkeeping beside
Tune's (the parent run, the space file, the tracking URI)."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from search.folder_write import write_text
from search.space import SpaceSpec
from search.trial import TrialSettings, scratch_key

if TYPE_CHECKING:  # the launcher reads this module before Ray may be imported (tracking imports it)
    from search.tracking import Tracker



class Files:
    """The experiment folder's files, by what they hold (docs/experiment-folder.md); Tune's own state and the
    trial folders beside them are Tune's."""

    STATE = "launch_state.json"  # our bookkeeping: parent run, space file, tracking URI
    SPACE = "space.yaml"  # the space as it runs (after --set); --resume compares against it
    MLFLOW_DB = "mlflow.db"  # the default MLflow store (without --mlflow-uri); search.mlflow_store makes it
    PENDING = "mlflow_pending.jsonl"  # tracking operations MLflow did not take (see search.replay)
    REPLAYED = "mlflow_pending.replayed.jsonl"  # ... and once replayed
    LOCK = "launch.lock"  # held by the one live launcher
    LOG = "launch.log"  # the libraries' own messages
    TRIALS = "trials.parquet"  # one row per trial of the leaderboard's phase
    HISTORY = "history.parquet"  # their metrics per epoch
    LEADERBOARD = "leaderboard.csv"
    FINAL_RUNS = "final_runs.parquet"  # one row per retrained (configuration, seed), with per-clip predictions
    DECISION = "decision.csv"  # the race's verdicts
    TUNED = "tuned_baselines.json"  # the tuned baselines' knobs and trial counts
    AXIS_STUDY = "axis_study.csv"
    PRETRAIN_STUDY = "pretraining_study.csv"
    FLOOR = "bow_floor.json"  # the bag-of-words floor
    GROUPINGS = "groupings.csv"  # the exhaustive mode's partitions
    SELECTION = "selection.csv"
    AFFINITY_GROUPINGS = "affinity_groupings.csv"
    MO_ASHA_RUNGS = "mo_asha_rungs.json"  # MO-ASHA's rungs, kept across --resume
    OPTUNA_JOURNAL = "optuna.journal"
    REPORT = "report"  # summary.md, summary.html and the plots

    @staticmethod
    def tuning(baseline: str) -> str:
        """A tuned baseline's own search, ranked (search.tune_baselines)."""
        return f"tune_{baseline}.csv"


STATE_KEYS = ("parent_run_id", "space", "tracking_uri", "sweep_token")


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
    comparisons: list = field(default_factory=list)  # the race's verdicts (search.decision.Comparison)
    axis_study: pd.DataFrame = field(default_factory=pd.DataFrame)  # search.axis_study's effects
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
        return TrialSettings(self.spec.base, s.metric, s.mode, s.cpu, eval_test, tuple(s.objectives),
                             scratch_key(self.dir))

    def resume_hint(self) -> str:
        return resume_hint(self.spec.path, self.dir)


def resume_hint(space: Path, exp_dir: Path) -> str:
    """The command that continues the experiment. It names the space as recorded in the folder when there
    is one: that file is what --resume accepts (with any --set already applied)."""
    recorded = exp_dir / Files.SPACE
    space = recorded if recorded.is_file() else space
    return f"continue with: python -m search.launch {space} --name {exp_dir.name} --storage {exp_dir.parent} --resume"


class CorruptFile(ValueError):
    """A file of the experiment folder that cannot be read back (one line naming it; exit 1)."""


MAX_STATE_BYTES = 64 * 1024  # the state holds a few ids and paths


def read_state(exp_dir: Path) -> dict:
    """launch_state.json, or {} when there is none; CorruptFile when it is not the JSON object we wrote."""
    path = exp_dir / Files.STATE
    if not path.is_file():
        return {}
    try:
        if path.stat().st_size > MAX_STATE_BYTES:
            raise CorruptFile(f"{path}: larger than {MAX_STATE_BYTES // 1024} KiB; not a launch state")
        state = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as exc:  # UnicodeDecodeError, JSONDecodeError; deep nesting
        if isinstance(exc, CorruptFile):
            raise
        raise CorruptFile(f"{path}: unreadable launch state ({type(exc).__name__}); "
                          f"move it away to start the experiment afresh under another --name") from None
    if not isinstance(state, dict) or not all(isinstance(state.get(k, ""), str) for k in STATE_KEYS):
        raise CorruptFile(f"{path}: not a launch state (expected an object with {', '.join(STATE_KEYS)})")
    return state


def write_state(exp_dir: Path, state: dict) -> None:
    """Written to a temporary file and renamed: a launcher killed mid-write never leaves half a file."""
    write_text(exp_dir / Files.STATE, json.dumps(state, indent=2))
