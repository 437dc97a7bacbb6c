"""One report path: a lab's suite table as one object, rendered for the console, Markdown or CSV;
plain rows as a rich table (the CLI), an HTML table or a Markdown table (the system report).

    from llmarch_lab.common.report import Report
    rep = Report("quantization", table, directions={"perplexity": "lower"}, figures=figs)
    rep.print()                 # rich table (the CLI's `llmarch-lab report SUITE`)
    rep.markdown(); rep.csv()   # --format md / csv; benchmarks log the same text on the parent run

Every lab's `report(suite) -> Report` builds its table from tracked runs only (store.tables, never notebook
outputs), so the CLI, benchmarks/*.py and the notebooks' "suite so far" cells show the same thing.
Column directions come from the metric specs (schema.SPECS); the best value of each ranked
column is marked with a star in the console and in Markdown.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from llmarch_lab import schema
from llmarch_lab.common import env


@dataclass
class Report:
    title: str
    table: Any  # pandas.DataFrame, one row per run (or run x level)
    directions: dict[str, str] = field(default_factory=dict)  # column -> higher | lower
    figures: dict[str, Any] = field(default_factory=dict)  # name -> matplotlib Figure
    notes: list[str] = field(default_factory=list)  # lines printed under the table
    hidden: tuple[str, ...] = ("run_id",)  # columns kept in CSV, left out of the console/Markdown view

    @property
    def empty(self) -> bool:
        return self.table is None or self.table.empty

    def view(self):
        return self.table.drop(columns=[c for c in self.hidden if c in self.table], errors="ignore")

    def best(self) -> dict[str, Any]:
        """{column: best value} for ranked numeric columns."""
        out = {}
        for col, d in self.directions.items():
            if col in self.table and d in ("higher", "lower"):
                vals = self.table[col].dropna()
                if len(vals) > 1 and vals.dtype.kind in "fi":
                    out[col] = vals.max() if d == "higher" else vals.min()
        return out

    def _cells(self) -> tuple[list[str], list[list[str]]]:
        df, best = self.view(), self.best()
        cols = list(df.columns)
        rows = []
        for _, r in df.iterrows():
            rows.append([_fmt(r[c]) + (" *" if c in best and r[c] == best[c] else "") for c in cols])
        header = [c + {"higher": " ↑", "lower": " ↓"}.get(self.directions.get(c, ""), "") for c in cols]
        return header, rows

    def markdown(self) -> str:
        # Joined by hand rather than DataFrame.to_markdown: the cells carry the direction arrows and
        # best-value stars, and unpadded pipe rows stay greppable in logs and diffs.
        if self.empty:
            return f"**{self.title}**: no finished runs\n"
        header, rows = self._cells()
        lines = [f"**{self.title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
        lines += [""] + self._legend() + self.notes
        return "\n".join(lines).rstrip() + "\n"

    def csv(self) -> str:
        buf = io.StringIO()
        self.table.to_csv(buf, index=False)
        return buf.getvalue()

    def _legend(self) -> list[str]:
        return ["↑ higher is better, ↓ lower is better, * best in the column"] if self.directions else []

    def print(self, console=None) -> None:
        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        console = console or Console(width=max(120, int(env.get("COLUMNS") or 0)))
        if self.empty:
            console.print(f"{escape(self.title)}: no finished runs")
            return
        header, rows = self._cells()
        t = Table(title=self.title, show_lines=False)
        for h in header:
            t.add_column(escape(h), overflow="fold")
        for r in rows:
            t.add_row(*[escape(c) for c in r])  # run names like p[x=1] are not markup
        console.print(t)
        for line in self._legend() + self.notes:
            console.print(escape(line))


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v != v:  # NaN
            return "-"
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"
    return str(v)


def directions_for(columns: dict[str, str]) -> dict[str, str]:
    """{table column: direction} from {table column: metric name} via the metric specs."""
    out = {}
    for col, metric in columns.items():
        s = schema.spec(metric)
        if s is not None and s.direction != "none":
            out[col] = s.direction
    return out


def rich_rows(rows: list[dict[str, Any]], title: str, style: dict[str, str] | None = None, style_key: str = "",
              floats: str = "", right: tuple[str, ...] = ()):
    """A plain list of rows as a rich Table (no ranking): `style` colours a row by its
    `style_key` value, `floats` formats float cells (e.g. ".3f"), `right` right-justifies columns."""
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=title, show_lines=False)
    for col in rows[0] if rows else []:
        t.add_column(str(col), overflow="fold", justify="right" if col in right else "left")
    for r in rows:
        cells = [escape(format(v, floats) if floats and isinstance(v, float) else str(v)) for v in r.values()]
        t.add_row(*cells, style=(style or {}).get(r.get(style_key)))  # run names like p[x=1] are not markup
    return t


def print_rows(rows: list[dict[str, Any]], title: str, console=None, **kw) -> None:
    """rich_rows printed (the CLI's run and status tables, the labs' command-line tables)."""
    from rich.console import Console

    console = console or Console(width=max(120, int(env.get("COLUMNS") or 0)))
    console.print(rich_rows(rows, title, **kw))


def frame_markdown(df, floatfmt: str = ".3f") -> str:
    """A DataFrame as a Markdown pipe table (tabulate through pandas), or plain text without tabulate."""
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return df.to_string(index=False, float_format=lambda v: format(v, floatfmt))
    return df.to_markdown(index=False, floatfmt=floatfmt)


def cell_text(v, nd: int = 4) -> str:
    """A cell of a plain rows table: '-' for missing or NaN, floats to `nd` significant digits
    with thousands separators (whole numbers from a million up)."""
    if v is None or (isinstance(v, float) and v != v):
        return "-"
    if isinstance(v, float):
        return f"{v:,.{nd}g}" if abs(v) < 1e6 else f"{v:,.0f}"
    return str(v)


def html_rows(rows: list[dict], cols: list[str], raw: set[str] = frozenset()) -> str:
    """An HTML table of `rows` (dicts) over `cols`; cells escaped, except the `raw` columns (links)."""
    import html

    head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{r.get(c, '-') if c in raw else html.escape(cell_text(r.get(c)))}</td>"
                                    for c in cols) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def markdown_rows(rows: list[dict], cols: list[str]) -> str:
    """A Markdown pipe table of `rows` over `cols` (pipes in cells escaped)."""
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(cell_text(r.get(c)).replace("|", "\\|") for c in cols) + " |" for r in rows]
    return "\n".join(out)
