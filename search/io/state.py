"""`launch_state.json`: our bookkeeping beside Tune's (the parent run, the space file, the tracking URI),
and the command that continues an experiment."""
from __future__ import annotations

import json
from pathlib import Path

from search.io.files import CorruptFile, Files
from search.io.folder_write import write_text

STATE_KEYS = ("parent_run_id", "space", "tracking_uri", "sweep_token", "format")
# The folder's layout and the module paths its Tune pickles name; a folder of another format is refused, not
# half-restored. Raise it when either changes.
FORMAT = "2"


def resume_hint(space: Path, exp_dir: Path) -> str:
    """The command that continues the experiment. It names the space as recorded in the folder when there
    is one: that file is what --resume accepts (with any --set already applied)."""
    recorded = exp_dir / Files.SPACE
    space = recorded if recorded.is_file() else space
    return f"continue with: python -m search.launch {space} --name {exp_dir.name} --storage {exp_dir.parent} --resume"


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
    if state and state.get("format") != FORMAT:
        raise CorruptFile(f"{path}: an experiment of another version of the service (format "
                          f"{state.get('format', 'none')!r}, this one reads {FORMAT!r}); start afresh under another --name")
    return state


def write_state(exp_dir: Path, state: dict) -> None:
    """Written to a temporary file and renamed: a launcher killed mid-write never leaves half a file."""
    write_text(exp_dir / Files.STATE, json.dumps({**state, "format": FORMAT}, indent=2))
