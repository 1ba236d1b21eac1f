"""The review page (``clients.plan.html``) of a :class:`~etl.importer.review.ReviewModel`.

One self-contained file: inline CSS, a few lines of inline JavaScript for the filter box,
no font, image, script or link from anywhere else (no URL at all: the page is opened from
disk, beside health data). A Content-Security-Policy allows nothing but the page's own
style and its one script (by hash), so even a value that escaped its escaping could not
run or load anything; and every value is ``html.escape``'d (client data can hold
``<script>``). The summary is on top; the table has one row per changed client, old →
new per cell (old struck through, new highlighted), conflicts marked. Printing hides the
filter box and keeps the colours. At most :data:`PAGE_CELL_LIMIT` changed cells are shown
(the page says so; the workbook holds all).

The filter box's initial text can be given in the address: ``clients.plan.html#filter=Smith``.
"""
from __future__ import annotations

import base64
import hashlib
from html import escape
from pathlib import Path

from ..codec.text import guard
from ..state.files import write_text_atomic
from .review import CHANGE, CONFLICT, PAGE_CELL_LIMIT, ClientChange, ReviewModel

STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.3em; margin: 0 0 .6em; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 3px 6px; vertical-align: top; text-align: left; }
th { background: #eee; position: sticky; top: 0; }
.summary th { position: static; }
.changes td { white-space: pre-wrap; max-width: 28em; overflow-wrap: break-word; }
.changes td.id, .changes td.action, .changes td.row { white-space: nowrap; }
del { color: #900; background: #fde8e8; }
ins { text-decoration: none; background: #c6efce; font-weight: 600; }
td.conflict { background: #ffc7ce; outline: 2px solid #c00; }
td.conflict .why { display: block; font-size: .85em; color: #900; }
td.create ins { background: #bdd7ee; }
td.tags ins { background: #ffeb9c; }
tr.action-create td.action { background: #bdd7ee; }
tr.action-conflict td.action { background: #ffc7ce; font-weight: 600; }
.legend span { padding: 0 .4em; margin: 0 .3em 0 1em; }
.legend span:first-child { margin-left: 0; }
.note { background: #fff3cd; border: 1px solid #e0c060; padding: .5em; }
#filter { font: inherit; padding: 4px; width: 24em; margin: .8em 0; }
#shown { margin-left: .6em; color: #555; }
@media print {
  #filter, #shown { display: none; }
  body { margin: 0; font-size: 10px; }
  th { position: static; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  tr { break-inside: avoid; }
}
"""

SCRIPT = """
(function () {
  var box = document.getElementById('filter'), shown = document.getElementById('shown');
  var rows = Array.prototype.slice.call(document.querySelectorAll('tr.client'));
  function apply() {
    var q = box.value.trim().toLowerCase(), n = 0;
    rows.forEach(function (r) {
      var hit = !q || r.textContent.toLowerCase().indexOf(q) >= 0;
      r.hidden = !hit; if (hit) { n++; }
    });
    shown.textContent = n + ' of ' + rows.length + ' client(s) shown';
  }
  var m = /^#filter=(.*)$/.exec(location.hash);
  if (m) { box.value = decodeURIComponent(m[1]); }
  box.addEventListener('input', apply);
  apply();
})();
"""


def _script_hash(script: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii")


CSP = (f"default-src 'none'; style-src 'unsafe-inline'; script-src '{_script_hash(SCRIPT)}'; "
       "img-src 'none'; connect-src 'none'; form-action 'none'; base-uri 'none'")


def write_page(path: Path, model: ReviewModel, *, limit: int = PAGE_CELL_LIMIT) -> Path:
    write_text_atomic(path, render_page(model, limit=limit))
    return Path(path)


def render_page(model: ReviewModel, *, limit: int = PAGE_CELL_LIMIT) -> str:
    clients, cells = _within(model.clients, limit)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="referrer" content="no-referrer">',
        f"<title>{escape(model.title)}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{escape(model.title)}</h1>",
        _summary_table(model),
        _legend(),
    ]
    if len(clients) < len(model.clients):
        parts.append(f'<p class="note" id="cut">This page shows the first {cells:,} of {model.n_cells:,} changed '
                     f"cells ({len(clients):,} of {len(model.clients):,} clients); the workbook beside it "
                     "holds them all.</p>")
    parts += [
        '<input id="filter" type="search" placeholder="Filter: name, ClientId, field, value" '
        'aria-label="Filter the clients" autocomplete="off"><span id="shown"></span>',
        _changes_table(model, clients, cells),
        _small_table("Kept: not sent", "kept", ["row", "ClientId", "name", "field", "kept value", "file value", "why"],
                     [[k.row, k.client_id, k.name, k.field, k.kept, k.file, k.why] for k in model.kept], limit),
        _small_table("Problems", "problems", ["row", "column", "value", "check", "severity", "message"],
                     [[p.row, p.column, p.value, p.check, p.severity, p.message] for p in model.problems], limit),
        f"<script>{SCRIPT}</script>",
        "</body></html>",
        "",
    ]
    return "\n".join(parts)


def _within(clients: list[ClientChange], limit: int) -> tuple[list[ClientChange], int]:
    """The first clients whose cells add up to at most ``limit`` (whole clients only)."""
    shown, cells = [], 0
    for client in clients:
        if cells + len(client.cells) > limit:
            break
        shown.append(client)
        cells += len(client.cells)
    return shown, cells


def _summary_table(model: ReviewModel) -> str:
    rows = "".join(f"<tr><th scope=\"row\">{escape(label)}</th><td>{escape(value)}</td></tr>"
                   for label, value in model.summary)
    return f'<table class="summary" id="summary">{rows}</table>'


def _legend() -> str:
    return ('<p class="legend">'
            '<span><del>old</del> \u2192 <ins>new</ins>: IntakeQ now, then what is sent</span>'
            '<span style="background:#ffc7ce">conflict</span>changed in the file and in IntakeQ: not sent '
            "(--prefer file takes the file's value)"
            '<span style="background:#bdd7ee">create</span>a new client</p>')


def _changes_table(model: ReviewModel, clients: list[ClientChange], cells: int) -> str:
    if not model.clients:
        return '<h2>Changes</h2><p id="nothing">No client changes: IntakeQ already matches the file.</p>'
    headings = ["ClientId", "name", "action", "row", *map(model.heading, model.fields), "note"]
    head = "".join(f"<th>{escape(h)}</th>" for h in headings)
    body = "\n".join(_client_row(model.fields, c) for c in clients)
    return (f'<h2>Changes: {len(model.clients):,} client(s), {model.n_cells:,} cell(s)</h2>'
            f'<table class="changes" id="changes" data-clients="{len(clients)}" data-cells="{cells}">'
            f"<thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>")


def _client_row(fields: list[str], client: ClientChange) -> str:
    tds = [_td(client.client_id, "id"), _td(client.name, "name"), _td(client.action, "action"),
           _td(client.row, "row")]
    for name in fields:
        cell = client.cell(name)
        if cell is None:
            tds.append("<td></td>")
            continue
        new = f"<ins>{_value(cell.new)}</ins>"
        if cell.kind == CONFLICT:
            content = (f"<del>{_value(cell.old)}</del> \u2192 {new}"
                       f'<span class="why">conflict: the export had {_value(cell.base) or "(blank)"}; '
                       "changed in IntakeQ too: not sent</span>")
        elif cell.kind == CHANGE:
            content = f"<del>{_value(cell.old)}</del> \u2192 {new}" if cell.old else new
        else:               # a new client's value, tag calls: nothing old to show
            content = new
        tds.append(f'<td class="cell {cell.kind}" data-field="{escape(name, quote=True)}" '
                   f'title="{_value(cell.comment)}">{content}</td>')
    tds.append(_td(client.note, "msg"))
    return f'<tr class="client action-{escape(client.action, quote=True)}">{"".join(tds)}</tr>'


def _value(v) -> str:
    """A client value in the page: guarded like the plan file (a ``=...`` copied from the page
    into a spreadsheet stays text) and escaped."""
    return escape(guard(v)) if v else ""


def _td(value, cls: str) -> str:
    return f'<td class="{cls}">{"" if value is None else _value(str(value))}</td>'


def _small_table(title: str, ident: str, header: list[str], rows: list[list], limit: int) -> str:
    if not rows:
        return ""
    shown = rows[:limit]
    more = (f'<p class="note">The first {len(shown):,} of {len(rows):,} rows; the workbook holds them all.</p>'
            if len(rows) > len(shown) else "")
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "\n".join("<tr>" + "".join(_td(v, "v") for v in row) + "</tr>" for row in shown)
    return (f"<h2>{escape(title)} ({len(rows):,})</h2>{more}"
            f'<table class="{ident}" id="{ident}"><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table>')
