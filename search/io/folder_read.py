"""An experiment folder's files read back as a stranger may have left them (shared storage, a folder handed
over, a disk that filled mid-write): bounded in size, parsed without running code, and one `CorruptFile`
line naming the file when it is not what we wrote. The readers of `python -m search.report`,
`search.report.front` and --resume go through here.

Two things cannot be made safe by reading carefully. Ray Tune's own state is pickles (`tuner.pkl`,
`searcher-state-*.pkl`, the trials inside `experiment_state-*.json`), and loading a pickle runs whatever code
it names; and `launch_state.json` names the MLflow server that `search.tracking.replay` sends the user's credentials
to. So --resume and replay first check that nobody but the user could have written the folder
(`check_only_ours`), as ssh checks the keys it trusts.
"""
from __future__ import annotations

import grp
import json
import os
import pickletools
import pwd
import stat
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from mtl_core import safe_yaml
from mtl_core.validation import ConfigError
from search.io.files import CorruptFile, Files

MAX_JSON_BYTES = 16 * 2**20  # our JSON files hold a few numbers per trial; Tune's result.json a line per epoch
MAX_TABLE_BYTES = 2**30  # trials, history and final runs: a few MB for a thousand trials
MAX_TABLE_CELLS = 10**9  # once decoded (a thousand trials' history: about 10**6)


def _check_size(path: Path, limit: int) -> None:
    try:
        st = path.stat()
    except OSError as exc:
        raise CorruptFile(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    if not stat.S_ISREG(st.st_mode):  # a FIFO would block the reader for ever
        raise CorruptFile(f"{path}: not a regular file")
    size = st.st_size
    if size > limit:
        raise CorruptFile(f"{path}: larger than {_size(limit)}; not a file this service wrote")


def _bytes(path: Path, limit: int) -> bytes:
    """The file's bytes, refused past `limit` (checked before reading, and again in case it grew)."""
    _check_size(path, limit)
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except OSError as exc:
        raise CorruptFile(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    if len(data) > limit:
        raise CorruptFile(f"{path}: larger than {_size(limit)}; not a file this service wrote")
    return data


def _size(limit: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if limit >= scale:
            return f"{limit // scale} {unit}"
    return f"{limit} bytes"


def read_json(path: Path, expect: type = dict, default: Any = None, limit: int = MAX_JSON_BYTES) -> Any:
    """The JSON value in `path`, which must be an `expect`; `default` when there is no such file."""
    if not path.is_file():
        return default
    data = _bytes(path, limit)
    try:
        value = json.loads(data)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError; nesting past the stack
        raise CorruptFile(f"{path}: not JSON ({type(exc).__name__})") from None
    if not isinstance(value, expect):
        raise CorruptFile(f"{path}: expected a JSON {_kind(expect)}, found a {_kind(type(value))}")
    return value


def read_json_lines(path: Path, limit: int = MAX_JSON_BYTES) -> list[Any]:
    """One JSON value per line (Tune's result.json: objects; the MLflow outage spool: lists), blank lines
    skipped; the caller checks what each value is."""
    rows = []
    for number, line in enumerate(_bytes(path, limit).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError) as exc:
            raise CorruptFile(f"{path}: line {number} is not JSON ({type(exc).__name__})") from None
        rows.append(row)
    return rows


def _kind(t: type) -> str:
    return {dict: "object", list: "list", str: "string"}.get(t, t.__name__)


def read_table(path: Path, columns: tuple[str, ...] = (), limit: int = MAX_TABLE_BYTES) -> pd.DataFrame:
    """A Parquet or CSV table (by its suffix), which must have `columns`; empty when there is no such file."""
    if not path.is_file():
        return pd.DataFrame()
    _check_size(path, limit)
    try:
        if path.suffix == ".parquet":  # a few KB of Parquet can claim billions of rows: its footer says how many
            meta = pq.ParquetFile(path).metadata
            if meta.num_rows * max(1, meta.num_columns) > MAX_TABLE_CELLS:
                raise CorruptFile(f"{path}: {meta.num_rows} rows x {meta.num_columns} columns, more than "
                                  f"{MAX_TABLE_CELLS:.0e} values; not a table this service wrote")
        table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except CorruptFile:
        raise
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid and pandas' ParserError are ValueErrors
        kind = "Parquet" if path.suffix == ".parquet" else "CSV"
        raise CorruptFile(f"{path}: not a readable {kind} table ({type(exc).__name__})") from None
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise CorruptFile(f"{path}: no column {', '.join(map(repr, missing))}; not a table this service wrote")
    return table


def read_space(path: Path) -> dict:
    """The recorded space.yaml through the bounded YAML loader; {} when there is none."""
    if not path.is_file():
        return {}
    try:
        space = safe_yaml.load_file(path)
    except ConfigError as exc:
        raise CorruptFile(str(exc)) from None
    if space is not None and not isinstance(space, dict):
        raise CorruptFile(f"{path}: not a space (expected a mapping of sections)")
    return space or {}


RESUME_RISK = ("--resume loads Ray Tune's state, which is pickles that run the code they name (--trust-folder "
               "resumes it anyway)")
REPLAY_RISK = "replay sends your MLflow credentials to the server its launch_state.json names (or pass --mlflow-uri)"


def check_only_ours(exp_dir: Path, risk: str, uid: int | None = None) -> None:
    """Refuse (ConfigError, saying the `risk`) an experiment folder that another user could have written:
    the folder and everything in it must belong to `uid` (default: this process's user) and be writable by
    nobody else. Group-writable is fine when the group is the user's own private group (Debian's rule for ssh).
    So must every folder above it, as ssh's StrictModes walks them, since whoever can write one can rename
    ours away and put theirs in its place; except a sticky folder such as /tmp, where nobody else can rename
    what is ours."""
    uid = os.getuid() if uid is None else uid
    exp_dir = Path(exp_dir)
    typed = Path(os.path.abspath(exp_dir))  # the folders above as written (a link among them too) and as resolved
    for parent in dict.fromkeys([*typed.parents, *typed.resolve().parents]):
        st, target = parent.lstat(), parent.stat()
        why = _not_ours(st, target, uid, parent)
        if why and not (st.st_uid in (uid, 0) and target.st_uid in (uid, 0) and target.st_mode & stat.S_ISVTX):
            raise ConfigError(f"{parent}, a folder above {exp_dir}, {why}: whoever can write it can put another "
                              f"folder in place of this one, and {risk}, so only a folder nobody else can write "
                              f"is trusted (keep experiments under folders only you can write)")
    for path in [exp_dir, *sorted(exp_dir.rglob("*"))]:
        try:
            st, target = path.lstat(), path.stat()  # a link's target must pass too
        except OSError:
            continue  # gone since listed (or a dangling link): nothing to load
        why = _not_ours(st, target, uid, path)
        if why:
            raise ConfigError(f"{path} {why}: {risk}, so only a folder nobody else can write is trusted "
                              f"(chmod -R go-w it if it is yours)")


def _not_ours(st: os.stat_result, target: os.stat_result, uid: int, path: Path) -> str | None:
    """Why another user could have written this file (its own `lstat` and its target's `stat`), or None."""
    owner = next((o for o in (st.st_uid, target.st_uid) if o not in (uid, 0)), None)  # root: as ssh
    if owner is not None:
        return f"belongs to user id {owner}, not to you ({uid})"
    if target.st_mode & stat.S_IWOTH or (target.st_mode & stat.S_IWGRP and not _private_group(target.st_gid, uid)):
        return f"is writable by others (mode {stat.filemode(target.st_mode)})"
    if target.st_mode & stat.S_IWGRP and _has_acl(path):  # with an ACL the group bits are its mask
        return "has an access control list that lets others write it"
    return None


def _has_acl(path: Path) -> bool:
    try:
        return "system.posix_acl_access" in os.listxattr(path)
    except OSError:  # no extended attributes on this filesystem: no ACL either
        return False


def _private_group(gid: int, uid: int) -> bool:
    """The group is the user's own: named after them, with no other member."""
    try:
        user, group = pwd.getpwuid(uid), grp.getgrgid(gid)
    except KeyError:
        return False
    return group.gr_name == user.pw_name and set(group.gr_mem) <= {user.pw_name}


def read_rungs(path: Path, objectives: int) -> dict[int, dict[str, list[float]]]:
    """MO-ASHA's recorded vectors (`search.tune.mo_asha`): rung level -> trial id -> one number per objective
    (NaN for a diverged trial); {} when there is no such file."""
    return read_mo_asha_state(path, objectives)[0]


def read_mo_asha_state(path: Path, objectives: int) -> tuple[dict[int, dict[str, list[float]]], set[str]]:
    """MO-ASHA's state file: the recorded vectors (`read_rungs`) and the trials it told to stop (the key
    `stopped`, a list of trial ids)."""
    saved = read_json(path, default={})
    rungs, stopped = {}, saved.pop("stopped", []) if isinstance(saved, dict) else []
    if not isinstance(saved, dict) or not isinstance(stopped, list) or not all(isinstance(t, str) for t in stopped):
        raise CorruptFile(f"{path}: not MO-ASHA's rungs (expected rung -> trial -> {objectives} numbers)")
    for level, recorded in saved.items():
        if not (level.isascii() and level.isdigit()) or not isinstance(recorded, dict) or not all(
                isinstance(v, list) and len(v) == objectives
                and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v) for v in recorded.values()):
            raise CorruptFile(f"{path}: not MO-ASHA's rungs (expected rung -> trial -> {objectives} numbers)")
        rungs[int(level)] = {str(tid): [float(x) for x in v] for tid, v in recorded.items()}
    return rungs, set(stopped)


def check_journal(path: Path, limit: int = MAX_TABLE_BYTES) -> int:
    """Optuna's journal (`optuna.journal`), as Optuna will replay it on --resume: every complete line one
    operation (a JSON object with its `op_code`), else CorruptFile. Returns how many bytes of it are whole
    lines: a last line without its newline is a write a kill cut short, which Optuna 5 skips when it reads
    but then appends its next operation to, breaking the study; --resume cuts it off."""
    if not path.is_file():
        return 0
    data = _bytes(path, limit)
    lines = data.split(b"\n")
    for number, line in enumerate(lines[:-1], start=1):  # lines[-1]: after the last newline (b"" or cut short)
        try:
            op = json.loads(line)
        except (ValueError, RecursionError):
            op = None
        if not isinstance(op, dict) or not isinstance(op.get("op_code"), int):
            raise CorruptFile(f"{path}: line {number} is not an Optuna journal operation")
    return len(data) - len(lines[-1])


def check_no_links(exp_dir: Path) -> None:
    """None of the experiment folder's own files (`Files`) is a link: --resume appends to its log, Optuna's
    journal and the MLflow store in place, which would write whatever a link there points at."""
    for name in sorted(v for k, v in vars(Files).items() if k.isupper() and isinstance(v, str)):
        if (exp_dir / name).is_symlink():
            raise CorruptFile(f"{exp_dir / name}: a link, not a file this service wrote; --resume writes the "
                              f"experiment's files in place (move the link away)")


def check_output_folder(out: Path) -> None:
    """A report folder to write into: a real folder or none, never a link (writing through one would
    overwrite whatever it points at)."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        raise CorruptFile(f"{out}: a link or a file, not the report folder; move it away to write the report")


MAX_TUNE_PICKLE_BYTES = 256 * 2**20  # a phase's Tuner, searcher and callback states: kilobytes to a few MB
SQLITE_HEADER = b"SQLite format 3\x00"


def check_tune_pickles(exp_dir: Path, limit: int = MAX_TUNE_PICKLE_BYTES) -> None:
    """Ray Tune's state that --resume unpickles (each phase folder's `tuner.pkl`, searcher and callback
    states): each one whole pickle, walked opcode by opcode without running any of it, else CorruptFile naming
    it (a kill or a full disk that cut its write short). Checked before the parent run is reopened."""
    for path in sorted(exp_dir.glob("*/*.pkl")):
        data = _bytes(path, limit)
        try:
            for _ in pickletools.genops(data):  # stops at the pickle's STOP; raises when the data ends first
                pass
        except Exception as exc:  # ValueError: cut short, or not a pickle
            raise CorruptFile(f"{path}: not a whole pickle ({exc}); Ray Tune cannot restore the phase from it "
                              f"(put back a whole copy, or run the experiment afresh under another --name)") from None


def check_sqlite(path: Path) -> None:
    """The experiment's own MLflow store (`mlflow.db`), when there is one, is an SQLite database by its header:
    MLflow would fail on it later, in a line that could only blame the tracking URI."""
    if not path.exists():
        return
    _check_size(path, 2**63)  # a regular file (a FIFO would block), of any size
    try:
        with path.open("rb") as f:
            head = f.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise CorruptFile(f"{path}: cannot read ({exc.strerror or type(exc).__name__})") from None
    if head != SQLITE_HEADER:
        raise CorruptFile(f"{path}: not an SQLite database, so not the experiment's MLflow store (put back a "
                          f"whole copy to resume)")
