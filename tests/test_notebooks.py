"""Every notebook executes through the real runner with its quickstart (smallest) parameters."""

from pathlib import Path

from llmarch_lab import config
from llmarch_lab.run import runner
from llmarch_lab.store import tracking

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "experiments" / "quickstart.yaml"


def test_every_notebook_is_in_quickstart():
    suite = config.load_suite(QUICKSTART)
    covered = {r.notebook.name for r in suite.runs}
    present = {p.name for p in (ROOT / "notebooks").glob("*.ipynb")}
    assert present <= covered, f"notebooks without a quickstart entry: {present - covered}"


def test_every_suite_file_validates():
    for f in config.suite_files():
        assert config.load_suite(f).runs, f


def test_quickstart_suite_runs_every_notebook(store):
    suite = config.load_suite(QUICKSTART)
    out = runner.run_suite(suite, workers=2, progress=False)  # two notebooks at a time: kernels mostly import
    failed = {o.spec.name: o.error for o in out if o.status != "FINISHED"}
    assert not failed, failed
    for o in out:
        run = tracking.search("quickstart", tags={"llmarch.name": o.spec.name})[0]
        assert run["metrics"], f"{o.spec.name} logged no metrics"
        assert any(k.startswith("data.") for k in run["tags"]), "data sha256 tags missing"
    qs = next(o for o in out if o.spec.notebook.stem == "00_quickstart")
    assert qs.metrics["quality.retrieval_hit_at_1"] >= 0.5  # questions find their own abstracts
    assert qs.metrics["throughput.decode_tok_per_s"] > 0
    # One report path: `llmarch-lab report` prints each lab's own table from the same store.
    import subprocess
    import sys

    md = subprocess.run([sys.executable, "-m", "llmarch_lab.cli", "report", "quickstart", "--format", "md"],
                        capture_output=True, text=True, timeout=300)
    assert md.returncode == 0, md.stderr
    for title in ("quickstart runs", "quantization modes", "fine-tuning runs", "retrieval runs", "serving sweeps",
                  "guardrails stack", "cost routellm"):
        assert f"**{title} of suite quickstart" in md.stdout, (title, md.stdout[:2000])
    assert "| nf4 |" in md.stdout and "decode_tok_per_s ↑" in md.stdout
    csv = subprocess.run([sys.executable, "-m", "llmarch_lab.cli", "report", "quickstart", "--lab", "rag",
                          "--format", "csv"], capture_output=True, text=True, timeout=300)
    assert csv.returncode == 0 and csv.stdout.startswith("run,corpus,mode"), csv.stdout[:500]
