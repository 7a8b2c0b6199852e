"""What the CLI prints: the per-company table, the totals, one company's card, run summaries, and the machine
outputs (CSV, JSON). Items are read from the database page by page, so a report of any size uses bounded memory.

Money is USD from the cost ledger (never recomputed here), credits are Tavily credits, tokens are input + output.

Hostile text is normal (company names, provider errors, LLM answers): everything printed through
:func:`make_console` goes through :func:`printable` (escape sequences and control characters removed), and every
CSV cell written by :func:`write_csv` through :func:`csv_safe` (OWASP CSV injection guidance).
"""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import IO, Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from services.orchestrator.store import ItemView, RunRow, RunTotals
from shared.text import csv_safe_row, printable

TIER_STYLES = {"HOT": "bold red", "WARM": "yellow", "WATCH": "cyan", "COLD": "blue"}
STATUS_STYLES = {"done": "green", "failed": "red", "skipped": "dim", "pending": "yellow", "running": "yellow"}
EXPORT_FIELDS = (
    "seq", "company", "domain", "status", "tier", "score", "category", "rationale", "evidence_urls",
    "results_kept", "results_returned", "credits", "input_tokens", "output_tokens", "cost_usd", "truncated",
    "attempts", "error",
)


def usd(x: float) -> str:
    """``$0.0123``: four decimals below a dollar (a company costs cents), two above."""
    return f"${x:,.4f}" if abs(x) < 1 else f"${x:,.2f}"


def item_status(it: ItemView) -> Text:
    label = it.status if not it.error else f"{it.status}: {it.error}"
    if it.truncated and it.status == "done":
        label += " (context truncated)"
    return Text(printable(label), style=STATUS_STYLES.get(it.status, ""))


def results_table(items: list[ItemView], title: str | None = None) -> Table:
    """Company, Tier, Score, Category, Kept/Returned, Tokens, Cost USD, Status."""
    t = Table(title=title, show_lines=False, header_style="bold")
    t.add_column("Company", overflow="fold")
    t.add_column("Tier")
    t.add_column("Score", justify="right")
    t.add_column("Category", overflow="fold")
    t.add_column("Kept/Returned", justify="right")
    t.add_column("Tokens", justify="right")
    t.add_column("Cost USD", justify="right")
    t.add_column("Status", overflow="fold")
    for it in items:
        t.add_row(
            it.company or f"(row {it.seq})",
            Text(it.tier or "", style=TIER_STYLES.get(it.tier or "", "")),
            "" if it.score is None else str(it.score),
            it.category or "",
            "" if it.returned_count is None else f"{it.kept_count}/{it.returned_count}",
            f"{it.tokens:,}" if it.tokens else "",
            usd(it.cost_usd) if it.cost_usd else "",
            item_status(it),
        )
    return t


def totals_lines(run: RunRow, totals: RunTotals, wall_seconds: float | None = None) -> list[str]:
    """The totals under the table: counts, success rate, credits, tokens, USD (ledger sum), wall time."""
    c = totals.counts
    attempted = c["done"] + c["failed"]
    rate = f"{100 * c['done'] / attempted:.1f}%" if attempted else "n/a"
    parts = [f"done {c['done']}", f"failed {c['failed']}"]
    if c["skipped"]:
        parts.append(f"skipped {c['skipped']}")
    if totals.unfinished:
        parts.append(f"not finished {totals.unfinished}")
    lines = [
        " · ".join(parts) + f" · success rate {rate}",
        f"Tavily credits {totals.credits:,} · tokens {totals.input_tokens + totals.output_tokens:,} "
        f"(in {totals.input_tokens:,} / out {totals.output_tokens:,}) · total {usd(totals.cost_usd)}",
    ]
    if wall_seconds is not None:
        lines[-1] += f" · wall {wall_seconds:.1f}s"
    return lines


def hints(run: RunRow, totals: RunTotals) -> list[str]:
    """What the user can do next with this run."""
    out = [f"run {run.id} ({run.status})"]
    if totals.unfinished:
        out.append(f"resume: vantage resume {run.id}")
    if totals.counts["failed"]:
        out.append(f"retry the failed items: vantage retry-failed {run.id}")
    out.append(f"export: vantage export {run.id} --format csv --out results.csv")
    return out


def company_card(it: ItemView) -> Panel:
    """One company, for ``vantage lookup``."""
    head = Text()
    head.append(printable(it.company), style="bold")
    if it.domain:
        head.append(f"  ({printable(it.domain)})", style="dim")
    body: list[Any] = [head]
    if it.status == "done":
        line = Text()
        line.append(it.tier or "", style=TIER_STYLES.get(it.tier or "", "bold"))
        line.append(printable(f"  score {it.score}  ·  {it.category}"))
        body += [line, Text(""), Text(printable(it.rationale or ""))]
        if it.evidence_urls:
            body.append(Text("\nEvidence:", style="bold"))
            body += [Text(printable(f"  • {u}")) for u in it.evidence_urls]
    else:
        body.append(item_status(it))
    kept = "" if it.returned_count is None else f"results kept {it.kept_count}/{it.returned_count} · "
    body.append(Text(
        f"\n{kept}credits {it.credits} · tokens {it.tokens:,} · cost {usd(it.cost_usd)}"
        + (" · context truncated" if it.truncated else ""),
        style="dim",
    ))
    return Panel(Group(*body), title="lookup", expand=False)


def run_panel(run: RunRow, totals: RunTotals) -> Panel:
    """``vantage status``: the run's state, counts and money."""
    t = Table.grid(padding=(0, 2))
    t.add_column(style="bold")
    t.add_column()
    t.add_row("run", run.id)
    if run.name:
        t.add_row("name", run.name)
    t.add_row("status", Text(run.status, style=_run_style(run.status)))
    t.add_row("items", f"{totals.total:,} — " + ", ".join(f"{k} {v:,}" for k, v in totals.counts.items() if v))
    t.add_row("cost", f"{usd(totals.cost_usd)} · Tavily credits {totals.credits:,} · tokens "
                      f"{totals.input_tokens + totals.output_tokens:,}")
    t.add_row("model", str(run.options.get("model", "")))
    if run.input_path:
        t.add_row("input", printable(run.input_path))
    if not run.input_complete:
        t.add_row("input", Text("incomplete: loading it was interrupted; start a new run from the input",
                                style="red"))
    t.add_row("created", _ts(run.created_at))
    if run.started_at:
        t.add_row("started", _ts(run.started_at))
    if run.finished_at:
        t.add_row("finished", _ts(run.finished_at))
    if run.error:
        t.add_row("error", Text(printable(run.error), style="red"))
    return Panel(t, expand=False)


def runs_table(rows: list[tuple[RunRow, RunTotals]]) -> Table:
    t = Table(header_style="bold")
    for col in ("Run", "Name", "Status", "Created", "Done/Total", "Failed", "Cost USD"):
        t.add_column(col, justify="right" if col in ("Done/Total", "Failed", "Cost USD") else "left")
    for run, tot in rows:
        t.add_row(
            run.id, run.name, Text(run.status, style=_run_style(run.status)), _ts(run.created_at),
            f"{tot.counts['done']}/{tot.total}", str(tot.counts["failed"]), usd(tot.cost_usd),
        )
    return t


def _run_style(status: str) -> str:
    return {"completed": "green", "failed": "red", "cancelled": "yellow", "running": "cyan"}.get(status, "")


def _ts(dt: datetime | None) -> str:
    return dt.strftime("%Y-%m-%d %H:%M:%S UTC") if dt else ""


# --- machine output ---------------------------------------------------------------------------------------------


def item_record(it: ItemView) -> dict[str, Any]:
    """One item as a flat JSON-able dict (keys: :data:`EXPORT_FIELDS`)."""
    return {
        "seq": it.seq, "company": it.company, "domain": it.domain, "status": it.status, "tier": it.tier,
        "score": it.score, "category": it.category, "rationale": it.rationale, "evidence_urls": it.evidence_urls,
        "results_kept": it.kept_count, "results_returned": it.returned_count, "credits": it.credits,
        "input_tokens": it.input_tokens, "output_tokens": it.output_tokens, "cost_usd": round(it.cost_usd, 10),
        "truncated": it.truncated, "attempts": it.attempts, "error": it.error,
    }


def run_record(run: RunRow, totals: RunTotals) -> dict[str, Any]:
    return {
        "run_id": run.id, "name": run.name, "kind": run.kind, "status": run.status, "options": run.options,
        "input_path": run.input_path, "input_complete": run.input_complete, "error": run.error,
        "created_at": run.created_at.isoformat() if run.created_at else None,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "counts": totals.counts, "credits": totals.credits, "input_tokens": totals.input_tokens,
        "output_tokens": totals.output_tokens, "cost_usd": round(totals.cost_usd, 10),
    }


async def write_csv(items: AsyncIterator[ItemView], out: IO[str]) -> int:
    """Items as CSV (header :data:`EXPORT_FIELDS`; evidence URLs joined with spaces; formula-like cells escaped by
    :func:`csv_safe`). Returns rows written."""
    w = csv.DictWriter(out, fieldnames=list(EXPORT_FIELDS), lineterminator="\n")
    w.writeheader()
    n = 0
    async for it in items:
        rec = item_record(it)
        rec["evidence_urls"] = " ".join(rec["evidence_urls"])
        w.writerow(csv_safe_row(rec))
        n += 1
    return n


async def write_json(run: RunRow, totals: RunTotals, items: AsyncIterator[ItemView], out: IO[str]) -> int:
    """``{"run": {...}, "items": [...]}``, items written one by one as they are read. Returns items written."""
    out.write('{"run": ' + json.dumps(run_record(run, totals)) + ', "items": [')
    n = 0
    async for it in items:
        out.write(("\n  " if n == 0 else ",\n  ") + json.dumps(item_record(it)))
        n += 1
    out.write("\n]}\n" if n else "]}\n")
    return n


class SafeConsole(Console):
    """A rich ``Console`` that never writes a control character or escape sequence it did not make itself: the
    text of every segment is passed through :func:`printable` (rich's own styling and cursor moves are not text:
    they are added when the segments are rendered, or are control segments)."""

    def render_str(self, text: str, **kw: Any) -> Text:
        return super().render_str(printable(text), **kw)

    def _render_buffer(self, buffer: Iterable[Segment]) -> str:
        clean = [seg if seg.control or seg.text.isprintable() else Segment(printable(seg.text), seg.style)
                 for seg in buffer]
        return super()._render_buffer(clean)


def make_console(stderr: bool = False) -> Console:
    """A :class:`SafeConsole`; when the output is not a terminal, a wide one (no wrapping of table rows at 80
    columns) without colour codes."""
    c = SafeConsole(stderr=stderr, highlight=False)
    if not c.is_terminal:
        c = SafeConsole(stderr=stderr, highlight=False, width=max(c.width, 160), no_color=True)
    return c
