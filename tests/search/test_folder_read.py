"""An experiment folder's files read back as a stranger may have left them: bounded, parsed without code,
one line naming the file; and the folders --resume and replay trust are ones nobody else can write."""
import json
import math
import os

import pandas as pd
import pytest

from mtl_core.validation import ConfigError
from search.io.files import CorruptFile
from search.io.folder_read import (RESUME_RISK, check_only_ours, read_json, read_json_lines, read_rungs, read_space,
                                read_table)
from search.tune.mo_asha import MultiObjectiveASHA


def test_a_table_that_is_not_one_is_named_in_one_line(tmp_path):
    (tmp_path / "t.parquet").write_text("garbage")
    with pytest.raises(CorruptFile, match=r"t\.parquet: not a readable Parquet table \(ArrowInvalid\)"):
        read_table(tmp_path / "t.parquet")
    (tmp_path / "t.csv").write_bytes(b'a,b\n1,"2\n')
    with pytest.raises(CorruptFile, match=r"t\.csv: not a readable CSV table"):
        read_table(tmp_path / "t.csv")
    pd.DataFrame({"trial_id": ["a"]}).to_parquet(tmp_path / "ok.parquet")
    with pytest.raises(CorruptFile, match="no column 'status'"):
        read_table(tmp_path / "ok.parquet", ("trial_id", "status"))
    assert read_table(tmp_path / "ok.parquet", ("trial_id",))["trial_id"].tolist() == ["a"]
    assert read_table(tmp_path / "none.parquet").empty and read_table(tmp_path / "empty.csv").empty
    (tmp_path / "empty.csv").write_text("")
    assert read_table(tmp_path / "empty.csv").empty


def test_sizes_are_bounded_before_reading(tmp_path):
    (tmp_path / "big.json").write_text(json.dumps({"pad": "x" * 2000}))
    with pytest.raises(CorruptFile, match=r"big\.json: larger than"):
        read_json(tmp_path / "big.json", limit=1000)
    pd.DataFrame({"a": range(1000)}).to_parquet(tmp_path / "big.parquet")
    with pytest.raises(CorruptFile, match=r"big\.parquet: larger than"):
        read_table(tmp_path / "big.parquet", limit=100)


def test_json_of_the_wrong_kind_or_not_json(tmp_path):
    (tmp_path / "a.json").write_text("[1, 2]")
    with pytest.raises(CorruptFile, match="expected a JSON object, found a list"):
        read_json(tmp_path / "a.json")
    (tmp_path / "b.json").write_bytes(b"\xff\xfe{")
    with pytest.raises(CorruptFile, match=r"b\.json: not JSON \(UnicodeDecodeError\)"):
        read_json(tmp_path / "b.json")
    assert read_json(tmp_path / "none.json", default={}) == {}
    (tmp_path / "r.json").write_text('{"a": 1}\n\n{"a": 2\n')
    with pytest.raises(CorruptFile, match=r"r\.json: line 3 is not JSON"):
        read_json_lines(tmp_path / "r.json")


def test_a_recorded_space_goes_through_the_bounded_loader(tmp_path):
    (tmp_path / "space.yaml").write_text("train: {lr: 0.1, lr: 0.2}\n")
    with pytest.raises(CorruptFile, match="duplicate key"):
        read_space(tmp_path / "space.yaml")
    (tmp_path / "space.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(CorruptFile, match="not a space"):
        read_space(tmp_path / "space.yaml")


def test_mo_asha_s_rungs_round_trip_and_a_stranger_s_are_refused(tmp_path):
    path = tmp_path / "rungs.json"
    scheduler = MultiObjectiveASHA(["a", "b"], ["max", "max"], max_t=9, state_file=str(path))
    scheduler.decide("t1", 1, [0.5, 0.25])
    scheduler.decide("t2", 1, [math.nan, math.nan])  # a diverged trial, written as NaN
    rungs = read_rungs(path, 2)
    assert rungs[1]["t1"] == [0.5, 0.25] and all(math.isnan(x) for x in rungs[1]["t2"])
    for bad in ['{"1": {"t1": [0.5]}}', '{"x": {}}', '{"1": {"t1": ["a", "b"]}}', '{"1": [1, 2]}', "[]"]:
        path.write_text(bad)
        with pytest.raises(CorruptFile, match="rungs.json"):
            read_rungs(path, 2)
    assert read_rungs(tmp_path / "none.json", 2) == {}


def test_only_a_folder_nobody_else_can_write_is_trusted(tmp_path):
    exp = tmp_path / "exp"
    (exp / "search").mkdir(parents=True)
    (exp / "search" / "tuner.pkl").write_bytes(b"ours")
    os.chmod(exp / "search" / "tuner.pkl", 0o644)
    check_only_ours(exp, RESUME_RISK)  # ours, writable by us alone
    if os.getuid() == 0:  # root's files are trusted (as ssh does): give one to nobody
        os.chown(exp / "search" / "tuner.pkl", 65534, 65534)
        with pytest.raises(ConfigError, match=r"tuner\.pkl belongs to user id 65534, not to you \(0\)"):
            check_only_ours(exp, RESUME_RISK)
        os.chown(exp / "search" / "tuner.pkl", 0, 0)
    else:  # as another user, the first folder that is not theirs is above the experiment
        with pytest.raises(ConfigError, match=r"a folder above .*exp, belongs to user id \d+, not to you"):
            check_only_ours(exp, RESUME_RISK, uid=os.getuid() + 1)
    os.chmod(exp / "search" / "tuner.pkl", 0o646)
    with pytest.raises(ConfigError, match=r"tuner\.pkl is writable by others \(mode -rw-r--rw-\): --resume loads"):
        check_only_ours(exp, RESUME_RISK)
    os.chmod(exp / "search" / "tuner.pkl", 0o644)
    elsewhere = tmp_path / "elsewhere.pkl"
    elsewhere.write_bytes(b"theirs")
    os.chmod(elsewhere, 0o666)
    (exp / "search" / "searcher-state.pkl").symlink_to(elsewhere)  # the link is ours, its target is not safe
    with pytest.raises(ConfigError, match=r"searcher-state\.pkl is writable by others"):
        check_only_ours(exp, RESUME_RISK)


def test_every_folder_above_must_be_ours_too_unless_it_is_sticky(tmp_path):
    """Whoever can write a folder above the experiment can rename it away and put theirs in its place (ssh's
    StrictModes walks the same way); a sticky folder such as /tmp lets nobody else rename what is ours.
    Before the walk, a folder above was never looked at."""
    common = tmp_path / "common"
    exp = common / "team" / "exp"
    exp.mkdir(parents=True)
    check_only_ours(exp, RESUME_RISK)
    os.chmod(common, 0o777)
    with pytest.raises(ConfigError, match=r"common, a folder above .*exp, is writable by others \(mode drwxrwxrwx\): "
                                          r"whoever can write it can put another folder in place of this one"):
        check_only_ours(exp, RESUME_RISK)
    os.chmod(common, 0o1777)  # sticky, as /tmp
    check_only_ours(exp, RESUME_RISK)
    os.chmod(common, 0o755)
    (tmp_path / "link").symlink_to(common / "team")  # the real folders above are walked, not only the link's
    os.chmod(common, 0o777)
    with pytest.raises(ConfigError, match=r"common, a folder above"):
        check_only_ours(tmp_path / "link" / "exp", RESUME_RISK)
    os.chmod(common, 0o755)
    # and the folders as written: a link in a folder others can write can be pointed anywhere, even at a
    # folder that passes (the first version walked the resolved folders only, and passed these)
    lobby = tmp_path / "lobby"
    lobby.mkdir(mode=0o777)
    os.chmod(lobby, 0o777)
    (lobby / "team").symlink_to(common / "team")
    (lobby / "exp").symlink_to(exp)
    for typed in (lobby / "team" / "exp", lobby / "exp"):
        with pytest.raises(ConfigError, match=r"lobby, a folder above .*exp, is writable by others"):
            check_only_ours(typed, RESUME_RISK)
    if os.getuid() == 0:
        os.chown(common / "team", 65534, 65534)  # another user's folder, even one only they can write
        with pytest.raises(ConfigError, match=r"team, a folder above .*exp, belongs to user id 65534"):
            check_only_ours(exp, RESUME_RISK)
        os.chown(common / "team", 0, 0)


def test_an_access_control_list_counts_only_when_it_lets_others_write(tmp_path, monkeypatch):
    """A read-only ACL (a web server allowed to read a home folder) is harmless; one that lets others write
    is not, even for a private group, whose group bits alone would be fine. With an ACL the group bits are
    its mask, so the mask says whether any entry may write. (The first version refused every ACL.)"""
    import struct

    import search.io.folder_read as folder_read

    entry = lambda tag, perm, who=0xFFFFFFFF: struct.pack("<HHI", tag, perm, who)  # noqa: E731 (Linux's layout)
    def acl(folder, nobody, mask):  # owner rwx, user nobody, group r-x, the mask, other r-x
        os.setxattr(folder, "system.posix_acl_access", struct.pack("<I", 2) + entry(1, 7) + entry(2, nobody, 65534)
                    + entry(4, 5) + entry(0x10, mask) + entry(0x20, 5))

    above, exp = tmp_path / "home", tmp_path / "home" / "exp"
    exp.mkdir(parents=True)
    try:
        acl(above, nobody=5, mask=5)
    except OSError:
        pytest.skip("no POSIX ACLs on this filesystem")
    check_only_ours(exp, RESUME_RISK)
    acl(above, nobody=7, mask=7)
    monkeypatch.setattr(folder_read, "_private_group", lambda gid, uid: True)
    with pytest.raises(ConfigError, match=r"home, a folder above .*has an access control list that lets others write"):
        check_only_ours(exp, RESUME_RISK)


def test_a_journal_cut_short_by_a_kill_is_trimmed_and_a_bad_line_before_the_end_is_refused(tmp_path):
    """Optuna 5 skips a last line without its newline when it reads, then appends its next operation to it:
    the resumed study failed at its first new trial (AttributeError inside Optuna) before --resume cut it off."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    from search.io.folder_read import check_journal
    from search.run.launch import _trim_journal

    path = tmp_path / "optuna.journal"
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path))))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=2)
    whole = path.stat().st_size
    with path.open("a") as f:
        f.write('{"op_code": 4, "worker_id": "w", "stu')  # the kill's cut
    assert check_journal(path) == whole
    _trim_journal(path, check_journal(path))
    assert path.stat().st_size == whole
    resumed = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path))))
    resumed.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=1)
    assert len(resumed.trials) == 3
    path.write_text('{"op_code": 0}\n["op_code"]\n{"op_code": 4}\n')
    with pytest.raises(CorruptFile, match="line 2 is not an Optuna journal operation"):
        check_journal(path)
    assert check_journal(tmp_path / "none.journal") == 0


def test_group_write_is_fine_for_a_private_group_only(tmp_path, monkeypatch):
    import search.io.folder_read as folder_read

    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "f").write_text("x")
    os.chmod(exp / "f", 0o664)
    monkeypatch.setattr(folder_read, "_private_group", lambda gid, uid: True)
    check_only_ours(exp, RESUME_RISK)
    monkeypatch.setattr(folder_read, "_private_group", lambda gid, uid: False)
    with pytest.raises(ConfigError, match=r"f is writable by others \(mode -rw-rw-r--\)"):
        check_only_ours(exp, RESUME_RISK)


def test_a_fifo_and_a_parquet_bomb_are_refused_before_reading(tmp_path, monkeypatch):
    import search.io.folder_read as folder_read

    os.mkfifo(tmp_path / "result.json")  # reading it would block for ever
    with pytest.raises(CorruptFile, match="not a regular file"):
        read_json_lines(tmp_path / "result.json")
    pd.DataFrame({"a": range(100), "b": range(100)}).to_parquet(tmp_path / "t.parquet")
    monkeypatch.setattr(folder_read, "MAX_TABLE_CELLS", 150)
    with pytest.raises(CorruptFile, match="100 rows x 2 columns"):
        read_table(tmp_path / "t.parquet")


def test_json_nested_past_the_stack_is_one_line(tmp_path):
    (tmp_path / "deep.json").write_text("[" * 100_000)
    with pytest.raises(CorruptFile, match="not JSON \\(RecursionError\\)"):
        read_json(tmp_path / "deep.json", expect=list)
    (tmp_path / "launch_state.json").write_text("[" * 60_000)
    from search.io.state import read_state
    with pytest.raises(CorruptFile, match="unreadable launch state"):
        read_state(tmp_path)


def test_a_private_group_is_named_after_its_user_and_has_no_one_else():
    import grp
    import pwd

    from search.io.folder_read import _private_group

    me = pwd.getpwuid(os.getuid())
    own = next((g for g in grp.getgrall() if g.gr_name == me.pw_name), None)
    if own is not None and set(own.gr_mem) <= {me.pw_name}:
        assert _private_group(own.gr_gid, me.pw_uid)
    shared = next((g for g in grp.getgrall() if g.gr_name != me.pw_name), None)  # e.g. nogroup, users
    assert shared is not None and not _private_group(shared.gr_gid, me.pw_uid)
    assert not _private_group(2**31 - 2, me.pw_uid)  # a group id nobody has


def test_a_launch_state_carries_its_format_and_another_format_is_refused(tmp_path):
    from search.io.state import FORMAT, read_state, write_state

    write_state(tmp_path, {"parent_run_id": "p"})
    assert read_state(tmp_path) == {"parent_run_id": "p", "format": FORMAT}
    for other in ({"parent_run_id": "p"}, {"parent_run_id": "p", "format": "0"}):
        (tmp_path / "launch_state.json").write_text(json.dumps(other))
        with pytest.raises(CorruptFile, match="another version of the service"):
            read_state(tmp_path)
