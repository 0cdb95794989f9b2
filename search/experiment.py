"""One experiment's context, handed to every phase: the space, its folder, the MLflow tracker (parent run
and outage queue) and whether it resumes. The folder also holds `launch_state.json`, our bookkeeping beside
Tune's (the parent run, the space file, the tracking URI)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

from search.space import SpaceSpec
from search.trial import TrialSettings

if TYPE_CHECKING:  # the launcher reads this module before Ray may be imported (tracking imports it)
    from search.tracking import Tracker

STATE_FILE = "launch_state.json"
STATE_KEYS = ("parent_run_id", "space", "tracking_uri")
SPACE_FILE = "space.yaml"  # the space as it runs (after --set); --resume compares against it
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
    """The command that continues the experiment. It names the space as recorded in the folder when there
    is one: that file is what --resume accepts (with any --set already applied)."""
    recorded = exp_dir / SPACE_FILE
    space = recorded if recorded.is_file() else space
    return f"continue with: python -m search.launch {space} --name {exp_dir.name} --storage {exp_dir.parent} --resume"


class CorruptFile(ValueError):
    """A file of the experiment folder that cannot be read back (one line naming it; exit 1)."""


MAX_STATE_BYTES = 64 * 1024  # the state holds a few ids and paths


def read_state(exp_dir: Path) -> dict:
    """launch_state.json, or {} when there is none; CorruptFile when it is not the JSON object we wrote."""
    path = exp_dir / STATE_FILE
    if not path.is_file():
        return {}
    try:
        if path.stat().st_size > MAX_STATE_BYTES:
            raise CorruptFile(f"{path}: larger than {MAX_STATE_BYTES // 1024} KiB; not a launch state")
        state = json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        if isinstance(exc, CorruptFile):
            raise
        raise CorruptFile(f"{path}: unreadable launch state ({type(exc).__name__}); "
                          f"move it away to start the experiment afresh under another --name") from None
    if not isinstance(state, dict) or not all(isinstance(state.get(k, ""), str) for k in STATE_KEYS):
        raise CorruptFile(f"{path}: not a launch state (expected an object with {', '.join(STATE_KEYS)})")
    return state


def write_state(exp_dir: Path, state: dict) -> None:
    """Written to a temporary file and renamed: a launcher killed mid-write never leaves half a file."""
    tmp = exp_dir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    os.replace(tmp, exp_dir / STATE_FILE)
