"""The diagnoses job: one request per client not yet current, resumable across days.

:class:`DiagnosesJob` fetches, in order, clients never fetched, then clients updated since
their fetch, until done or the daily budget ends; :class:`DiagnosesProgress` remembers
each answer. When the budget ends the job still leaves what it fetched in the store and
its :meth:`DiagnosesJob.result`, then lets ``BudgetExhausted`` through: the export writes
what is complete and stops (exit 75); the next run continues.

Per-client progress (SQLite in the account's state dir)
-------------------------------------------------------
The API has one diagnoses request per client, so for most practices fetching them all
takes more than a day's budget. Each client's answer is stored as soon as it arrives:

    <account_dir>/diagnoses.sqlite
      progress(client_id, fetched_at, client_updated, rows)
        fetched_at      epoch seconds of the fetch
        client_updated  the client's LastUpdateDate (epoch ms) when fetched
        rows            the API's diagnoses list for the client, as JSON

A client is *current* when it was fetched and has not been updated since
(LastUpdateDate unchanged or older). The next run fetches, in order: clients never
fetched, then clients updated since their last fetch; current ones are not fetched.
The file holds health data: it is owner-only (0600) like everything in the state dir.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..errors import BudgetExhausted, RequestRejected
from ..state.sqlite import open_private_db

FILENAME = "diagnoses.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS progress (
    client_id INTEGER PRIMARY KEY,
    fetched_at REAL NOT NULL,
    client_updated REAL,
    rows TEXT NOT NULL
);
"""


@dataclass
class DiagnosesPlan:
    """What a run has to fetch, in order, and what is already current."""

    todo: list[int]          # never fetched first, then updated since their fetch
    never_fetched: int
    stale: int
    current: int


class DiagnosesProgress:
    def __init__(self, path: Path | str):
        self.path = Path(path)
        # Rollback journal: one export job at a time writes it (see etl.state.sqlite).
        self._conn = open_private_db(self.path, wal=False, schema=_SCHEMA)

    @classmethod
    def for_settings(cls, settings) -> "DiagnosesProgress":
        return cls(Path(settings.account_dir) / FILENAME)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- state -------------------------------------------------------------
    def _known(self) -> dict[int, float | None]:
        cur = self._conn.execute("SELECT client_id, client_updated FROM progress")
        return {int(cid): updated for cid, updated in cur}

    @staticmethod
    def is_current(stored_updated: float | None, live_updated: float | None) -> bool:
        if live_updated is None:
            return True
        if stored_updated is None:
            return False
        return float(live_updated) <= float(stored_updated)

    def plan(self, clients: list[tuple[int, float | None]]) -> DiagnosesPlan:
        """``clients``: (ClientId, LastUpdateDate epoch ms or None) of the exported clients."""
        known = self._known()
        never, stale, current = [], [], 0
        for client_id, updated in sorted(clients, key=lambda c: c[0]):
            if client_id not in known:
                never.append(client_id)
            elif self.is_current(known[client_id], updated):
                current += 1
            else:
                stale.append(client_id)
        return DiagnosesPlan(todo=never + stale, never_fetched=len(never), stale=len(stale),
                             current=current)

    def record(self, client_id: int, client_updated: float | None, rows: list[dict],
               fetched_at: float) -> None:
        self._conn.execute(
            "INSERT OR REPLACE INTO progress (client_id, fetched_at, client_updated, rows) "
            "VALUES (?, ?, ?, ?)",
            (int(client_id), float(fetched_at),
             None if client_updated is None else float(client_updated),
             json.dumps(rows, ensure_ascii=False, default=str)),
        )

    def rows(self, client_ids) -> dict[int, list[dict]]:
        """The stored diagnoses of the given clients that were ever fetched."""
        wanted = {int(c) for c in client_ids}
        out = {}
        for cid, rows in self._conn.execute("SELECT client_id, rows FROM progress"):
            if int(cid) in wanted:
                out[int(cid)] = json.loads(rows)
        return out

    def forget_except(self, client_ids) -> int:
        """Drop progress of clients no longer in the account (after a complete export)."""
        keep = {int(c) for c in client_ids}
        gone = [cid for cid in self._known() if cid not in keep]
        with self._conn:      # one transaction (the connection is in autocommit mode)
            self._conn.execute("BEGIN")
            self._conn.executemany("DELETE FROM progress WHERE client_id = ?", [(c,) for c in gone])
        return len(gone)


# --------------------------------------------------------------------------------------
# the job

@dataclass
class Diagnoses:
    """What the job produced: the diagnoses table of the exported clients fetched so far,
    and the manifest's ``diagnoses`` entry (counts; ``complete`` False when cut short)."""

    frame: pd.DataFrame
    info: dict

    @property
    def remaining(self) -> int:
        return self.info["remaining"]


class DiagnosesJob:
    """Fetch the diagnoses of ``clients`` (the export's frame) that are not current."""

    def __init__(self, run, clients: pd.DataFrame):
        self.run = run
        updated = clients["LastUpdateDate"] if "LastUpdateDate" in clients.columns else None
        self.clients: list[tuple[int, float | None]] = []
        for i, client_id in enumerate(clients["ClientId"]):
            if pd.isna(client_id):
                continue
            last_update = _epoch_ms(updated.iloc[i]) if updated is not None else None
            self.clients.append((int(client_id), last_update))
        self.updated_by_id = dict(self.clients)
        self.plan: DiagnosesPlan | None = None
        self.fetched = self.not_found = 0
        self.stored: dict[int, list[dict]] = {}

    def fetch(self, *, complete: bool) -> Diagnoses:
        """Fetch until done; ``complete``: the clients are the whole account (progress of
        clients no longer in it is forgotten). Raises ``BudgetExhausted`` when the budget
        ends, after keeping what was fetched (then :meth:`result` is the partial table)."""
        with DiagnosesProgress.for_settings(self.run.settings) as store:
            self.plan = store.plan(self.clients)
            self.run.say(f"diagnoses: {self.plan.current} client(s) current, "
                         f"{self.plan.never_fetched} never fetched, {self.plan.stale} updated "
                         "since their fetch")
            try:
                self._fetch_todo(store)
            except BudgetExhausted:
                self._finish(store, forget=False)
                raise
            self._finish(store, forget=complete)
        return self.result()

    def _fetch_todo(self, store: DiagnosesProgress) -> None:
        todo = self.plan.todo
        with self.run.hooks.progress(len(todo), desc="diagnoses", unit="client") as bar:
            bar.update(0, remaining=len(todo))          # the ETA before the first request
            for n, client_id in enumerate(todo):
                try:
                    rows = self.run.client.diagnoses(client_id)
                except RequestRejected as exc:
                    if exc.status != 404:
                        raise
                    # Deleted since the list was fetched (or just created: the API lags).
                    # Not recorded: it stays "never fetched" and goes first next time.
                    self.not_found += 1
                else:
                    store.record(client_id, self.updated_by_id.get(client_id), rows,
                                 self.run.clock.time())
                    self.fetched += 1
                bar.update(1, remaining=len(todo) - n - 1)

    def _finish(self, store: DiagnosesProgress, *, forget: bool) -> None:
        if self.not_found:
            self.run.say(f"diagnoses: {self.not_found} client(s) not found (deleted meanwhile?); "
                         "tried again next run")
        if forget:
            store.forget_except(self.updated_by_id)
        self.stored = store.rows(self.updated_by_id)

    def result(self) -> Diagnoses:
        from ..codec import diagnoses_to_frame

        rows = []
        for client_id, _ in self.clients:
            for row in self.stored.get(client_id, []):
                rows.append({"ClientId": client_id, **row})
        remaining = len(self.plan.todo) - self.fetched
        info = {
            "clients": len(self.clients),
            "current": self.plan.current + self.fetched,
            "fetched_this_run": self.fetched,
            "not_found": self.not_found,
            "remaining": remaining,
            "complete": remaining == 0,
            "with_rows": len([c for c, _ in self.clients if self.stored.get(c)]),
        }
        return Diagnoses(frame=diagnoses_to_frame(rows), info=info)


def _epoch_ms(value) -> float | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    return pd.Timestamp(value).timestamp() * 1000.0
