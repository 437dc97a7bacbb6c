"""The system report's two outside renderers: the architecture diagram (Graphviz `dot`; without it
the report carries NO_DOT instead) and the screenshot of its first screen (headless Chromium).
Both programs come from make targets (llmarch_lab/common/sysdeps.py)."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from llmarch_lab import LabError
from llmarch_lab.system.records import model_label

NO_DOT = "diagram not drawn: Graphviz `dot` not found (`make sys-graphviz` installs it); its DOT source is in report_files/architecture.dot"


def diagram(ch) -> tuple[str, str | None]:
    """(DOT source, SVG) of the chosen (or nearest) system, rendered by Graphviz's `dot`; the SVG
    is None without `dot`: the report then says so (NO_DOT) instead of failing."""
    i = ch.recommended if ch.recommended is not None else ch.nearest
    r = ch.candidates.loc[i]
    guard = r.guard != "none"
    # the nearest infeasible candidate may have no replica count (no level met the SLOs): NaN
    reps = f"x{int(r.replicas)} replica(s)" if r.replicas == r.replicas and r.replicas else "(no replica count meets the SLOs)"
    lines = ["digraph system {", "  rankdir=LR; node [shape=box, style=rounded, fontname=Helvetica, fontsize=11];",
             '  client [label="clients\\n%.2g req/s peak"];' % ch.req.workload.peak_rps,
             '  gateway [label="LiteLLM gateway\\n(OpenAI API, :4000)"];',
             f'  engine [label="{r.engine} {reps}\\n{model_label(r.model)}\\non {r.hardware}"];',
             '  prom [label="Prometheus\\n(alerts: TTFT p99, errors,\\nqueue, KV cache)", shape=cylinder];',
             "  client -> gateway; gateway -> engine;"]
    if guard:
        lines += [f'  guard [label="guard service\\ninjection: {r.guard}\\nPII, audit log"];',
                  '  gateway -> guard [label="pre/post call", fontsize=9];']
    lines += ['  prom -> engine [style=dashed, label="scrape", fontsize=9]; prom -> gateway [style=dashed];', "}"]
    dot_src = "\n".join(lines)
    exe = shutil.which("dot")
    if exe is None:
        return dot_src, None
    svg = subprocess.run([exe, "-Tsvg"], input=dot_src, capture_output=True, text=True, timeout=60, check=True).stdout
    return dot_src, svg[svg.find("<svg"):]


def chromium() -> str | None:
    return shutil.which("chromium")  # Debian's package (make sys-chromium)


def take_screenshot(html_path: Path, png_path: Path, width: int = 1280, height: int = 1000) -> Path:
    """The report's first screen in headless Chromium (Debian's chromium)."""
    exe = chromium()
    if exe is None:
        raise LabError("screenshot: chromium not found (`make sys-chromium` installs it)")
    with tempfile.TemporaryDirectory(prefix="llmarch-chromium-") as prof:
        r = subprocess.run([exe, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                            f"--user-data-dir={prof}", f"--window-size={width},{height}",
                            f"--screenshot={png_path}", Path(html_path).resolve().as_uri()],
                           capture_output=True, text=True, timeout=120)
    if r.returncode != 0 or not Path(png_path).is_file():
        raise LabError(f"screenshot: chromium exited {r.returncode}: {(r.stderr or r.stdout).strip()[-300:]}")
    return Path(png_path)
