"""Speculative decoding in transformers: prompt-lookup and assisted generation (a draft model),
against plain greedy decoding of the same model, on the CPU.

    make model-qwen                                   # Qwen2.5-Coder-1.5B and 0.5B GGUFs (once)
    .venv/bin/python benchmarks/assisted_generation.py          # 1.5B, 0.5B assistant, prompt lookup
    .venv/bin/python benchmarks/assisted_generation.py --model smollm2-135m-instruct --modes base,lookup

Modes, all greedy (do_sample=False), batch 1, on one fp32 transformers model (the GGUF
dequantized once by models.load_causal_lm):
  base     model.generate(...)
  lookup   prompt_lookup_num_tokens=N: drafts copied from the prompt (n-gram match, no model);
  assisted assistant_model=<draft>: Qwen2.5-Coder-0.5B-Instruct drafts for the 1.5B (same
           tokenizer), transformers' own schedule for the number of drafted tokens.
Workload: the code-editing prompts of benchmarks/serving_speculative.py (they quote the code
they ask about, so a prompt lookup has something to copy), up to --max-tokens new tokens.

transformers reports no acceptance counter, so it is read off the target model's forward calls
(a forward pre-hook records each call's new input length L_i): a round feeds the one token the
last verification produced plus c_i drafted tokens (the first round: the P prompt tokens plus
c_1), and yields its accepted drafts plus one token of its own, so
  drafted = sum(L_i) - P - (rounds - 1),   accepted = generated - rounds,
  acceptance = accepted / drafted,         tokens per target call = generated / rounds.
Decode tok/s = generated tokens / seconds of the generate call (prefill included: with a
speculative mode the first target call is prefill and verification at once).

Assisted generation in transformers runs one sequence at a time (batch 1), so there is no
"under concurrency" row here: the serving engines' rows (benchmarks/serving_speculative.py) have it.

Prints the table and logs one MLflow run (experiment `interactive`).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Run as a script, the repo root is not on sys.path: benchmarks.serving_speculative's prompts are reused.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MODES = ("base", "lookup", "assisted")


class CallCounter:
    """Forward pre-hook on a model: the new input length of every forward call."""

    def __init__(self, model):
        self.lengths: list[int] = []
        self._h = model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        ids = kwargs.get("input_ids", args[0] if args else None)
        if ids is not None:
            self.lengths.append(int(ids.shape[1]))

    def reset(self):
        self.lengths = []

    def remove(self):
        self._h.remove()


def spec_stats(lengths: list[int], prompt_tokens: int, generated: int) -> dict:
    """Acceptance from the target's forward calls (module docstring)."""
    rounds = len(lengths)
    drafted = sum(lengths) - prompt_tokens - (rounds - 1)
    accepted = generated - rounds
    return {"rounds": rounds, "drafted": drafted, "accepted": accepted,
            "acceptance": accepted / drafted if drafted > 0 else None,
            "tokens_per_call": generated / rounds if rounds else None}


def run(model_spec: str, assistant_spec: str, modes: list[str], lookup_n: int, max_tokens: int,
        threads: int, prompts) -> dict:
    from llmarch_lab.assets import models
    from llmarch_lab.llm import local

    model, tok = models.load_causal_lm(model_spec)
    assistant = models.load_causal_lm(assistant_spec)[0] if "assisted" in modes else None
    out = {m: [] for m in modes}
    counter = CallCounter(model)
    try:
        with local.torch_threads(threads):
            local.warm_up(model, tok)
            if assistant is not None:
                local.warm_up(assistant, tok)
            for i, prompt in enumerate(prompts):
                enc = local.chat_ids(tok, [{"role": "user", "content": prompt}])
                for m in modes:
                    kw = {"prompt_lookup_num_tokens": lookup_n} if m == "lookup" else \
                        {"assistant_model": assistant} if m == "assisted" else {}
                    counter.reset()
                    g = local.generate(model, tok, enc, max_tokens, **kw)
                    ids, dt = list(g.token_ids), g.seconds
                    st = spec_stats(counter.lengths, g.prompt_tokens, len(ids))
                    out[m].append({"prompt": i, "ids": ids, "seconds": dt, **st})
                    print(f"prompt {i} {m}: {len(ids)} tokens in {dt:.1f} s ({len(ids) / dt:.1f} tok/s), "
                          f"acceptance {st['acceptance']}", flush=True)
    finally:
        counter.remove()
    return out


def table(res: dict, modes: list[str]):
    import pandas as pd

    base = res["base"]
    rows = []
    for m in modes:
        r = res[m]
        gen, secs = sum(len(x["ids"]) for x in r), sum(x["seconds"] for x in r)
        drafted = sum(x["drafted"] for x in r)
        same = [x["ids"] == b["ids"] for x, b in zip(r, base)]
        rows.append({"mode": m, "tokens": gen, "seconds": secs, "decode tok/s": gen / secs,
                     "speed-up b=1": (gen / secs) / (sum(len(x["ids"]) for x in base) / sum(x["seconds"] for x in base)),
                     "acceptance": (sum(x["accepted"] for x in r) / drafted) if m != "base" and drafted > 0 else None,
                     "tokens per target call": gen / sum(x["rounds"] for x in r),
                     "identical greedy tokens": f"{sum(same)}/{len(same)}"})
    return pd.DataFrame(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="qwen2.5-coder-1.5b-instruct")
    ap.add_argument("--assistant", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--modes", default="base,lookup,assisted")
    ap.add_argument("--lookup-tokens", type=int, default=10, help="prompt_lookup_num_tokens")
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--prompts", type=int, default=4, help="how many of the code prompts (1-8)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-log", action="store_true")
    a = ap.parse_args(argv)

    from benchmarks.serving_speculative import PROMPTS
    from llmarch_lab import LabError

    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    if not modes or modes[0] != "base" or any(m not in MODES for m in modes):
        print(f"error: --modes: base first, then any of {', '.join(MODES[1:])}", file=sys.stderr)
        return 2
    if not 1 <= a.prompts <= len(PROMPTS):
        print(f"error: --prompts: 1..{len(PROMPTS)}", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    try:
        res = run(a.model, a.assistant, modes, a.lookup_tokens, a.max_tokens, a.threads, PROMPTS[:a.prompts])
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    df = table(res, modes)
    print(f"\ntransformers speculative decoding, {a.model} (assistant {a.assistant}, lookup {a.lookup_tokens}), "
          f"{a.prompts} code prompts, greedy, batch 1, <= {a.max_tokens} tokens, {a.threads} threads; "
          f"{time.perf_counter() - t0:.0f} s")
    print(df.to_markdown(index=False, floatfmt=".2f"))
    if not a.no_log:
        from llmarch_lab.results import Result
        from llmarch_lab.run import bench

        out = Result(tables={"assisted_generation": df})
        for m in modes[1:]:
            out.add(f"throughput.{m}_speedup_b1", float(df.set_index("mode").loc[m, "speed-up b=1"]))
        bench.log_standalone("assisted_generation", "benchmarks/assisted_generation",
                             {"model": a.model, "assistant": a.assistant, "modes": a.modes,
                              "lookup_tokens": a.lookup_tokens, "max_tokens": a.max_tokens, "prompts": a.prompts}, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
