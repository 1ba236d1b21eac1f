"""The review files of a plan: what an admin looks at before confirming the writes.

Beside the plan CSV (one line per field change) every import and undo writes
``<plan>.xlsx`` and ``<plan>.html`` (``clients.plan.csv`` → ``clients.plan.xlsx``,
``clients.plan.html``): one row per client that changes, one column per changed field,
the new value in a coloured cell and the old one beside it (a cell comment, or struck
through), conflicts in another colour, and a summary on top. ::

    plans ──▶ build_review(plans, summary) ──▶ ReviewModel (pure data)
                                                  ├──▶ review_xlsx.write_workbook
                                                  └──▶ review_html.write_page

:func:`write_review` is the one entry point (import and undo call it). The files hold
client values, so they are written like the plan: owner-only (0600), atomically, text
cells formula-guarded; nothing here is ever logged.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .. import fields as F
from ..clock import format_duration
from . import diff as D
from .reports import DAMAGE_NOTES, plan_cell

# What a changed cell is: the kinds the workbook fills and the page highlights.
CHANGE, CONFLICT, CREATE, TAGS = "change", "conflict", "create", "tags"

PAGE_CELL_LIMIT = 50_000     # changed cells shown in the page; the workbook holds all
MINUS = "\u2212"


@dataclass
class ReviewSummary:
    """What the plan's numbers are, besides the plans themselves (the terminal's plan block).

    ``counts`` by action (None: counted from the plans); ``problems`` are the validation
    warnings (``etl.codec.model.Problem``) for the Problems sheet."""

    command: str = "import"            # what made the plan: import, undo
    source: str = ""                   # the file imported (undo: what is undone)
    dry_run: bool = False
    counts: dict[str, int] | None = None
    reads: int = 0
    saves: int = 0
    tag_calls: int = 0
    seconds: float = 0.0               # the writes at the per-minute limit
    per_minute: int = 0
    remaining_today: int | None = None
    per_day: int = 0                   # 0: no daily budget
    days: int = 0
    base: str = ""                     # the base export (its id, or how it was found)
    options: dict[str, str] = field(default_factory=dict)
    problems: list = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)   # IntakeQ field -> source column (--map)

    @classmethod
    def from_estimate(cls, est: dict, settings, **fields) -> "ReviewSummary":
        """From an import's ``estimate`` dict and the run's settings (limits)."""
        return cls(reads=est.get("reads", 0), saves=est.get("saves", 0), tag_calls=est.get("tag_calls", 0),
                   seconds=est.get("seconds", 0.0), remaining_today=est.get("remaining_today"),
                   days=est.get("days", 0), per_minute=settings.max_per_minute,
                   per_day=settings.max_per_day, **fields)


@dataclass(frozen=True)
class Cell:
    """One changed cell of a client: ``new`` is what is sent (a conflict: the file's value,
    not sent), ``old`` what IntakeQ holds now ("" for a new client)."""

    field: str
    kind: str             # change | conflict | create | tags
    new: str
    old: str = ""
    base: str = ""        # a conflict: the exported value

    @property
    def comment(self) -> str:
        if self.kind == CONFLICT:
            return (f"conflict, not sent: changed in the file and in IntakeQ\nexport: {self.base}\n"
                    f"file: {self.new}\nIntakeQ now: {self.old}")
        if self.kind == CREATE:
            return "new client"
        if self.kind == TAGS:
            return self.old       # the tag calls, spelt out
        return f"IntakeQ now: {self.old}"


@dataclass
class ClientChange:
    """A client that changes (or conflicts): one row of the Changes sheet and of the page."""

    row: int
    client_id: int | None
    name: str
    action: str
    note: str
    cells: list[Cell]

    def cell(self, name: str) -> Cell | None:
        return next((c for c in self.cells if c.field == name), None)


@dataclass(frozen=True)
class KeptCell:
    """A cell the file changed that is not sent: kept as IntakeQ or the export holds it."""

    row: int
    client_id: int | None
    name: str
    field: str
    kept: str             # the value that stays
    file: str             # the file's cell
    why: str


@dataclass(frozen=True)
class ProblemLine:
    row: int | None
    column: str
    value: str
    check: str
    severity: str
    message: str


@dataclass
class ReviewModel:
    title: str
    summary: list[tuple[str, str]]
    by_field: str
    fields: list[str]                 # the changed fields: one column each, in order of appearance
    clients: list[ClientChange]
    kept: list[KeptCell]
    problems: list[ProblemLine]
    sources: dict[str, str] = field(default_factory=dict)   # IntakeQ field -> source column (--map)

    def heading(self, name: str) -> str:
        """A changed field's column heading: the IntakeQ field, and with --map the source
        column it came from (``DateOfBirth ← DOB``)."""
        source = self.sources.get(name)
        return f"{name} \u2190 {source}" if source and source != name else name

    @property
    def n_cells(self) -> int:
        return sum(len(c.cells) for c in self.clients)


# --------------------------------------------------------------------------- the model


def build_review(plans: Iterable[D.RowPlan], summary: ReviewSummary) -> ReviewModel:
    """Plans → what the review files show. Pure: no I/O, the plans are not changed."""
    plans = list(plans)
    clients = [c for c in (_client_change(p) for p in plans) if c is not None]
    problems = [_problem_line(p) for p in summary.problems]
    problems += [ProblemLine(p.row, "ClientId", str(p.client_id or ""), "not_found", "error", p.message)
                 for p in plans if p.action == D.FAILED]
    by_field = changes_by_field(plans)
    return ReviewModel(
        title=f"{summary.command} plan" + (f": {summary.source}" if summary.source else ""),
        summary=summary_lines(plans, summary, by_field),
        by_field=by_field,
        fields=_field_order(clients),
        clients=clients,
        kept=[k for p in plans for k in _kept_cells(p)],
        problems=problems,
        sources=dict(summary.sources),
    )


def changes_by_field(plans: Iterable[D.RowPlan]) -> str:
    """The plan's changes to existing clients by field, e.g. ``Email 3 · PostalCode 1 ·
    Tags +2 −1`` (and ``· 2 new client(s)``); ``nothing`` when there is none."""
    counts: dict[str, int] = {}
    adds = removes = creates = 0
    for p in plans:
        if p.action == D.CREATE:
            creates += 1
            continue
        for c in p.changes:
            counts[c.field] = counts.get(c.field, 0) + 1
        adds += len(p.tag_adds)
        removes += len(p.tag_removes)
    parts = [f"{name} {n}" for name, n in counts.items()]
    if adds or removes:
        parts.append("Tags " + " ".join(x for x in (f"+{adds}" if adds else "",
                                                     f"{MINUS}{removes}" if removes else "") if x))
    if creates:
        parts.append(f"{creates} new client(s)")
    return " · ".join(parts) or "nothing"


def summary_lines(plans: list[D.RowPlan], summary: ReviewSummary, by_field: str) -> list[tuple[str, str]]:
    """The Summary sheet and the top of the page: (label, value) pairs, all text."""
    counts = summary.counts if summary.counts is not None else _count_actions(plans)
    budget = ("no daily budget" if summary.per_day == 0 or summary.remaining_today is None
              else f"{summary.remaining_today} of {summary.per_day} left today")
    lines = [
        ("plan of", summary.command + (" (dry run: nothing is sent)" if summary.dry_run else "")),
        ("file", summary.source),
        ("clients by action", ", ".join(f"{n} {a}" for a, n in sorted(counts.items())) or "nothing"),
        ("changes by field", by_field),
        ("reads done", str(summary.reads)),
        ("writes to send", f"{summary.saves + summary.tag_calls} ({summary.saves} client save(s) + "
                           f"{summary.tag_calls} tag call(s))"),
        ("time at the per-minute limit", f"about {format_duration(summary.seconds)} at {summary.per_minute}/min"
         if summary.per_minute else f"about {format_duration(summary.seconds)}"),
        ("days of budget", f"{summary.days} ({budget})"),
        ("base export", summary.base or "none"),
    ]
    lines += [(f"option {name}", str(value)) for name, value in summary.options.items()]
    return [(label, value) for label, value in lines if value != ""]


def _count_actions(plans: list[D.RowPlan]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for p in plans:
        counts[p.action] = counts.get(p.action, 0) + 1
    return counts


def _client_change(p: D.RowPlan) -> ClientChange | None:
    """The row of a client whose plan changes or conflicts; None for one that does not."""
    if not (p.changes or p.conflicts or p.tag_adds or p.tag_removes) and p.action != D.CONFLICT:
        return None            # most rows of a plan: nothing to show
    kind = CREATE if p.action == D.CREATE else CHANGE
    cells = [Cell(c.field, kind, text(c.new), text(c.old)) for c in p.changes]
    cells += [Cell(c.field, CONFLICT, text(c.file), text(c.live), text(c.base)) for c in p.conflicts]
    if p.tag_adds or p.tag_removes:
        calls = [f"add tag: {t}" for t in p.tag_adds] + [f"remove tag: {t}" for t in p.tag_removes]
        cells.append(Cell("Tags", TAGS, tag_calls_text(p.tag_adds, p.tag_removes), "\n".join(calls)))
    if not cells and p.action != D.CONFLICT:
        return None
    return ClientChange(p.row, p.client_id, p.name or _name_of(p), p.action, p.message, cells)


def tag_calls_text(adds, removes) -> str:
    """A row's tag calls in one cell: ``add: VIP, New; remove: Old`` (never a leading ``+``
    or ``-``, which a spreadsheet would take for a formula)."""
    parts = [f"add: {', '.join(adds)}" if adds else "", f"remove: {', '.join(removes)}" if removes else ""]
    return "; ".join(x for x in parts if x)


def _name_of(p: D.RowPlan) -> str:
    return D.display_name(p.body) if p.body else ""


def _field_order(clients: list[ClientChange]) -> list[str]:
    """Every changed field once, in the export's column order; Tags last."""
    seen = {cell.field for c in clients for cell in c.cells}
    return [f for f in F.order_columns(seen) if f != "Tags"] + (["Tags"] if "Tags" in seen else [])


def _kept_cells(p: D.RowPlan) -> list[KeptCell]:
    if not (p.staff_kept or p.kept or p.damage or p.ignored):
        return []
    name = p.name or _name_of(p)
    out = [KeptCell(p.row, p.client_id, name, s.field, text(s.live), text(s.file),
                    "changed in IntakeQ since the export (a staff edit): IntakeQ's value stays")
           for s in p.staff_kept]
    out += [KeptCell(p.row, p.client_id, name, k.field, text(k.written), text(k.file),
                     "changed in IntakeQ by an earlier import; --prefer file sets it back") for k in p.kept]
    out += [KeptCell(p.row, p.client_id, name, d.column, text(d.base_value), text(d.file_value),
                     DAMAGE_NOTES[d.kind]) for d in p.damage]
    out += [KeptCell(p.row, p.client_id, name, i.field, text(i.old), text(i.new),
                     "read-only column: ignored, never sent") for i in p.ignored]
    return out


def _problem_line(p) -> ProblemLine:
    return ProblemLine(p.row, p.column or "", text(p.value), p.check, p.severity, p.message)


def text(v: Any) -> str:
    """A plan value as the review shows it (lists joined with ``; ``, blanks empty)."""
    v = plan_cell(v)
    return v if isinstance(v, str) else str(v)


# --------------------------------------------------------------------------- the files


def review_paths(plan: Path) -> tuple[Path, Path]:
    """The workbook and the page of a plan file: ``clients.plan.csv`` → ``clients.plan.xlsx``,
    ``clients.plan.html``."""
    plan = Path(plan)
    return plan.with_suffix(".xlsx"), plan.with_suffix(".html")


def write_review(paths, plans: Iterable[D.RowPlan], summary: ReviewSummary) -> list[Path]:
    """Write the review workbook and page beside ``paths.plan`` (0600, atomic) and note them
    in ``paths.written``; nothing when ``paths.review`` is off (``--no-review``). Returns
    the files written."""
    if not getattr(paths, "review", True):
        return []
    from .review_html import write_page
    from .review_xlsx import write_workbook

    model = build_review(plans, summary)
    workbook, page = review_paths(paths.plan)
    written = [write_workbook(workbook, model), write_page(page, model)]
    for path in written:
        paths.wrote(path)
    return written
