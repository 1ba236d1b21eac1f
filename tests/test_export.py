"""Export, end to end through the CLI against the sandbox, plus the library directly.

Request counts are read from the sandbox's own request log. No test sleeps for a rate
limit: the sandbox fixture has its limits off and the CLI gets huge INTAKEQ_* limits;
tests that make the client retry use a FakeClock.
"""
from __future__ import annotations

import json
import os
import stat
import time
from pathlib import Path

import pandas as pd
import pytest

from etl import fields
from etl.clock import FakeClock
from etl.export.manifest import load_manifest, verify_manifest
from etl.state.snapshots import SnapshotStore

DAY = 86_400


# -- helpers ---------------------------------------------------------------------------

def pages(n: int) -> int:
    """Requests to page n records: ⌈n/100⌉, one more only when n % 100 == 0."""
    return n // 100 + 1


def client_gets(sandbox, **query_has) -> list:
    out = []
    for entry in sandbox.requests("GET", "clients"):
        q = {k.lower(): v for k, v in entry.query.items()}
        if all((q.get(k.lower()) == v) if v is not None else (k.lower() in q)
               for k, v in query_has.items()):
            out.append(entry)
    return out


def diagnoses_gets(sandbox) -> list:
    return [e for e in sandbox.log if e.path.rstrip("/").endswith("/diagnoses")]


def age_account(sandbox, days: float = 30) -> None:
    """Move every client's DateCreated/LastUpdateDate back, so that 'recent' means 'edited
    by the test'."""
    old = (time.time() - days * DAY) * 1000.0
    for client_id in list(sandbox.store.clients):
        sandbox.store.staff_edit(client_id, LastUpdateDate=old, DateCreated=old)


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def mode_of(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def snapshot_store(settings) -> SnapshotStore:
    return SnapshotStore(settings)


# -- full export -------------------------------------------------------------------------

@pytest.mark.parametrize("n", [20, 100, 250])
def test_full_export_costs_ceil_n_over_100_requests(sandbox, run_cli, tmp_path, n):
    sandbox.reset(n_clients=n)
    out = tmp_path / "exports"
    ok(run_cli("export", "--out", out, "--quiet"))
    assert len(sandbox.log) == pages(n)                        # nothing else fetched
    assert len(client_gets(sandbox, includeProfile="true")) == pages(n)
    frame = pd.read_csv(out / "clients.csv", dtype=str, encoding="utf-8-sig", keep_default_na=False)
    assert len(frame) == n
    ids = [int(x) for x in frame["ClientId"]]
    assert ids == sorted(ids) == sorted(sandbox.store.clients)
    manifest = load_manifest(out)
    assert manifest["rows"]["clients"] == n
    assert manifest["requests"] == pages(n)
    assert manifest["mode"] == "full"


def test_export_files_are_private_and_manifest_checksums_match(sandbox, run_cli, tmp_path,
                                                             settings):
    out = tmp_path / "exports"
    ok(run_cli("export", "--out", out, "--include-deleted", "--quiet"))
    assert mode_of(out) == 0o700
    names = sorted(p.name for p in out.iterdir())
    assert names == ["clients.csv", "deleted_clients.csv", "manifest.json"]
    for path in out.iterdir():
        assert mode_of(path) == 0o600, path.name
    assert verify_manifest(out) == []
    manifest = load_manifest(out)
    assert {f["name"] for f in manifest["files"]} == {"clients.csv", "deleted_clients.csv"}
    # snapshot: owner-only, in the account's state dir, named by the export id
    snap_dir = settings.account_dir / "snapshots"
    assert mode_of(snap_dir) == 0o700
    assert (snap_dir / f"{manifest['export_id']}.parquet").exists()
    for path in snap_dir.iterdir():
        assert mode_of(path) == 0o600


def test_manifest_has_what_it_should_and_no_client_data_or_key(sandbox, run_cli, tmp_path):
    sandbox.store.staff_edit(5, Email="not-an-email")   # a schema problem in the API's data
    out = tmp_path / "exports"
    ok(run_cli("export", "--out", out, "--quiet"))
    text = (out / "manifest.json").read_text()
    manifest = json.loads(text)
    for key in ("export_id", "tool_version", "schema_version", "started", "finished",
                "base_url", "rows", "requests", "files", "custom_fields", "warnings",
                "watermark"):
        assert key in manifest, key
    assert manifest["started"].endswith("Z") and manifest["finished"].endswith("Z")
    assert {c["id"] for c in manifest["custom_fields"]} == {
        f["FieldId"] for f in sandbox.store.custom_fields}
    assert all(c["label"] for c in manifest["custom_fields"])
    assert sandbox.api_key not in text
    for record in sandbox.store.clients.values():
        for name in ("FirstName", "LastName", "Email", "Phone"):
            value = record.get(name)
            if value and len(str(value)) > 3:
                assert str(value) not in text, name
    # the client failing validation is still exported and listed by id and check only
    assert any(w["client_id"] == 5 for w in manifest["warnings"]), manifest["warnings"]
    assert "not-an-email" not in text
    frame = pd.read_csv(out / "clients.csv", dtype=str, encoding="utf-8-sig")
    assert "5" in set(frame["ClientId"])


def test_json_summary_line(sandbox, run_cli, tmp_path):
    out = tmp_path / "exports"
    result = ok(run_cli("export", "--out", out, "--json", "--quiet"))
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["exit_status"] == 0
    assert summary["mode"] == "full"
    assert summary["rows"]["clients"] == 20
    assert summary["requests"] == 1
    assert "clients.csv" in summary["files"] and "manifest.json" in summary["files"]
    assert summary["export_id"] == load_manifest(out)["export_id"]


def test_json_summary_line_even_when_interrupted(sandbox, run_cli, tmp_path, monkeypatch):
    from etl.api import IntakeQClient

    def interrupted(self, **query):
        raise KeyboardInterrupt
        yield   # a generator, like the real one

    monkeypatch.setattr(IntakeQClient, "iter_pages", interrupted)
    result = run_cli("export", "--out", tmp_path / "exports", "--json", "--quiet")
    assert result.exit_code == 130
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["exit_status"] == 130 and summary["error"] == "interrupted"


def test_columns_narrow_the_file_but_not_the_snapshot(sandbox, run_cli, tmp_path, settings):
    out = tmp_path / "exports"
    ok(run_cli("export", "--out", out, "--columns", "Email,LastName", "--quiet"))
    header = (out / "clients.csv").read_text(encoding="utf-8-sig").splitlines()[0]
    assert header == "ClientId,Email,LastName"
    manifest = load_manifest(out)
    assert manifest["columns"] == ["ClientId", "Email", "LastName"]
    frame, meta = snapshot_store(settings).load(manifest["export_id"])
    assert "FirstName" in frame.columns and len(frame) == 20
    assert meta["complete"] is True


def test_unknown_column_is_refused(sandbox, run_cli, tmp_path):
    out = tmp_path / "exports"
    result = run_cli("export", "--out", out, "--columns", "Emial")
    assert result.exit_code == 1
    assert "Emial" in result.output
    assert not (out / "clients.csv").exists()


@pytest.mark.parametrize("fmt", ["parquet", "xlsx"])
def test_other_formats(sandbox, run_cli, tmp_path, fmt):
    out = tmp_path / "exports"
    ok(run_cli("export", "--out", out, "--format", fmt, "--quiet"))
    assert (out / f"clients.{fmt}").exists()
    assert verify_manifest(out) == []
    from etl.codec import read_table

    table = read_table(out / f"clients.{fmt}")
    assert len(table.frame) == 20


def test_filters_map_to_the_api_and_mark_the_snapshot_incomplete(sandbox, run_cli, tmp_path,
                                                                 settings):
    out = tmp_path / "exports"
    ok(run_cli("export", "--out", out, "--search", "smith", "--custom", "sotc=x",
               "--created-since", "2020-01-02", "--external-id", "EXT-1", "--quiet"))
    (entry,) = sandbox.requests("GET", "clients")
    q = entry.query
    assert q["search"] == "smith" and q["custom.sotc"] == "x"
    assert q["dateCreatedStart"] == "2020-01-02" and q["externalClientId"] == "EXT-1"
    manifest = load_manifest(out)
    # a search, an external id or a custom value can be a client's name or email: the
    # manifest records that they were given, never what they were
    assert manifest["filters"] == {"search": True, "created_since": "2020-01-02",
                                   "updated_since": None, "custom": ["sotc"],
                                   "external_id": True}
    text = (out / "manifest.json").read_text()
    assert "smith" not in text and "EXT-1" not in text
    assert snapshot_store(settings).load(manifest["export_id"])[1]["complete"] is False
    assert snapshot_store(settings).newest() is None     # not a base for --incremental


def test_incremental_with_filters_is_refused_before_any_request(sandbox, run_cli, tmp_path):
    result = run_cli("export", "--out", tmp_path / "x", "--incremental", "--search", "a")
    assert result.exit_code == 1
    assert "--incremental" in result.output
    assert sandbox.log == []


def test_sandbox_option_works_with_an_empty_state_dir(tmp_path, run_cli):
    state = tmp_path / "fresh-state"
    out = tmp_path / "exports"
    env = {"INTAKEQ_ETL_STATE_DIR": str(state), "INTAKEQ_API_KEY": "",
           "INTAKEQ_BASE_URL": "", "INTAKEQ_MAX_PER_MINUTE": "", "INTAKEQ_MAX_PER_DAY": ""}
    result = ok(run_cli("--sandbox", "export", "--out", out, env=env))
    assert "export" in result.output
    manifest = load_manifest(out)
    assert manifest["rows"]["clients"] == 300
    assert manifest["requests"] == pages(300)          # 300 % 100 == 0: one empty page


# -- incremental ---------------------------------------------------------------------------

def test_incremental_costs_updated_pages_plus_one_plus_deleted_pages(sandbox, run_cli,
                                                                      tmp_path):
    sandbox.reset(n_clients=250)
    age_account(sandbox)
    ok(run_cli("export", "--out", tmp_path / "a", "--incremental", "--quiet"))
    assert load_manifest(tmp_path / "a")["mode"] == "full"          # no snapshot yet
    sandbox.log.clear()
    for client_id in (3, 77, 190):
        sandbox.store.staff_edit(client_id, City="Springfield")
    result = ok(run_cli("export", "--out", tmp_path / "b", "--incremental"))
    assert "incremental" in result.output
    updated = client_gets(sandbox, dateUpdatedStart=None)
    created = client_gets(sandbox, dateCreatedStart=None)
    deleted = client_gets(sandbox, deletedOnly="true")
    assert len(updated) == pages(3) and len(created) == pages(0) and len(deleted) == pages(0)
    assert len(sandbox.log) == 3                  # ⌈3/100⌉ + 1 + one deleted page
    manifest = load_manifest(tmp_path / "b")
    assert manifest["mode"] == "incremental" and manifest["requests"] == 3
    assert manifest["rows"]["clients"] == 250


def test_incremental_equals_full_after_creates_updates_and_deletes(sandbox, run_cli, tmp_path):
    sandbox.reset(n_clients=120)
    age_account(sandbox)
    ok(run_cli("export", "--out", tmp_path / "first", "--quiet"))
    store = sandbox.store
    store.staff_edit(4, City="Elsewhere", Tags=["new;tag", "x"], custom={"sotc": "=1+1"})
    store.staff_edit(50, Email="changed@example.com", Archived=True)
    store.add_client(FirstName="Nova", LastName="Created", Email="nova@example.com")
    store.add_client(FirstName="Ada", LastName="Later", LastUpdateDate=None)
    store.delete_client(7)
    store.delete_client(4)                         # updated, then deleted
    sandbox.log.clear()
    ok(run_cli("export", "--out", tmp_path / "inc", "--incremental", "--quiet",
               "--include-deleted"))
    inc_requests = len(sandbox.log)
    ok(run_cli("export", "--out", tmp_path / "full", "--quiet"))
    inc = (tmp_path / "inc" / "clients.csv").read_bytes()
    full = (tmp_path / "full" / "clients.csv").read_bytes()
    assert inc == full
    assert load_manifest(tmp_path / "inc")["mode"] == "incremental"
    # deletedOnly pages were fetched once, and reused for deleted_clients.csv
    assert inc_requests == 3
    deleted = pd.read_csv(tmp_path / "inc" / "deleted_clients.csv", dtype=str,
                          encoding="utf-8-sig")
    assert sorted(int(x) for x in deleted["ClientId"]) == [4, 7]
    # and once more in parquet, from the snapshot of the incremental run
    ok(run_cli("export", "--out", tmp_path / "inc2", "--incremental", "--format", "parquet",
               "--quiet"))
    ok(run_cli("export", "--out", tmp_path / "full2", "--format", "parquet", "--quiet"))
    a = pd.read_parquet(tmp_path / "inc2" / "clients.parquet")
    b = pd.read_parquet(tmp_path / "full2" / "clients.parquet")
    pd.testing.assert_frame_equal(a, b)


def test_incremental_falls_back_to_full_when_the_snapshot_is_too_old(sandbox, run_cli,
                                                                     tmp_path, settings):
    ok(run_cli("export", "--out", tmp_path / "a", "--quiet"))
    store = snapshot_store(settings)
    export_id, meta = store.newest()
    meta_path = store.meta_path(export_id)
    meta["watermark_epoch"] = time.time() - 10 * DAY
    meta_path.write_text(json.dumps(meta))
    sandbox.log.clear()
    result = ok(run_cli("export", "--out", tmp_path / "b", "--incremental"))
    assert "more than 9" in result.output
    manifest = load_manifest(tmp_path / "b")
    assert manifest["mode"] == "full" and "days old" in manifest["mode_reason"]
    assert len(sandbox.log) == 1


def test_incremental_redoes_a_full_export_when_custom_fields_changed(sandbox, run_cli,
                                                                   tmp_path, settings):
    age_account(sandbox)
    ok(run_cli("export", "--out", tmp_path / "a", "--quiet"))
    store = snapshot_store(settings)
    export_id, meta = store.newest()
    meta["custom_fields"] = {"retired": "A field the practice deleted"}
    store.meta_path(export_id).write_text(json.dumps(meta))
    sandbox.store.staff_edit(2, City="Moved")
    sandbox.log.clear()
    result = ok(run_cli("export", "--out", tmp_path / "b", "--incremental"))
    assert ("full export: the account's custom fields changed since the last snapshot"
            in result.output.splitlines())
    manifest = load_manifest(tmp_path / "b")
    assert manifest["mode"] == "full"
    assert "retired" not in {c["id"] for c in manifest["custom_fields"]}
    # the deleted pages already fetched were not fetched again
    assert len(client_gets(sandbox, deletedOnly="true")) == 1


def test_bad_timezone_is_refused_before_any_request(sandbox, run_cli, tmp_path):
    result = run_cli("export", "--out", tmp_path / "x", "--timezone", "Mars/Olympus")
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "error: unknown timezone 'Mars/Olympus': use an IANA name such as America/New_York "
        "or Europe/Paris"]
    assert sandbox.log == []


def test_full_refresh_forces_a_full_export(sandbox, run_cli, tmp_path):
    ok(run_cli("export", "--out", tmp_path / "a", "--quiet"))
    ok(run_cli("export", "--out", tmp_path / "b", "--incremental", "--full-refresh", "--quiet"))
    manifest = load_manifest(tmp_path / "b")
    assert manifest["mode"] == "full" and "--full-refresh" in manifest["mode_reason"]


# -- failures leave the previous export intact -------------------------------------------

@pytest.mark.parametrize("under", ["a-file", "missing-parent-of-a-file"])
def test_unusable_out_dir_is_one_line_before_any_request(sandbox, run_cli, tmp_path, under):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "exports" if under == "a-file" else blocker / "x" / "exports"
    result = run_cli("export", "--out", out)
    assert result.exit_code == 1, result.output
    assert "cannot use --out" in result.output and "Not a directory" in result.output
    assert "Traceback" not in result.output and "a bug" not in result.output
    assert sandbox.log == []                      # no request spent on a doomed run


def test_disk_error_while_writing_is_one_line_and_keeps_the_previous_export(
        sandbox, run_cli, tmp_path, monkeypatch):
    import errno

    from etl import codec

    out = tmp_path / "exports"
    ok(run_cli("export", "--out", out, "--quiet"))
    before = _snapshot_dir(out)

    def disk_full(df, path, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(codec, "write_table", disk_full)
    result = run_cli("export", "--out", out)
    assert result.exit_code == 1, result.output
    assert "No space left on device" in result.output and "intact" in result.output
    assert "a bug" not in result.output
    assert _snapshot_dir(out) == before


def _snapshot_dir(out: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


def test_budget_exhausted_mid_way_exits_75_and_leaves_the_previous_export(sandbox, run_cli,
                                                                          tmp_path):
    sandbox.reset(n_clients=250)
    out = tmp_path / "exports"
    ok(run_cli("export", "--out", out, "--quiet"))        # 3 requests in the ledger
    before = _snapshot_dir(out)
    sandbox.store.staff_edit(1, City="Changed")
    result = run_cli("export", "--out", out, "--json", env={"INTAKEQ_MAX_PER_DAY": "5"})
    assert result.exit_code == 75, result.output
    [error] = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert error.startswith("error: daily request budget used up (5 of 5 in the last 24 h); "
                            "the next request frees up at "), error
    assert error.endswith(f" UTC; nothing was written to {out}; the 2 page(s) fetched so far "
                          "are kept in the state dir, the next run fetches only the rest; run the "
                          "same command again then")
    assert _snapshot_dir(out) == before                    # no partial or temp file either
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["exit_status"] == 75


def test_server_errors_mid_way_leave_the_previous_export(sandbox, settings, tmp_path):
    from etl.api import IntakeQClient
    from etl.errors import ApiError
    from etl.export import export_clients
    from etl.sandbox import Faults

    sandbox.reset(n_clients=250)
    out = tmp_path / "exports"
    export_clients(settings, out=out)
    before = _snapshot_dir(out)

    class FailsAfterFirstPage(IntakeQClient):
        def iter_pages(self, **query):
            for n, page in enumerate(super().iter_pages(**query)):
                yield page
                if n == 0:   # the server breaks down after the first page
                    sandbox.configure(faults=Faults(seed=3, fail_before=1.0))

    client = FailsAfterFirstPage(settings, clock=FakeClock())   # retries back off instantly
    with pytest.raises(ApiError):
        export_clients(client, out=out)
    assert any(e.status == 503 for e in sandbox.log)
    assert _snapshot_dir(out) == before


def test_a_failed_write_leaves_no_temp_file(sandbox, settings, tmp_path, monkeypatch):
    from etl.errors import EtlError
    from etl.export import export_clients

    out = tmp_path / "exports"
    export_clients(settings, out=out)
    before = _snapshot_dir(out)

    def broken_save(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(SnapshotStore, "save", broken_save)
    with pytest.raises(EtlError, match="disk full; the previous export"):
        export_clients(settings, out=out)
    assert _snapshot_dir(out) == before


# -- deleted clients -------------------------------------------------------------------------

def test_include_deleted_writes_deleted_clients(sandbox, run_cli, tmp_path):
    sandbox.store.delete_client(3)
    sandbox.store.delete_client(11)
    out = tmp_path / "exports"
    ok(run_cli("export", "--out", out, "--include-deleted", "--quiet"))
    assert len(client_gets(sandbox, deletedOnly="true")) == 1
    assert len(sandbox.log) == 2
    deleted = pd.read_csv(out / "deleted_clients.csv", dtype=str, encoding="utf-8-sig")
    assert sorted(int(x) for x in deleted["ClientId"]) == [3, 11]
    clients = pd.read_csv(out / "clients.csv", dtype=str, encoding="utf-8-sig")
    assert len(clients) == 18 and "3" not in set(clients["ClientId"])
    assert load_manifest(out)["rows"]["deleted_clients"] == 2


# -- diagnoses ----------------------------------------------------------------------------

def _diagnoses_expected(sandbox) -> int:
    return sum(len(sandbox.store.diagnoses.get(i, [])) for i in sandbox.store.clients)


def test_diagnoses_span_days_exit_75_then_resume(sandbox, run_cli, tmp_path):
    out = tmp_path / "exports"
    # budget: 1 clients page + 5 diagnoses
    result = run_cli("export", "--out", out, "--include-diagnoses", "--json",
                     env={"INTAKEQ_MAX_PER_DAY": "6"})
    assert result.exit_code == 75, result.output
    [error] = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert error.endswith(
        "; diagnoses of 15 client(s) still to fetch; the clients file and the diagnoses fetched "
        "so far were written; run the same command again then to continue"), result.output
    assert len(diagnoses_gets(sandbox)) == 5
    manifest = load_manifest(out)
    assert manifest["status"] == "diagnoses_incomplete"
    assert manifest["diagnoses"]["current"] == 5 and manifest["diagnoses"]["remaining"] == 15
    assert verify_manifest(out) == []
    assert (out / "clients.csv").exists() and (out / "diagnoses.csv").exists()
    first_ids = sorted(int(e.path.split("/")[-2]) for e in diagnoses_gets(sandbox))
    assert first_ids == [1, 2, 3, 4, 5]                     # never fetched first, by id

    sandbox.log.clear()                                     # the next day: budget back
    ok(run_cli("export", "--out", out, "--include-diagnoses", "--quiet"))
    assert len(diagnoses_gets(sandbox)) == 15               # only the rest
    manifest = load_manifest(out)
    assert manifest["status"] == "complete"
    assert manifest["diagnoses"] == {**manifest["diagnoses"], "current": 20, "remaining": 0}
    diag = pd.read_csv(out / "diagnoses.csv", dtype=str, encoding="utf-8-sig")
    assert list(diag.columns) == list(fields.DIAGNOSIS_COLUMNS)
    assert len(diag) == _diagnoses_expected(sandbox)

    sandbox.log.clear()                                     # nothing changed: nothing fetched
    ok(run_cli("export", "--out", out, "--include-diagnoses", "--quiet"))
    assert diagnoses_gets(sandbox) == []

    sandbox.store.set_diagnoses(9, [{"Code": "F41.1", "Description": "Anxiety",
                                     "Date": "2024-01-02T00:00:00Z"}])
    sandbox.store.staff_edit(9, City="Updated")            # updated since its fetch
    sandbox.log.clear()
    ok(run_cli("export", "--out", out, "--include-diagnoses", "--quiet"))
    assert [e.path.split("/")[-2] for e in diagnoses_gets(sandbox)] == ["9"]
    diag = pd.read_csv(out / "diagnoses.csv", dtype=str, encoding="utf-8-sig")
    assert list(diag.loc[diag["ClientId"] == "9", "Code"]) == ["F41.1"]


def test_diagnoses_of_a_client_deleted_meanwhile_are_skipped_not_fatal(sandbox, run_cli,
                                                                        tmp_path, monkeypatch):
    from etl.api import IntakeQClient

    real = IntakeQClient.diagnoses

    def deleted_in_the_middle(self, client_id):
        if client_id == 4 and 4 in sandbox.store.clients:
            sandbox.store.delete_client(4)         # staff deletes it while we page diagnoses
        return real(self, client_id)

    monkeypatch.setattr(IntakeQClient, "diagnoses", deleted_in_the_middle)
    out = tmp_path / "exports"
    result = ok(run_cli("export", "--out", out, "--include-diagnoses"))
    assert "1 client(s) not found" in result.output
    info = load_manifest(out)["diagnoses"]
    assert info["not_found"] == 1 and info["fetched_this_run"] == 19
    assert info["remaining"] == 1                   # tried again next run
    assert [e.status for e in diagnoses_gets(sandbox)].count(404) == 1


# -- library -------------------------------------------------------------------------------

def test_library_returns_frames_without_writing_files(sandbox, settings, tmp_path):
    from etl import export_clients
    from etl.export import ExportHooks

    class Heard(ExportHooks):
        def __init__(self):
            self.messages = []

        def say(self, message):
            self.messages.append(message)

    hooks = Heard()
    messages = hooks.messages
    result = export_clients(settings, hooks=hooks, include_deleted=True)
    assert result.out is None and result.files == []
    assert len(result.clients) == 20
    assert str(result.clients["ClientId"].dtype) == "Int64"
    assert result.deleted is not None and len(result.deleted) == 0
    assert result.manifest["requests"] == 2
    assert any("full export" in m for m in messages)
    # the snapshot was stored: the next incremental run builds on it
    again = export_clients(settings, incremental=True)
    assert again.mode == "incremental"
    pd.testing.assert_frame_equal(again.clients, result.clients)


# -- snapshots ------------------------------------------------------------------------------

def test_snapshot_store_round_trip_newest_and_retention(sandbox, settings):
    from etl.export import export_clients

    frame = export_clients(settings, save_snapshot=False).clients
    store = SnapshotStore(settings)
    for i in range(7):
        store.save(f"2026010{i}T000000Z-aaaaa{i}", frame,
                   {"watermark": 1_700_000_000 + i, "complete": i < 2})
    ids = [export_id for export_id, _ in store.list()]
    # the newest 5 kept, plus the newest complete one (i == 1)
    assert ids == [f"2026010{i}T000000Z-aaaaa{i}" for i in (6, 5, 4, 3, 2, 1)]
    assert store.newest()[0] == "20260101T000000Z-aaaaa1"
    assert store.newest(complete_only=False)[0] == "20260106T000000Z-aaaaa6"
    loaded, meta = store.load("20260106T000000Z-aaaaa6")
    pd.testing.assert_frame_equal(loaded, frame)
    assert meta["rows"] == len(frame)
    from etl.errors import SnapshotNotFound

    with pytest.raises(SnapshotNotFound):
        store.load("20250101T000000Z-ffffff")
    with pytest.raises(SnapshotNotFound):
        store.load("../../etc/passwd")


def test_atomic_path_removes_the_temp_file_on_failure(tmp_path):
    from etl.state.files import atomic_path, write_text_atomic

    target = tmp_path / "d" / "f.txt"
    target.parent.mkdir()
    write_text_atomic(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("new, half writ")
            raise RuntimeError("killed")
    assert target.read_text() == "old"
    assert [p.name for p in target.parent.iterdir()] == ["f.txt"]
    assert mode_of(target) == 0o600


def test_files_of_an_earlier_export_do_not_linger_beside_a_newer_manifest(sandbox, run_cli, tmp_path):
    out = tmp_path / "out"
    assert run_cli("export", "--out", out, "--include-deleted", "--quiet").exit_code == 0
    assert (out / "deleted_clients.csv").exists()

    result = run_cli("export", "--out", out, "--format", "parquet", "--quiet")

    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["clients.parquet", "manifest.json"]


# -- a full export over several runs (issue 11) ----------------------------------------------

def _clients_csv(out: Path) -> bytes:
    return (out / "clients.csv").read_bytes()


def test_columns_typo_is_refused_with_a_hint_before_any_request(sandbox, run_cli, tmp_path):
    result = run_cli("export", "--out", tmp_path / "x", "--columns", "ClientId,Emial")
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        "error: --columns names columns this account does not have: Emial (did you mean "
        "Email?); nothing was sent"]
    assert sandbox.log == []


def test_a_custom_filter_on_a_field_the_snapshot_does_not_list_sends_nothing(sandbox, run_cli, tmp_path):
    ok(run_cli("export", "--out", tmp_path / "first", "--quiet"))     # a snapshot: the fields are known
    sandbox.log.clear()
    result = run_cli("export", "--out", tmp_path / "x", "--custom", "sotcc=Jane")
    assert result.exit_code == 1
    assert result.output.splitlines()[-1].startswith(
        "error: --custom names fields the newest export of this account does not have: sotcc (did you "
        "mean sotc?)")
    assert sandbox.log == [] and not (tmp_path / "x").exists()
    ok(run_cli("export", "--out", tmp_path / "y", "--custom", "sotc=Jane", "--quiet"))


def test_a_custom_field_the_snapshot_does_not_know_is_checked_after_the_first_page(sandbox, run_cli, tmp_path):
    sandbox.reset(n_clients=250)                 # 3 pages; no snapshot yet: no custom field is known
    result = run_cli("export", "--out", tmp_path / "x", "--columns", "ClientId,custom.sotcc")
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == (
        "error: --columns names columns this account does not have: custom.sotcc (did you mean "
        "custom.sotc?); nothing was written (1 request(s) sent)")
    assert len(sandbox.log) == 1
    assert not (tmp_path / "x").exists()
    sandbox.log.clear()
    ok(run_cli("export", "--out", tmp_path / "y", "--columns", "ClientId,custom.sotc", "--quiet"))
    assert len(sandbox.log) == 3


def kill_export_on_request(monkeypatch, n: int) -> None:
    """The export's n-th listing request raises KeyboardInterrupt (kill -INT while it is on
    its way); undo with ``monkeypatch.undo()`` or a new setattr."""
    from etl.api import IntakeQClient

    real = IntakeQClient._get_clients
    calls = []

    def killed(self, params):
        calls.append(params)
        if len(calls) == n:
            raise KeyboardInterrupt
        return real(self, params)

    monkeypatch.setattr(IntakeQClient, "_get_clients", killed)


def test_a_killed_export_fetches_only_the_rest_on_the_next_run(sandbox, run_cli, tmp_path,
                                                               monkeypatch, settings):
    sandbox.reset(n_clients=450)
    age_account(sandbox)
    kill_export_on_request(monkeypatch, 5)     # while page 5 is on its way
    out = tmp_path / "exports"
    assert run_cli("export", "--out", out, "--quiet").exit_code == 130
    assert not out.exists()
    assert len(sandbox.log) == 4
    monkeypatch.undo()
    sandbox.store.staff_edit(9, City="Moved on")
    sandbox.log.clear()
    result = ok(run_cli("export", "--out", out))
    assert "continuing the full export" in result.output
    not_yet_fetched = 1
    # the page not fetched + updated, created, deleted: no check page, as the only change
    # since (a city) moves nobody in the name order
    assert len(sandbox.log) == not_yet_fetched + 3
    assert len(sandbox.log) < pages(450)          # cheaper than starting again
    manifest = load_manifest(out)
    assert manifest["fetched_runs"] == 2 and manifest["requests"] == len(sandbox.log)
    assert manifest["requests_total"] == 4 + len(sandbox.log)
    ok(run_cli("export", "--out", tmp_path / "fresh", "--quiet"))
    assert _clients_csv(out) == _clients_csv(tmp_path / "fresh")
    # the kept pages are gone once the files are written: the next export starts afresh
    sandbox.log.clear()
    ok(run_cli("export", "--out", tmp_path / "again", "--quiet"))
    assert len(sandbox.log) == pages(450)


@pytest.mark.parametrize("change, check_pages", [
    ("edit", 0), ("rename", 1), ("delete", 1), ("create", 1)])
def test_a_killed_export_checks_its_place_only_when_a_client_may_have_moved(
        sandbox, run_cli, tmp_path, monkeypatch, change, check_pages):
    sandbox.reset(n_clients=450)
    age_account(sandbox)
    store = sandbox.store
    kill_export_on_request(monkeypatch, 5)     # while page 5 is on its way
    out = tmp_path / "exports"
    assert run_cli("export", "--out", out, "--quiet").exit_code == 130
    monkeypatch.undo()
    first_by_name = sorted(store.clients, key=lambda i: (store.clients[i]["Name"] or "").casefold())
    kept = first_by_name[5]                     # on page 1, fetched before the kill
    if change == "edit":
        store.staff_edit(kept, City="Elsewhere")
    elif change == "rename":
        store.staff_edit(kept, LastName="Zzzz")  # leaves page 1: every later client moves up
    elif change == "delete":
        store.delete_client(kept)
    else:
        store.add_client(FirstName="Aaa", LastName="Aaa", Email="aaa@example.com")
    sandbox.log.clear()
    ok(run_cli("export", "--out", out, "--quiet"))
    assert len(sandbox.log) == 1 + 3 + check_pages
    ok(run_cli("export", "--out", tmp_path / "fresh", "--quiet"))
    assert _clients_csv(out) == _clients_csv(tmp_path / "fresh")


def test_a_killed_export_with_few_pages_kept_starts_again_when_that_is_cheaper(sandbox, run_cli, tmp_path,
                                                                            monkeypatch):
    sandbox.reset(n_clients=250)
    kill_export_on_request(monkeypatch, 3)     # while page 3 is on its way
    out = tmp_path / "exports"
    assert run_cli("export", "--out", out, "--quiet").exit_code == 130
    monkeypatch.undo()
    sandbox.log.clear()
    result = ok(run_cli("export", "--out", out))
    assert "costs no more than catching up; starting again" in result.output
    assert len(sandbox.log) == pages(250)          # 3, where continuing would cost 1 + 3
    assert load_manifest(out)["fetched_runs"] == 1


def test_an_export_over_four_days_equals_a_fresh_one(sandbox, run_cli, tmp_path, settings):
    sandbox.reset(n_clients=700)
    age_account(sandbox)
    store = sandbox.store
    out = tmp_path / "exports"
    total = 0
    # day 1: a budget of 3 requests; each later day 3 more (the ledger still holds the earlier ones)
    for day, budget in enumerate((3, 6, 9, 0), 1):
        sandbox.log.clear()
        result = run_cli("export", "--out", out, "--json", env={"INTAKEQ_MAX_PER_DAY": str(budget)})
        total += len(sandbox.log)
        if day < 4:
            assert result.exit_code == 75, result.output
            assert "are kept in the state dir" in result.output
            assert not (out / "clients.csv").exists()
            # between the runs: creates (at the front of the name order), edits, deletes
            store.add_client(FirstName="Aaa", LastName=f"New{day}", Email=f"a{day}@example.com")
            store.staff_edit(10 * day, City=f"Day {day}", LastName="Zzz")    # moves in the order
            store.delete_client(100 + day)
            first_by_name = sorted(store.clients, key=lambda i: (store.clients[i]["Name"] or "").casefold())
            store.delete_client(first_by_name[day])                            # shifts every page
        else:
            ok(result)
    manifest = load_manifest(out)
    assert manifest["fetched_runs"] == 4 and manifest["status"] == "complete"
    assert manifest["requests_total"] == total
    assert total <= -(-700 // 100) + 1 + 3 * 4 + 3        # ⌈N/100⌉ (+1: N % 100 == 0) + 3 × runs + 3
    ok(run_cli("export", "--out", tmp_path / "fresh", "--quiet"))
    assert _clients_csv(out) == _clients_csv(tmp_path / "fresh")
    assert manifest["rows"]["clients"] == len(store.clients)


def test_include_diagnoses_on_top_of_a_resumed_export(sandbox, run_cli, tmp_path):
    sandbox.reset(n_clients=450)
    out = tmp_path / "exports"
    assert run_cli("export", "--out", out, "--include-diagnoses",
                   env={"INTAKEQ_MAX_PER_DAY": "4"}).exit_code == 75       # 4 of 5 pages kept
    ok(run_cli("export", "--out", out, "--include-diagnoses", "--quiet"))
    manifest = load_manifest(out)
    assert manifest["fetched_runs"] == 2 and manifest["diagnoses"]["remaining"] == 0
    assert manifest["rows"]["clients"] == 450
    diag = pd.read_csv(out / "diagnoses.csv", dtype=str, encoding="utf-8-sig")
    assert len(diag) == _diagnoses_expected(sandbox)


def test_parts_are_ranges_of_creation_days_sized_to_a_days_budget():
    from etl.export.resume import Part, plan_parts

    days = ["2024-01-01"] * 3 + ["2024-01-02"] * 2 + ["2024-01-05"] * 4
    assert plan_parts(days, None) == [Part(None, None)]
    # contiguous: the days between two parts' clients belong to the earlier part
    assert plan_parts(days, 5) == [Part(None, "2024-01-04"), Part("2024-01-05", None)]
    assert plan_parts(days, 3) == [Part(None, "2024-01-01"), Part("2024-01-02", "2024-01-04"),
                                   Part("2024-01-05", None)]


def test_parts_planned_from_the_snapshot_fetch_the_account_exactly(sandbox, settings, tmp_path,
                                                                   monkeypatch):
    from etl.export import export_clients, resume

    sandbox.reset(n_clients=450)
    first = export_clients(settings)                          # the snapshot to plan from
    monkeypatch.setattr(resume, "part_size", lambda per_day: 150)
    sandbox.log.clear()
    result = export_clients(settings)
    assert result.manifest["fetched_parts"] >= 3
    queries = [e.query for e in sandbox.requests("GET", "clients")]
    assert any("dateCreatedEnd" in q for q in queries) and any("dateCreatedStart" in q for q in queries)
    pd.testing.assert_frame_equal(result.clients, first.clients)


def test_a_client_listed_twice_is_built_from_its_newest_record_only():
    """A resumed export's catch-up lists a client again: the older copy adds no column and
    no label (a custom field removed or renamed since), and one row stays."""
    from etl.export.frames import FrameBuilder
    from etl.export.resume import feed_newest

    old = {"ClientId": 1, "Name": "A", "CustomFields": [{"FieldId": "a", "Text": "Referral", "Value": "x"},
                                                        {"FieldId": "b", "Text": "Gone", "Value": "y"}]}
    other = {"ClientId": 2, "Name": "B", "CustomFields": [{"FieldId": "a", "Text": "Referred by", "Value": "z"}]}
    new = {"ClientId": 1, "Name": "A2", "CustomFields": [{"FieldId": "a", "Text": "Referred by", "Value": "w"}]}
    reads = []

    def read():
        reads.append(1)
        return iter([old, other, {"Name": "no id"}, new])

    builder = feed_newest(read, lambda: FrameBuilder("UTC"))
    frame = builder.frame()
    assert "custom.b" not in frame.columns and builder.labels == {"a": "Referred by"}
    assert frame["Name"].tolist() == ["A2", "B", "no id"]          # by ClientId, the one without last
    assert len(reads) == 3                       # a repeat costs two more reads of the kept pages
    single = feed_newest(lambda: iter([other, new]), lambda: FrameBuilder("UTC"))
    assert len(single.frame()) == 2
