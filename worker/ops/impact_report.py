"""Write a diff's impact figures (``Impact.figures()``) as a table, CSV, JSON or one HTML page.

Each writer is pure (figures in, text out); ``write_report`` only puts the three files on disk.

Every writer reads the same figures, so the table, the spreadsheet and the page never disagree. The
HTML page is self-contained (inline CSS, inline SVG charts, no script, no font, no link) and escapes
every value: criteria and outcomes were read from topics.
"""

from __future__ import annotations

import csv
import io
import json
from html import escape as _html
from typing import TYPE_CHECKING, Any

from worker.ops.escaping import printable

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "CSV_COLUMNS",
    "headline",
    "impact_csv",
    "impact_html",
    "impact_json",
    "impact_lines",
    "write_report",
]

CSV_COLUMNS = (
    "table", "cause", "criterion", "reason", "before", "after", "week",
    "claims", "approvals_gained", "approvals_lost", "members", "prescribers",
)  # fmt: skip
_COUNTS = ("claims", "approvals_gained", "approvals_lost", "members", "prescribers")


def escape(value: object) -> str:
    """Return ``value`` for the page: unprintable characters escaped, then HTML-escaped (quotes too)."""
    return _html(printable(value), quote=True)


def _members(value: int | None) -> str:
    return "n/a" if value is None else str(value)


def headline(figures: dict[str, Any]) -> str:
    """Return the headline: direct changes first, then the on-file knock-on effects, then the rest."""
    causes = {row["cause"]: row["claims"] for row in figures["causes"]}
    return (
        f"{figures['changed']} changed: {figures['direct']} direct (criteria {causes['CRITERIA']}, "
        f"reference data {causes['REFERENCE_DATA']}), {figures['on_file']} on file after them, "
        f"{figures['other']} other"
    )


def impact_lines(figures: dict[str, Any]) -> list[str]:
    """Return the impact table a diff prints (values escaped: they were read from topics)."""
    total = figures["total"]
    lines = [
        (
            f"approvals gained {total['approvals_gained']}, lost {total['approvals_lost']}; members affected "
            f"{_members(total['members'])}; prescribers affected {total['prescribers']}"
        )
    ]
    if not figures["members_counted"]:
        lines[0] += " (members: n/a, no member pseudonym without CLAIMS_AUTHORIZATIONS_TOPIC)"
    lines.append("by cause: claims, gained, lost, members, prescribers")
    lines.extend(
        f"  {row['cause']}: {row['claims']}, +{row['approvals_gained']}, -{row['approvals_lost']}, "
        f"{_members(row['members'])}, {row['prescribers']}"
        for row in figures["causes"]
        if row["claims"]
    )
    criteria = figures["criteria"]
    if criteria:
        lines.append("by criterion and reason: claims, gained, lost, members, prescribers")
    lines.extend(
        f"  [{row['cause']}] {printable(row['criterion'])}: {printable(row['reason'])}: {row['claims']}, "
        f"+{row['approvals_gained']}, -{row['approvals_lost']}, {_members(row['members'])}, "
        f"{row['prescribers']}"
        for row in criteria
    )
    return lines


def _csv_rows(figures: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = [{"table": "total", "cause": "ALL", **figures["total"]}]
    rows += [{"table": "cause", **row} for row in figures["causes"]]
    rows += [{"table": "transition", **row} for row in figures["transitions"]]
    rows += [{"table": "criterion", **row} for row in figures["criteria"]]
    rows += [{"table": "week", **row} for row in figures["weeks"]]
    return rows


def _cell(value: object) -> object:
    """Return a CSV cell: ``""`` for none; text a spreadsheet would run as a formula gets a leading quote."""
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in {"=", "+", "@", "\t", "\r"}:
        return "'" + value
    return value


def impact_csv(figures: dict[str, Any]) -> str:
    """Return the figures as one long CSV table (``table`` names the section), for a spreadsheet pivot."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, restval="", lineterminator="\n")
    writer.writeheader()
    for row in _csv_rows(figures):
        writer.writerow({key: _cell(value) for key, value in row.items()})
    return out.getvalue()


def impact_json(figures: dict[str, Any]) -> str:
    """Return the figures as one JSON document."""
    return json.dumps(figures, indent=2, sort_keys=True) + "\n"


_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:60em}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #bbb;padding:.25em .6em;text-align:left}
td.n{text-align:right}th{background:#eee}.headline{font-size:1.15em;font-weight:600}
.note{color:#555;font-size:.9em}svg text{font-size:12px;font-family:system-ui,sans-serif}
"""
_CAUSES_NOTE = (
    "Direct changes: CRITERIA, REFERENCE_DATA (and CONTINUITY_OF_CARE, not assigned yet). ON_FILE: paid"
    " or not paid on file after an earlier changed decision, or store timing across partitions."
)
_COLOURS = {
    "CRITERIA": "#1f77b4", "REFERENCE_DATA": "#9467bd", "CONTINUITY_OF_CARE": "#8c564b",
    "ON_FILE": "#ff7f0e", "NO_BASELINE": "#7f7f7f", "INPUT": "#bcbd22",
}  # fmt: skip


def _bars(rows: list[tuple[str, int, str]], *, label_width: int = 330) -> str:
    """Return an inline SVG of horizontal bars: ``(label, value, cause)`` per bar, coloured by cause."""
    if not rows:
        return '<p class="note">none</p>'
    top = max(value for _label, value, _cause in rows) or 1
    width, bar_h = 300, 18
    parts = [
        (
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_width + width + 60}" '
            f'height="{len(rows) * (bar_h + 6) + 6}" role="img">'
        )
    ]
    for i, (label, value, cause) in enumerate(rows):
        y = 4 + i * (bar_h + 6)
        w = max(1, round(width * value / top))
        colour = _COLOURS.get(cause, "#444")
        shown = label if len(label) <= label_width // 7 else label[: label_width // 7 - 1] + "\u2026"
        parts.append(
            f'<text x="{label_width - 6}" y="{y + 13}" text-anchor="end">{escape(shown)}'
            f"<title>{escape(label)}</title></text>"
            f'<rect x="{label_width}" y="{y}" width="{w}" height="{bar_h}" fill="{colour}">'
            f"<title>{escape(cause)}: {value}</title></rect>"
            f'<text x="{label_width + w + 4}" y="{y + 13}">{value}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    if not rows:
        return '<p class="note">none</p>'
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            value = row.get(c)
            text = "n/a" if value is None and c == "members" else ("" if value is None else str(value))
            cls = ' class="n"' if c in _COUNTS else ""
            cells.append(f"<td{cls}>{escape(text)}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def impact_html(figures: dict[str, Any], title: str) -> str:
    """Return one self-contained HTML page: headline, tables by cause and criterion, three SVG charts."""
    total = figures["total"]
    note = (
        "Members are counted by their keyed pseudonym only."
        if figures["members_counted"]
        else "Members: n/a (no member pseudonym without CLAIMS_AUTHORIZATIONS_TOPIC and its secret)."
    )
    transitions = [
        (f"{r['before']} -> {r['after']} [{r['cause']}]", r["claims"], r["cause"])
        for r in figures["transitions"]
    ]
    criteria = [(f"{r['criterion']}: {r['reason']}", r["claims"], r["cause"]) for r in figures["criteria"]]
    weeks = [(f"{r['week']} {r['cause']}", r["claims"], r["cause"]) for r in figures["weeks"]]
    return "".join(
        [
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
            f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
            f"<h1>{escape(title)}</h1>",
            f'<p class="headline">{escape(headline(figures))}</p>',
            (
                f"<p>{figures['decided']} claims decided, {figures['unchanged']} unchanged. Approvals gained "
                f"{total['approvals_gained']}, lost {total['approvals_lost']}; members affected "
                f"{escape(_members(total['members']))}; prescribers affected {total['prescribers']}.</p>"
            ),
            f'<p class="note">{escape(note)} {_CAUSES_NOTE}</p>',
            "<h2>By cause</h2>",
            _table([r for r in figures["causes"] if r["claims"]], ("cause", *_COUNTS)),
            "<h2>Outcome transitions</h2>",
            _bars(transitions),
            "<h2>Changes by criterion and reason</h2>",
            _bars(criteria),
            _table(figures["criteria"], ("cause", "criterion", "reason", *_COUNTS)),
            "<h2>Changes by week</h2>",
            _bars(weeks, label_width=200),
            "</body></html>\n",
        ]
    )


def write_report(prefix: Path, figures: dict[str, Any], title: str) -> None:
    """Write ``figures`` as ``prefix``.html, .csv and .json (UTF-8), creating the folder: the one I/O here."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    for suffix, text in (
        (".html", impact_html(figures, title)),
        (".csv", impact_csv(figures)),
        (".json", impact_json(figures)),
    ):
        prefix.with_name(prefix.name + suffix).write_text(text, encoding="utf-8")
