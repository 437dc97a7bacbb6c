"""Speculative decoding on llama-server and vLLM: acceptance, decode speed-up at batch 1 and under
concurrency, and whether the greedy output stays the same.

    make engine-llama-server model-qwen
    .venv/bin/python benchmarks/serving_speculative.py             # Qwen2.5-Coder-1.5B, 0.5B draft, n-gram
    .venv/bin/python benchmarks/serving_speculative.py --model smollm2-135m-instruct --modes base,ngram

    .venv/bin/python benchmarks/serving_speculative.py --engine vllm --modes base,ngram   # make engine-vllm

Modes, each a fresh engine on the same model (llama-server: --parallel 4):
  base    no speculation;
  draft   llama-server --model-draft (Qwen2.5-Coder-0.5B-Instruct drafts for the 1.5B: same
          tokenizer), --spec-type draft-simple, --spec-draft-n-max N;
  ngram   llama-server --spec-type ngram-simple; vLLM --speculative-config
          {"method": "ngram", "num_speculative_tokens": N, "prompt_lookup_min": 2,
          "prompt_lookup_max": 4}: drafts copied from earlier text of the same request (no model).
vLLM (--engine vllm) serves the GGUF dequantized to a Hugging Face folder (models.resolve), in bf16.
Workload: code-editing prompts that quote the code they ask about (what assistants do all day,
and where n-gram drafting has something to copy), greedy (temperature 0), up to 160 new tokens.
At concurrency 1 each prompt runs alone (decode tok/s = 1000 / TPOT: prefill excluded); at
concurrency 4 the prompts run 4 at a time (output tok/s over the level). Acceptance comes from the
engine's own counters (llamacpp: or vllm:spec_decode_num_accepted_tokens_total / ..._draft_tokens_total).
Identity: each mode's concurrency-1 answers against base's, token for token (SmolLM2's tokenizer
is not the model's; the comparison is on the text, which is exact).

Prints the table and logs one MLflow run (experiment `interactive`) with it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

CODE = '''def moving_average(values, window):
    result = []
    for i in range(len(values)):
        start = max(0, i - window + 1)
        chunk = values[start:i + 1]
        result.append(sum(chunk) / len(chunk))
    return result
'''
CODE2 = '''class Inventory:
    def __init__(self):
        self.items = {}

    def add(self, name, count):
        self.items[name] = self.items.get(name, 0) + count

    def remove(self, name, count):
        if self.items.get(name, 0) < count:
            raise ValueError("not enough " + name)
        self.items[name] -= count
'''
PROMPTS = (
    f"Add type hints and a docstring to this function. Reply with the code only.\n\n{CODE}",
    f"Rename the parameter `window` to `size` everywhere in this function. Reply with the code only.\n\n{CODE}",
    f"Add type hints to every method of this class. Reply with the code only.\n\n{CODE2}",
    f"Add a method `total(self)` returning the sum of all counts to this class. Reply with the whole class.\n\n{CODE2}",
    f"Rewrite this function with a running sum instead of slicing. Reply with the code only.\n\n{CODE}",
    f"Make `remove` delete the item when its count reaches 0. Reply with the whole class.\n\n{CODE2}",
    f"Translate this Python function to JavaScript. Reply with the code only.\n\n{CODE}",
    f"Add a docstring to each method of this class. Reply with the code only.\n\n{CODE2}",
)


def run_mode(mode: str, model: str, draft: str, n_max: int, max_tokens: int, threads: int, log_dir,
             engine: str = "llama-server"):
    import json

    from llmarch_lab.llm import engine_metrics, engines, load

    if engine == "vllm":
        args = ["--speculative-config", json.dumps({"method": "ngram", "num_speculative_tokens": n_max,
                                                    "prompt_lookup_min": 2, "prompt_lookup_max": 4})] \
            if mode == "ngram" else []
        eng = engines.launch("vllm", model, dtype="bfloat16", max_model_len=1024, threads=threads,
                             extra_args=args, log_path=log_dir / f"spec-vllm-{mode}.log")
    else:
        args = ["--spec-draft-n-max", str(n_max)] if mode != "base" else []
        if mode == "ngram":
            args += ["--spec-type", "ngram-simple"]
        eng = engines.launch("llama-server", model, parallel=4, max_model_len=1024, threads=threads,
                             draft_model=draft if mode == "draft" else "", extra_args=args,
                             log_path=log_dir / f"spec-{mode}.log")
    out = {"mode": mode, "command": " ".join(eng.command[1:])}
    with eng:
        target = load.Target(eng.base_url, eng.model_name, timeout_s=900)

        def reqs():
            for i, p in enumerate(PROMPTS):
                yield load.Request(i, [{"role": "user", "content": p}], max_tokens)

        load.run_level(target, reqs(), "concurrent", 1, 1, 600)  # warm-up (first prompt, discarded)
        for c in (1, 4):
            with engine_metrics.Scraper(eng.metrics_url, engine, 1.0) as sc:
                recs, wall = load.run_level(target, reqs(), "concurrent", c, len(PROMPTS), 3600)
            bad = [r for r in recs if not r.ok]
            if bad:
                raise RuntimeError(f"{mode} c={c}: {len(bad)} requests failed: {bad[0].error}")
            em = engine_metrics.summarize(sc.frame(), engine, len(recs))
            tpot = [r.tpot_ms for r in recs if r.tpot_ms]
            out[c] = {"texts": [r.text for r in recs], "tokens": sum(r.output_tokens for r in recs),
                      "decode_tok_per_s": 1000.0 * len(tpot) / sum(tpot),  # mean over requests of 1000/TPOT, harmonic
                      "output_tok_per_s": sum(r.output_tokens for r in recs) / wall, "wall_s": wall,
                      "ttft_p50_ms": sorted(r.ttft_ms for r in recs)[len(recs) // 2],
                      "acceptance": em.get("count.engine_spec_acceptance_rate"),
                      "drafted": None}
            rows = sc.frame()
            d = rows[rows.metric == engine_metrics.NAMES[engine]["spec_draft"]].value
            out[c]["drafted"] = float(d.iloc[-1] - d.iloc[0]) if len(d) >= 2 else None
            print(f"{mode} c={c}: {out[c]['decode_tok_per_s']:.1f} decode tok/s, {out[c]['output_tok_per_s']:.1f} "
                  f"output tok/s, acceptance {out[c]['acceptance']}, {wall:.0f} s", flush=True)
    return out


def first_difference(a: str, b: str) -> int:
    """Index of the first differing character (-1: identical)."""
    if a == b:
        return -1
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engine", choices=("llama-server", "vllm"), default="llama-server")
    ap.add_argument("--model", default="qwen2.5-coder-1.5b-instruct")
    ap.add_argument("--draft", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--modes", default="base,draft,ngram")
    ap.add_argument("--draft-n-max", type=int, default=8, help="--spec-draft-n-max: tokens drafted per step.")
    ap.add_argument("--max-tokens", type=int, default=160)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-log", action="store_true")
    a = ap.parse_args(argv)

    import pandas as pd

    from llmarch_lab import LabError, paths

    modes = [m.strip() for m in a.modes.split(",") if m.strip()]
    if modes[0] != "base" or any(m not in ("base", "draft", "ngram") for m in modes):
        print("error: --modes: base first, then draft and/or ngram", file=sys.stderr)
        return 2
    if a.engine == "vllm" and "draft" in modes:
        print("error: --modes: with --engine vllm only base and ngram (a draft model is llama-server's here)",
              file=sys.stderr)
        return 2
    log_dir = paths.cache_dir() / "serving" / "logs"
    t0 = time.perf_counter()
    try:
        res = {m: run_mode(m, a.model, a.draft, a.draft_n_max, a.max_tokens, a.threads, log_dir, a.engine)
               for m in modes}
    except LabError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    base = res["base"]
    rows = []
    for m in modes:
        r = res[m]
        same = [first_difference(x, y) == -1 for x, y in zip(r[1]["texts"], base[1]["texts"])]
        same4 = [first_difference(x, y) == -1 for x, y in zip(r[4]["texts"], base[1]["texts"])]
        rows.append({"mode": m, "acceptance c=1": r[1]["acceptance"], "acceptance c=4": r[4]["acceptance"],
                     "decode tok/s c=1": r[1]["decode_tok_per_s"],
                     "speed-up c=1": r[1]["decode_tok_per_s"] / base[1]["decode_tok_per_s"],
                     "output tok/s c=4": r[4]["output_tok_per_s"],
                     "speed-up c=4": r[4]["output_tok_per_s"] / base[4]["output_tok_per_s"],
                     "drafted c=1": r[1]["drafted"], "TTFT p50 ms c=1": r[1]["ttft_p50_ms"],
                     "identical to base (c=1)": f"{sum(same)}/{len(same)}",
                     "identical to base (c=4)": f"{sum(same4)}/{len(same4)}",
                     "tokens c=1": r[1]["tokens"]})
    df = pd.DataFrame(rows)
    print(f"\nspeculative decoding on {a.engine}, {a.model} (draft {a.draft}, n-max {a.draft_n_max}), "
          f"{len(PROMPTS)} code prompts, greedy, <= {a.max_tokens} tokens; {time.perf_counter() - t0:.0f} s")
    print(df.to_markdown(index=False, floatfmt=".2f"))
    diffs = [(m, i, first_difference(x, y)) for m in modes[1:]
             for i, (x, y) in enumerate(zip(res[m][1]["texts"], base[1]["texts"])) if x != y]
    for m, i, k in diffs:
        print(f"  {m} prompt {i}: differs from base at character {k}: "
              f"{res[m][1]['texts'][i][max(0, k - 30):k + 30]!r} vs {base[1]['texts'][i][max(0, k - 30):k + 30]!r}")
    if not a.no_log:
        from llmarch_lab.results import Result
        from llmarch_lab.run import bench

        texts = pd.DataFrame([{"mode": m, "concurrency": c, "prompt": i, "text": t}
                              for m in modes for c in (1, 4) for i, t in enumerate(res[m][c]["texts"])])
        out = Result(tables={"speculative": df, "answers": texts},
                     tags={"serving.engine_command." + m: res[m]["command"] for m in modes})
        for m in modes[1:]:
            out.add(f"throughput.{m}_speedup_b1", float(df.set_index("mode").loc[m, "speed-up c=1"]))
        bench.log_standalone("serving_speculative", "benchmarks/serving_speculative",
                             {"engine": a.engine, "model": a.model, "draft": a.draft, "modes": a.modes, "draft_n_max": a.draft_n_max,
                              "max_tokens": a.max_tokens}, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
