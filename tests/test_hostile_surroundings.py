"""Files, folders and servers the tool does not own (issue #9, sections 3 and 4).

Each case ends in one clear line and the right exit code, before anything is written or
sent where that is possible, never in a wrong write, a lost file or a traceback. The real
CLI runs against the sandbox (or a tiny fake server on 127.0.0.1 for wrong-shaped answers);
fixture files are built by each test.

Tests run as root here, and root passes every permission check of the kernel: the tool's
own checks read mode bits (a folder with no write bit is read-only on purpose), so these
tests mean the same for root and for a user.
"""
from __future__ import annotations

import errno
import json
import os
import sqlite3
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from test_import import export_csv, import_, read_rows, saves, write_rows, writes
from test_validate_cli import run  # noqa: F401 - the `validate` CLI fixture


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def one_clear_line(result) -> None:
    assert "Traceback" not in result.output
    assert "unexpected" not in result.output and "a bug" not in result.output


def refused_before_anything_was_sent(sandbox, result, *phrases: str) -> None:
    assert result.exit_code == 1, result.output
    for phrase in phrases:
        assert phrase in result.output
    one_clear_line(result)
    assert sandbox.log == []


def link_target(tmp_path: Path, dangling: bool) -> Path:
    """Where a test's symbolic link points: someone else's 0644 file, or nothing."""
    target = tmp_path / "someone-elses.db"
    if not dangling:
        target.write_bytes(b"not yours")
        os.chmod(target, 0o644)
    return target


def target_untouched(target: Path, dangling: bool) -> bool:
    if dangling:
        return not target.exists()                 # nothing created where the link points
    return target.read_bytes() == b"not yours" and mode_of(target) == 0o644


def edited_export(run_cli, tmp_path, n_edits: int = 3) -> tuple[Path, dict[int, str]]:
    """An export with ``n_edits`` City cells changed: the file and {ClientId: new City}."""
    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    cities = {}
    for i, row in enumerate(rows[:n_edits]):
        row["City"] = f"Hostileville {i}"
        cities[int(row["ClientId"])] = row["City"]
    write_rows(path, header, rows)
    return path, cities


@pytest.fixture
def restore_modes():
    """Folders a test makes read-only get their mode back, so tmp_path can be removed."""
    changed: list[tuple[Path, int]] = []

    def chmod(path: Path, mode: int) -> None:
        changed.append((path, mode_of(path)))
        os.chmod(path, mode)

    yield chmod
    for path, mode in reversed(changed):
        os.chmod(path, mode)


# --------------------------------------------------------------------------- 3a side files that clash


@pytest.mark.parametrize("option", ["--results", "--plan", "--report", "--checkpoint"])
@pytest.mark.parametrize("spelling", ["same", "dotdot", "symlink", "hardlink"])
def test_a_side_file_naming_the_input_is_refused_before_anything_is_written_or_sent(
        sandbox, run_cli, tmp_path, option, spelling):
    path, _ = edited_export(run_cli, tmp_path)
    before = path.read_bytes()
    sandbox.log.clear()
    if spelling == "same":
        target = path
    elif spelling == "dotdot":
        target = path.parent / ".." / path.parent.name / path.name
    elif spelling == "symlink":
        target = tmp_path / "link.csv"
        target.symlink_to(path)
    else:
        target = tmp_path / "hardlink.csv"
        os.link(path, target)
    result = import_(run_cli, path, option, target)
    refused_before_anything_was_sent(sandbox, result, "is the input file itself", "Nothing was written or sent")
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["clients.csv", "manifest.json"]


def test_two_side_files_on_one_path_are_refused(sandbox, run_cli, tmp_path):
    path, _ = edited_export(run_cli, tmp_path)
    sandbox.log.clear()
    shared = tmp_path / "out.csv"
    result = import_(run_cli, path, "--plan", shared, "--results", shared)
    refused_before_anything_was_sent(sandbox, result, "--results and --plan are the same file")
    assert not shared.exists()


def test_results_pointing_at_the_default_checkpoint_is_refused(sandbox, run_cli, tmp_path):
    path, _ = edited_export(run_cli, tmp_path)
    sandbox.log.clear()
    result = import_(run_cli, path, "--results", path.parent / "clients.checkpoint.sqlite")
    refused_before_anything_was_sent(sandbox, result, "--checkpoint and --results are the same file")


# --------------------------------------------------------------------------- 3b export folders it did not create


@pytest.mark.parametrize("mode, warned", [(0o1777, True), (0o2775, True), (0o755, True), (0o700, False)])
def test_export_into_an_existing_folder_keeps_its_mode(sandbox, run_cli, tmp_path, mode, warned):
    out = tmp_path / "shared"
    out.mkdir()
    os.chmod(out, mode)
    result = run_cli("export", "--out", out)
    assert result.exit_code == 0, result.output
    assert mode_of(out) == mode
    for name in ("clients.csv", "manifest.json"):
        assert mode_of(out / name) == 0o600
    assert ("can be read by others" in result.output) == warned
    assert "its mode is left as it is" in result.output if warned else True


def test_export_out_dot_leaves_the_working_folder_as_it_is(sandbox, run_cli, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    os.chmod(work, 0o755)
    monkeypatch.chdir(work)
    result = run_cli("export", "--out", ".", "--quiet")
    assert result.exit_code == 0, result.output
    assert mode_of(work) == 0o755
    assert mode_of(work / "clients.csv") == 0o600


def test_a_new_out_folder_and_its_new_parents_are_created_owner_only(sandbox, run_cli, tmp_path):
    out = tmp_path / "new" / "exports"
    assert run_cli("export", "--out", out, "--quiet").exit_code == 0
    assert mode_of(out) == mode_of(out.parent) == 0o700


def test_a_read_only_backup_folder_is_refused_not_made_writable(sandbox, run_cli, tmp_path, restore_modes):
    backup = tmp_path / "backup"
    assert run_cli("export", "--out", backup, "--quiet").exit_code == 0
    kept = {p.name: p.read_bytes() for p in backup.iterdir()}
    restore_modes(backup, 0o500)
    sandbox.log.clear()
    result = run_cli("export", "--out", backup)
    refused_before_anything_was_sent(sandbox, result, "not writable", "0500")
    assert mode_of(backup) == 0o500
    assert {p.name: p.read_bytes() for p in backup.iterdir()} == kept


# --------------------------------------------------------------------------- 3c never through a symbolic link


@pytest.mark.parametrize("dangling", [False, True])
def test_a_symlinked_checkpoint_is_refused_and_its_target_untouched(sandbox, run_cli, tmp_path, dangling):
    path, _ = edited_export(run_cli, tmp_path)
    target = link_target(tmp_path, dangling)
    (path.parent / "clients.checkpoint.sqlite").symlink_to(target)
    sandbox.log.clear()
    result = import_(run_cli, path)
    refused_before_anything_was_sent(sandbox, result, "is a symbolic link", "clients.checkpoint.sqlite")
    assert target_untouched(target, dangling)


def test_a_symlinked_results_file_is_refused_before_anything_is_sent(sandbox, run_cli, tmp_path):
    path, _ = edited_export(run_cli, tmp_path)
    target = tmp_path / "results-target.csv"
    target.write_text("keep me")
    (path.parent / "clients.results.csv").symlink_to(target)
    sandbox.log.clear()
    result = import_(run_cli, path)
    refused_before_anything_was_sent(sandbox, result, "--results", "is a symbolic link")
    assert target.read_text() == "keep me"


def test_a_symlinked_export_file_is_refused_before_any_request(sandbox, run_cli, tmp_path):
    out = tmp_path / "exports"
    out.mkdir()
    target = tmp_path / "target.csv"
    target.write_text("keep me")
    (out / "clients.csv").symlink_to(target)
    result = run_cli("export", "--out", out)
    refused_before_anything_was_sent(sandbox, result, "is a symbolic link")
    assert target.read_text() == "keep me"
    assert (out / "clients.csv").is_symlink()


@pytest.mark.parametrize("store", ["checkpoint", "ledger", "applied", "diagnoses"])
@pytest.mark.parametrize("dangling", [False, True])
def test_no_sqlite_store_opens_its_file_through_a_link(settings, tmp_path, store, dangling):
    """The four stores create their files through one helper: each refuses a link."""
    from etl.api.ledger import Ledger
    from etl.errors import PathError
    from etl.export.diagnoses import DiagnosesProgress
    from etl.importer import applied
    from etl.importer.checkpoint import Checkpoint

    account = settings.account_dir
    account.mkdir(parents=True)
    where = {"checkpoint": tmp_path / "c.sqlite", "ledger": account / "ledger.sqlite",
             "applied": account / "applied.sqlite", "diagnoses": account / "diagnoses.sqlite"}[store]
    target = link_target(tmp_path, dangling)
    where.symlink_to(target)
    open_it = {
        "checkpoint": lambda: Checkpoint(where, "identity"),
        "ledger": lambda: Ledger(where, max_per_minute=10, max_per_day=0).usage(),
        "applied": lambda: applied.record_created(account, 5, "a", "b"),
        "diagnoses": lambda: DiagnosesProgress(where),
    }[store]
    with pytest.raises(PathError, match="is a symbolic link"):
        open_it()
    assert target_untouched(target, dangling)


def test_a_symlinked_ledger_is_one_line_for_the_export(sandbox, run_cli, tmp_path, settings):
    settings.account_dir.mkdir(parents=True)
    (settings.account_dir / "ledger.sqlite").symlink_to(tmp_path / "nowhere.db")
    result = run_cli("export", "--out", tmp_path / "exports")
    assert result.exit_code == 1, result.output
    assert "ledger.sqlite is a symbolic link" in result.output
    one_clear_line(result)
    assert not (tmp_path / "nowhere.db").exists()


# --------------------------------------------------------------------------- 3d read-only folders, full disks


def test_a_read_only_input_folder_is_refused_before_anything_is_sent(sandbox, run_cli, tmp_path, restore_modes):
    path, cities = edited_export(run_cli, tmp_path)
    restore_modes(path.parent, 0o555)
    sandbox.log.clear()
    result = import_(run_cli, path)
    refused_before_anything_was_sent(sandbox, result, "is not writable", "--results")


def _full_disk_for(monkeypatch, suffix: str, folder: Path) -> None:
    """Every file ending in ``suffix`` in ``folder`` fails as on a full disk (ENOSPC)."""
    from etl.state import files

    real_commit = files.commit_temp

    def commit(tmp, target):
        if Path(target).parent == folder and Path(target).name.endswith(suffix):
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        return real_commit(tmp, target)

    monkeypatch.setattr(files, "commit_temp", commit)


def test_a_full_disk_for_the_results_writes_them_to_the_state_dir_and_says_where(
        sandbox, run_cli, tmp_path, monkeypatch, settings):
    path, cities = edited_export(run_cli, tmp_path)
    _full_disk_for(monkeypatch, ".results.csv", path.parent)
    result = import_(run_cli, path)
    assert result.exit_code == 4, result.output        # not where it was asked: not a plain success
    one_clear_line(result)
    assert "No space left on device" in result.output
    written = list((settings.account_dir / "results").glob("clients.results-*.csv"))
    assert len(written) == 1 and str(written[0]) in result.output
    assert f"results file: {written[0]}" in result.output
    assert mode_of(written[0]) == 0o600
    _, rows = read_rows(written[0])
    assert {int(r["ClientId"]) for r in rows if r["status"] == "updated"} == set(cities)
    for cid, city in cities.items():
        assert sandbox.store.clients[cid]["City"] == city


def test_a_full_disk_before_any_write_is_exit_1_and_nothing_is_sent(sandbox, run_cli, tmp_path, monkeypatch):
    path, _ = edited_export(run_cli, tmp_path)
    _full_disk_for(monkeypatch, ".plan.csv", path.parent)
    sandbox.log.clear()
    result = import_(run_cli, path)
    assert result.exit_code == 1, result.output
    assert "No space left on device" in result.output and "No write was sent" in result.output
    one_clear_line(result)
    assert saves(sandbox) == []


def test_sqlite_failing_after_writes_were_sent_is_one_line_exit_4_and_the_same_command_finishes(
        sandbox, run_cli, tmp_path, monkeypatch):
    from etl.importer.checkpoint import Checkpoint

    path, cities = edited_export(run_cli, tmp_path)
    real_finish = Checkpoint.finish
    calls = {"n": 0}

    def finish(self, row, status, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:          # the second row's save was sent: its outcome cannot be recorded
            raise sqlite3.OperationalError("database or disk is full")
        return real_finish(self, row, status, **kwargs)

    monkeypatch.setattr(Checkpoint, "finish", finish)
    result = import_(run_cli, path)
    assert result.exit_code == 4, result.output
    assert "stopped: cannot write: SQLite: database or disk is full" in result.output
    assert "2 write(s) had been sent" in result.output and "run the same command again" in result.output
    one_clear_line(result)
    _, results = read_rows(path.parent / "clients.results.csv")      # written all the same
    statuses = sorted(r["status"] for r in results if r["status"] != "unchanged")
    assert statuses == ["pending"] * (len(cities) - 1) + ["updated"]
    monkeypatch.setattr(Checkpoint, "finish", real_finish)
    again = import_(run_cli, path)
    assert again.exit_code == 0, again.output
    for cid, city in cities.items():
        assert sandbox.store.clients[cid]["City"] == city
    assert len(saves(sandbox)) == len(cities)            # the unrecorded save was not sent twice


def test_a_file_size_limit_ulimit_f_is_one_line_and_nothing_is_sent(sandbox, run_cli, cli_env, tmp_path):
    """``ulimit -f 0`` in a real subprocess: every file write fails (EFBIG; SQLite says
    "database or disk is full"), as on a full disk."""
    import resource
    import subprocess
    import sys

    path, _ = edited_export(run_cli, tmp_path)
    sandbox.log.clear()

    def no_file_may_grow():
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))

    done = subprocess.run([sys.executable, "-m", "etl", "import", str(path), "--yes", "--quiet"],
                          env={**os.environ, **cli_env, "PYTHONDONTWRITEBYTECODE": "1"},
                          preexec_fn=no_file_may_grow, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], done.stderr        # one line, the last
    assert "disk I/O error" in errors[0] or "cannot write" in errors[0], done.stderr
    assert "Traceback" not in done.stderr
    assert writes(sandbox) == []


def test_a_permission_error_of_the_state_dir_is_one_line(sandbox, run_cli, tmp_path, monkeypatch):
    from etl.state import snapshots

    def denied(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "state"))

    monkeypatch.setattr(snapshots.SnapshotStore, "newest", denied)
    result = run_cli("export", "--out", tmp_path / "exports", "--incremental")
    assert result.exit_code == 1, result.output
    assert "cannot write" in result.output and "Permission denied" in result.output
    one_clear_line(result)


# --------------------------------------------------------------------------- 4b answers of the wrong shape


class _FakeApi(BaseHTTPRequestHandler):
    answer: object = []

    def do_GET(self):  # noqa: N802 - http.server's name
        body = json.dumps(self.server.answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def fake_api():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("answer, says", [
    (["Alice", "Bob"], "item 1 of the list is a JSON string, not a JSON object"),
    ([{"ClientId": "abc", "FirstName": "X"}], "client 1 of the answer has no valid ClientId"),
    ([{"ClientId": None, "FirstName": "X"}], "client 1 of the answer has no valid ClientId"),
    ([{"ClientId": 7}, {"FirstName": "no id"}], "client 2 of the answer has no valid ClientId"),
    ({"ClientId": 5, "FirstName": "X"}, "expected a JSON list, got a JSON object"),
])
def test_an_answer_of_the_wrong_shape_is_an_error_naming_the_endpoint_and_nothing_is_written(
        fake_api, run_cli, tmp_path, answer, says):
    fake_api.answer = answer
    out = tmp_path / "exports"
    url = f"http://127.0.0.1:{fake_api.server_address[1]}/api/v1/"
    result = run_cli("export", "--out", out, env={"INTAKEQ_BASE_URL": url, "INTAKEQ_API_KEY": "k"})
    assert result.exit_code == 1, result.output
    assert "GET clients" in result.output and says in result.output
    one_clear_line(result)
    assert not out.exists()          # nothing written, and no empty --out folder left behind


def test_a_save_answered_without_a_client_id_is_an_error_naming_the_endpoint():
    from unittest import mock

    from etl.api.client import IntakeQClient
    from etl.errors import WrongShapeError

    client = IntakeQClient.__new__(IntakeQClient)
    with mock.patch.object(IntakeQClient, "_request", return_value={"ClientId": "abc"}):
        with pytest.raises(WrongShapeError, match="POST clients: the saved client has no valid ClientId"):
            client.save_client({"FirstName": "X"})
    with mock.patch.object(IntakeQClient, "_request", return_value=["x"]):
        with pytest.raises(WrongShapeError, match="POST clients: expected the saved client as a JSON object"):
            client.save_client({"FirstName": "X"})


# --------------------------------------------------------------------------- 4c UTF-16 without a BOM


UTF16_TEXT = ("ClientId,FirstName,LastName,Email\r\n"
              "1,Łukasz,Nowak,lukasz@example.org\r\n"
              "2,Zoë,Brontë,zoe@example.org\r\n")


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_without_a_bom_is_read_not_called_binary(run, tmp_path, encoding):
    path = tmp_path / "clients.csv"
    path.write_bytes(UTF16_TEXT.encode(encoding))               # no BOM: as some exporters save
    result = run(path)                 # `validate FILE`: no API call
    assert result.exit_code == 0, result.output
    assert "binary" not in result.output and "2 clients rows" in result.output

    from etl.codec import read_table

    frame = read_table(path).frame
    assert list(frame["FirstName"]) == ["Łukasz", "Zoë"]


def test_a_binary_file_still_says_binary_and_names_the_utf16_options(run, tmp_path):
    path = tmp_path / "clients.csv"
    path.write_bytes(bytes(range(256)) * 8)
    result = run(path)                 # `validate FILE`: no API call
    assert result.exit_code == 1, result.output
    assert "binary file" in result.output and "--encoding utf-16-le" in result.output
