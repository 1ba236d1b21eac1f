"""The review files of a plan (issue 13 §1): the workbook (openpyxl), the page (in a real
headless Chromium, network off), and the import writing them (the real CLI, the sandbox)."""
from __future__ import annotations

import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openpyxl import load_workbook
from test_import import export_csv, read_rows, write_rows

from etl.codec.model import Problem
from etl.codec.text import guard
from etl.importer import diff as D
from etl.importer.review import ReviewSummary, build_review, changes_by_field, review_paths, write_review
from etl.importer.review_html import render_page
from etl.importer.review_xlsx import CHANGE_FILL, CONFLICT_FILL, CREATE_FILL

ROOT = Path(__file__).resolve().parents[1]
SCRIPT_NAME = "<script>document.title='pwned'</script> Doe"
HYPERLINK = '=HYPERLINK("http://example.invalid/x","click")'


# --------------------------------------------------------------------------- the model


def sample_plans() -> list[D.RowPlan]:
    return [
        D.RowPlan(2, 11, D.UPDATE, name=SCRIPT_NAME,
                  changes=[D.Change("Email", "a@example.org", "b@example.org"), D.Change("City", "Oslo", HYPERLINK)],
                  tag_adds=["VIP", "New"], tag_removes=["Old"]),
        D.RowPlan(3, 12, D.CONFLICT, name="Bea Conflict",
                  conflicts=[D.Conflict("PostalCode", "02134", "02135", "02139")]),
        D.RowPlan(4, None, D.CREATE, name="Nia New",
                  changes=[D.Change("FirstName", None, "Nia"), D.Change("LastName", None, "New")]),
        D.RowPlan(5, 13, D.UNCHANGED, name="Una Changed",
                  kept=(D.Kept("City", "Bergen", "Paris", 1_700_000_000.0),)),
        D.RowPlan(6, 14, D.UPDATE, name="Eve Email", changes=[D.Change("Email", "", "e@example.org")]),
    ]


def sample_summary(**more) -> ReviewSummary:
    fields = dict(source="clients.csv", dry_run=True, reads=3, saves=3, tag_calls=3, seconds=42.0, per_minute=10,
                  per_day=500, remaining_today=480, days=1, base="export 20261201T000000Z-abcdef",
                  options={"--tags": "replace"},
                  problems=[Problem(7, "Email", "=1+1", "email_shape", "looks odd", severity="warning")])
    fields.update(more)
    return ReviewSummary(**fields)


def test_changes_by_field_counts_each_field_and_the_tag_calls():
    assert changes_by_field(sample_plans()) == "Email 2 · City 1 · Tags +2 \u22121 · 1 new client(s)"
    assert changes_by_field([D.RowPlan(2, 1, D.UNCHANGED)]) == "nothing"


def test_the_model_has_one_row_per_changed_or_conflicting_client_and_one_column_per_field():
    model = build_review(sample_plans(), sample_summary())

    assert [(c.client_id, c.action) for c in model.clients] == \
        [(11, "update"), (12, "conflict"), (None, "create"), (14, "update")]
    assert model.fields == ["FirstName", "LastName", "Email", "City", "PostalCode", "Tags"]   # the export's order
    assert model.n_cells == 7
    assert [(k.client_id, k.field, k.kept, k.file) for k in model.kept] == [(13, "City", "Paris", "Bergen")]
    assert ("changes by field", changes_by_field(sample_plans())) in model.summary
    assert ("writes to send", "6 (3 client save(s) + 3 tag call(s))") in model.summary
    assert [p.check for p in model.problems] == ["email_shape"]


# --------------------------------------------------------------------------- the workbook


@pytest.fixture
def workbook(tmp_path):
    class Paths:
        plan = tmp_path / "clients.plan.csv"
        review = True
        written: list = []

        def wrote(self, path):
            self.written.append(path)

    paths = Paths()
    written = write_review(paths, sample_plans(), sample_summary())
    assert written == list(review_paths(paths.plan)) == paths.written
    return load_workbook(written[0])


def _fill(cell) -> str:
    return cell.fill.fgColor.rgb[-6:]


def test_the_workbook_has_summary_changes_kept_and_problems_sheets(workbook):
    assert workbook.sheetnames == ["Summary", "Changes", "Kept", "Problems"]
    summary = {row[0]: row[1] for row in workbook["Summary"].iter_rows(min_row=2, values_only=True)}
    assert summary["changes by field"] == "Email 2 · City 1 · Tags +2 \u22121 · 1 new client(s)"
    assert summary["time at the per-minute limit"] == "about 42 s at 10/min"
    assert summary["days of budget"] == "1 (480 of 500 left today)"
    assert summary["option --tags"] == "replace"
    kept = workbook["Kept"]
    assert [c.value for c in kept[2]][:6] == [5, 13, "Una Changed", "City", "Paris", "Bergen"]
    problems = workbook["Problems"]
    assert [c.value for c in problems[2]][:4] == [7, "Email", "'=1+1", "email_shape"]    # guarded


def test_changed_cells_are_filled_with_the_old_value_in_a_comment(workbook):
    ws = workbook["Changes"]
    header = [c.value for c in ws[1]]
    assert header == ["ClientId", "name", "action", "row", "FirstName", "LastName", "Email", "City",
                      "PostalCode", "Tags", "note"]
    col = {name: i for i, name in enumerate(header)}
    first, conflict, create, email_only = (list(ws.iter_rows(min_row=r, max_row=r))[0] for r in (2, 3, 4, 5))

    email = first[col["Email"]]
    assert email.value == "b@example.org" and _fill(email) == CHANGE_FILL
    assert email.comment.text == "IntakeQ now: a@example.org"
    assert first[col["name"]].value == SCRIPT_NAME
    assert first[col["Tags"]].value == "add: VIP, New; remove: Old"
    assert first[col["PostalCode"]].value is None                       # not changed for this client

    cell = conflict[col["PostalCode"]]
    assert cell.value == "02135" and _fill(cell) == CONFLICT_FILL
    assert all(part in cell.comment.text for part in ("export: 02134", "file: 02135", "IntakeQ now: 02139"))
    assert _fill(conflict[col["action"]]) == CONFLICT_FILL

    assert create[col["action"]].value == "create" and _fill(create[col["action"]]) == CREATE_FILL
    assert create[col["FirstName"]].value == "Nia" and create[col["ClientId"]].value is None
    assert email_only[col["ClientId"]].value == 14


def test_the_workbook_is_frozen_filtered_sized_and_formulas_stay_text(workbook):
    ws = workbook["Changes"]
    assert ws.freeze_panes == "C2"
    assert ws.auto_filter.ref == "A1:K5"
    assert all(c.font.b for c in ws[1])
    assert ws.column_dimensions["B"].width >= len(SCRIPT_NAME)
    city = ws.cell(row=2, column=[c.value for c in ws[1]].index("City") + 1)
    assert city.data_type == "s" and city.value == "'" + HYPERLINK        # never a formula
    for name in ("Summary", "Kept", "Problems"):
        assert workbook[name].freeze_panes and workbook[name].auto_filter.ref.startswith("A1:")


def test_a_plan_without_warnings_has_no_problems_sheet(tmp_path):
    from etl.importer.review_xlsx import write_workbook

    path = write_workbook(tmp_path / "p.xlsx", build_review(sample_plans()[:1], sample_summary(problems=[])))
    assert load_workbook(path).sheetnames == ["Summary", "Changes", "Kept"]


# --------------------------------------------------------------------------- the page (as text)


def test_the_page_escapes_every_value_and_names_no_url():
    page = render_page(build_review(sample_plans(), sample_summary()))

    assert page.count("<script") == 1                     # ours, at the end
    assert "&lt;script&gt;document.title=" in page
    assert page.count("://") == page.count("http://example.invalid/x") == 1   # only the client's text
    assert "&#x27;=HYPERLINK(&quot;http://example.invalid/x&quot;" in page   # escaped, and guarded
    assert "src=" not in page and "href=" not in page and "url(" not in page and "@import" not in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in page


class NameCells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.names, self._open = [], False

    def handle_starttag(self, tag, attrs):
        self._open = tag == "td" and dict(attrs).get("class") == "name"
        if self._open:
            self.names.append("")

    def handle_endtag(self, tag):
        self._open = False

    def handle_data(self, data):
        if self._open:
            self.names[-1] += data


@settings(max_examples=60, deadline=None)
@given(name=st.text(st.characters(blacklist_categories=("Cs",)), max_size=40))
def test_any_name_reads_back_from_the_page_as_the_same_text(name):
    page = render_page(build_review([D.RowPlan(2, 11, D.UPDATE, name=name, changes=[D.Change("City", "a", "b")])],
                                    sample_summary()))
    cells = NameCells()
    cells.feed(page)
    assert cells.names == [guard(name) if name else ""]
    assert page.count("<script") == 1


def test_the_page_shows_at_most_the_cell_limit_and_says_so():
    model = build_review(sample_plans(), sample_summary())
    page = render_page(model, limit=4)

    assert 'data-clients="2" data-cells="4"' in page      # whole clients: 3 + 1 cells, the next has 2
    assert "the first 4 of 7 changed cells (2 of 4 clients); the workbook beside it holds them all" in page
    assert 'id="cut"' not in render_page(model)
    assert "No client changes" in render_page(build_review([D.RowPlan(2, 1, D.UNCHANGED)], sample_summary()))


# --------------------------------------------------------------------------- through the CLI


def edited_export(run_cli, sandbox, tmp_path) -> tuple[Path, list[dict]]:
    """An export with three edited rows: an email, a city staff changed too (a conflict), a
    tag; the first client's name in IntakeQ holds a <script>."""
    path = export_csv(run_cli, tmp_path / "export")
    header, rows = read_rows(path)
    rows[0]["Email"] = "reviewed@example.org"
    rows[1]["City"] = "AdminCity"
    rows[2]["Tags"] = "reviewed"
    write_rows(path, header, rows)
    sandbox.store.staff_edit(int(rows[0]["ClientId"]), Name=SCRIPT_NAME)
    sandbox.store.staff_edit(int(rows[1]["ClientId"]), City="StaffCity")
    return path, rows


def test_every_import_writes_the_review_files_beside_the_plan(sandbox, run_cli, tmp_path):
    path, rows = edited_export(run_cli, sandbox, tmp_path)

    result = run_cli("import", path, "--dry-run", "--json")

    assert result.exit_code == 0, result.output
    folder = path.parent
    workbook, page = folder / "clients.plan.xlsx", folder / "clients.plan.html"
    assert json.loads(result.stdout)["files"] == [str(folder / "clients.plan.csv"), str(workbook), str(page)]
    for file in (workbook, page):
        assert file.stat().st_mode & 0o777 == 0o600, file
    lines = result.stderr.splitlines()
    assert "changes by field: Email 1 · Tags +1" in lines
    assert f"review: {workbook} and {page}" == lines[-2]      # then "dry run: ..."
    book = load_workbook(workbook)
    assert [c.value for c in book["Changes"]["A"]][1:] == [int(rows[0]["ClientId"]), int(rows[1]["ClientId"]),
                                                           int(rows[2]["ClientId"])]
    kept = [[c.value for c in row] for row in book["Kept"].iter_rows(min_row=2)]
    assert kept == [[2, int(rows[0]["ClientId"]), SCRIPT_NAME, "Name", SCRIPT_NAME, rows[0]["Name"],
                     "changed in IntakeQ since the export (a staff edit): IntakeQ's value stays"]]


def test_no_review_writes_only_the_plan(sandbox, run_cli, tmp_path):
    path, _ = edited_export(run_cli, sandbox, tmp_path)

    result = run_cli("import", path, "--dry-run", "--no-review", "--json")

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["files"] == [str(path.parent / "clients.plan.csv")]
    assert not (path.parent / "clients.plan.xlsx").exists() and not (path.parent / "clients.plan.html").exists()
    assert "review:" not in result.stderr


def test_a_review_file_may_not_replace_the_input_file(sandbox, run_cli, tmp_path):
    """--plan clients.csv beside an edited clients.xlsx: the review workbook would be the
    workbook itself. Refused before anything is written or sent."""
    assert run_cli("export", "--out", tmp_path / "export", "--format", "xlsx", "--quiet").exit_code == 0
    workbook = tmp_path / "export" / "clients.xlsx"
    before = workbook.read_bytes()
    sandbox.log.clear()

    result = run_cli("import", workbook, "--dry-run", "--plan", tmp_path / "export" / "clients.csv")

    assert result.exit_code == 1
    assert f"the review workbook {workbook} is the input file itself" in result.output
    assert workbook.read_bytes() == before and sandbox.log == []


# --------------------------------------------------------------------------- the page in a browser


class PageCounts(HTMLParser):
    """What the browser's DOM holds: client rows, changed cells, conflicts, scripts."""

    def __init__(self):
        super().__init__()
        self.clients = self.cells = self.conflicts = self.scripts = 0
        self.names: list[str] = []
        self.shown = ""
        self._in = None

    def handle_starttag(self, tag, attrs):
        classes = (dict(attrs).get("class") or "").split()
        if tag == "tr" and "client" in classes:
            self.clients += 1
        if tag == "td" and "cell" in classes:
            self.cells += 1
            self.conflicts += "conflict" in classes
        if tag == "script":
            self.scripts += 1
        self._in = "name" if tag == "td" and "name" in classes else \
            "shown" if dict(attrs).get("id") == "shown" else None

    def handle_data(self, data):
        if self._in == "name":
            self.names.append(data)
        elif self._in == "shown":
            self.shown += data

    def handle_endtag(self, tag):
        self._in = None


def chromium(*args: str, profile: Path) -> str:
    """Headless Chromium, network off (a dead proxy, no background traffic); stdout."""
    command = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--proxy-server=127.0.0.1:9", f"--user-data-dir={profile}", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.skipif(shutil.which("chromium") is None,
                    reason="headless Chromium is not installed (apt-get install chromium; CI installs it)")
def test_the_page_in_a_headless_browser_shows_the_changes_marks_the_conflict_and_runs_no_client_script(
        sandbox, run_cli, tmp_path):
    path, rows = edited_export(run_cli, sandbox, tmp_path)
    result = run_cli("import", path, "--dry-run")
    assert result.exit_code == 0, result.output
    url = (path.parent / "clients.plan.html").resolve().as_uri()

    dom = PageCounts()
    dom.feed(chromium("--dump-dom", url, profile=tmp_path / "profile"))

    assert (dom.clients, dom.cells, dom.conflicts) == (3, 3, 1)
    assert dom.scripts == 1                                   # the page's own; the name's is text
    assert SCRIPT_NAME in dom.names
    assert dom.shown == "3 of 3 client(s) shown"              # the page's script ran (under its CSP)
    narrowed = PageCounts()
    narrowed.feed(chromium("--dump-dom", url + "#filter=StaffCity", profile=tmp_path / "profile"))
    assert narrowed.shown == "1 of 3 client(s) shown"

    shot = ROOT / "build" / "plan-review.png"                 # the CI artifact
    shot.parent.mkdir(exist_ok=True)
    shot.unlink(missing_ok=True)
    chromium(f"--screenshot={shot}", "--window-size=1280,900", url, profile=tmp_path / "profile")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
