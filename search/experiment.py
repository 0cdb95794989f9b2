"""One experiment's context, handed to every phase: the space, its folder, the MLflow tracker (parent run
and outage queue) and whether it resumes. The folder also holds `launch_state.json`, our bookkeeping beside
Tune's (the parent run, the space file, the tracking URI)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

from search.space import SpaceSpec
from search.trial import TrialSettings

if TYPE_CHECKING:  # the launcher reads this module before Ray may be imported (tracking imports it)
    from search.tracking import Tracker

STATE_FILE = "launch_state.json"
PENDING_FILE = "mlflow_pending.jsonl"  # tracking operations MLflow did not take (see search.replay)


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
        return TrialSettings(self.spec.base, s.metric, s.mode, s.cpu, eval_test, tuple(s.objectives))

    def resume_hint(self) -> str:
        return resume_hint(self.spec.path, self.dir)


def resume_hint(space: Path, exp_dir: Path) -> str:
    return f"continue with: python -m search.launch {space} --name {exp_dir.name} --storage {exp_dir.parent} --resume"


def read_state(exp_dir: Path) -> dict:
    path = exp_dir / STATE_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def write_state(exp_dir: Path, state: dict) -> None:
    (exp_dir / STATE_FILE).write_text(json.dumps(state, indent=2))
