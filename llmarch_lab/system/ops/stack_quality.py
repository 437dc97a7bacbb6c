"""Quality measured through the running stack: the recommendation and its two runners-up stood up
for real (engine, guard gateway) and asked PubMedQA questions through the gateway, so a benign
question the guard holds or blocks counts as a wrong answer, as it would for a user.

    out = measure_choice(req_path, items=200)   # {"table": DataFrame, "run_ids": [...], "rounds": n}

Per (served model, guard) pair, once: the cost lab's PubMedQA items (outcomes.sample: stratified
by label, the first `items` of one seeded order, so the cost lab's own measurement of the model
alone used the same questions) and its scoring (one token, top-20 log-probs, the best of
yes/no/maybe), sent `parallel` at a time (the engine's slots). Each pair is logged as one MLflow
run in experiment `system` (run name `stack-quality`; params model, guard, engine, parallel,
items; metrics quality.stack_pubmedqa_accuracy with its item-bootstrap 95% interval and
count.stack_pubmedqa_held_frac). The chooser prefers such a run to a composed value
(requirements.TASKS["pubmedqa_accuracy"]).

Which candidates: the recommendation and the next two in the chooser's own order (cheapest
feasible first; infeasible: the nearest by total violation). Measured quality may change the
choice, so the choice is made again and any new top-three pair measured, up to `rounds` times.
"""

from __future__ import annotations

import time
from pathlib import Path

from llmarch_lab import LabError, registry

STACK_RUN = "stack-quality"
METRIC = "quality.stack_pubmedqa_accuracy"


def top(ch, k: int = 3) -> list:
    """The chooser's first k candidates: the recommendation, then feasible ones by cost (then
    quality), then infeasible ones by total violation."""
    df = ch.candidates
    feas = df[df.feasible].sort_values(["usd_per_month", "quality"], ascending=[True, False])
    rest = df[~df.feasible].sort_values("violation_total_pct")
    order = [i for i in [ch.recommended] if i is not None] + [i for i in list(feas.index) + list(rest.index)
                                                            if i != ch.recommended]
    return order[:k]


def measured_pairs(comps, items: int) -> set[tuple[str, str]]:
    """(model, guard) pairs with a stack-quality run of at least `items` questions in the store."""
    out = set()
    for r in comps.runs:
        if r["tags"].get("llmarch.name") == STACK_RUN and METRIC in r["metrics"] and \
                int(float(r["params"].get("items", 0))) >= items:
            out.add((r["params"].get("model", ""), r["params"].get("guard", "")))
    return out


def measure_one(serving, guard: str, req, items: int, log_dir: Path, progress: bool = True) -> dict:
    """Stand up `serving`'s engine behind `guard` and ask `items` PubMedQA questions through it."""
    import pandas as pd

    from llmarch_lab.common import stats
    from llmarch_lab.system import verify

    p = verify.serving_params(serving.params)
    rows = registry.service("cost.sample")("pubmedqa", items, 0).to_dict("records")
    log_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with verify.standing(p, guard, req.safety.pii_config, log_dir, 2048) as st:
        from llmarch_lab.llm.endpoint import Endpoint

        ep = Endpoint(st.base_url, st.model, api_key_env=st.key_env, timeout_s=max(300.0, p.request_timeout_s))
        ep.preflight()
        canned = {st.guard_cfg.block_message.strip(), st.guard_cfg.hold_message.strip()} if st.guard_cfg else set()
        out = _ask_all(ep, rows, max(1, int(p.parallel or 1)), canned, progress, f"{serving.label} + {guard}")
    df = pd.DataFrame(out)
    acc = stats.paired_bootstrap(lambda c: c.mean(-1), df.correct.to_numpy(dtype=float), n_resamples=2000)
    return {"table": df, "accuracy": float(df.correct.mean()), "ci_low": acc["ci_low"], "ci_high": acc["ci_high"],
            "held": int(df.held.sum()), "items": len(df), "wall_s": time.perf_counter() - t0}


def _ask_all(ep, rows: list[dict], parallel: int, canned: set[str], progress: bool, desc: str) -> list[dict]:
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    answer = registry.service("cost.answer")

    def one(row):
        res = answer(ep, row, require_logprobs=False)
        held = res["text"].strip() in canned
        if not held and not res["has_logprobs"]:
            raise LabError(f"stack quality: {ep.base_url} answered {row['qid']} without log-probs and not with "
                           "the guard's canned reply: the gateway does not pass logprobs through")
        return {"qid": row["qid"], "gold": row["gold"], "pred": None if held else res["pred"], "held": held,
                "correct": 0.0 if held else res["correct"], "seconds": res["seconds"]}

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        return list(tqdm(pool.map(one, rows), total=len(rows), desc=f"stack quality: {desc}", disable=not progress,
                         leave=False))


def log(serving, guard: str, res: dict, folder: Path) -> str:
    from llmarch_lab.system.report import log_folder_run

    res["table"].to_csv(folder / "answers.csv", index=False)
    params = {"model": serving.model, "guard": guard, "engine": serving.engine,
              "parallel": serving.params.get("parallel", "1"), "items": res["items"], "task": "pubmedqa",
              "serving_run": serving.run_id}
    metrics = {METRIC: res["accuracy"], f"{METRIC}_ci95_low": res["ci_low"], f"{METRIC}_ci95_high": res["ci_high"],
               "count.stack_pubmedqa_held_frac": res["held"] / res["items"], "count.pubmedqa_questions": res["items"]}
    return log_folder_run(STACK_RUN, {"lab": "system", "llmarch.name": STACK_RUN}, params, metrics, folder)


def measure_choice(req_path, items: int = 200, rounds: int = 3, out_dir: Path | None = None,
                   progress: bool = True) -> dict:
    """Measure the top three candidates' (model, guard) pairs through the stack until the chooser's
    top three are all measured (at most `rounds` rounds); returns their table and run ids."""
    import pandas as pd

    from llmarch_lab.system import chooser, records, requirements
    from llmarch_lab.system.report import default_dir

    req = requirements.load(req_path)
    if not any(f.task == "pubmedqa_accuracy" for f in req.quality):
        raise LabError(f"{req.path}: quality: no floor with task pubmedqa_accuracy; the stack measurement asks "
                       "PubMedQA questions")
    out_dir = Path(out_dir) if out_dir else default_dir(f"{req.system}-stack-quality")
    run_ids, done_rounds = [], 0
    while done_rounds < rounds:
        done_rounds += 1
        comps = records.components(req)
        ch = chooser.choose(req, comps)
        have = measured_pairs(comps, items)
        todo = []
        for i in top(ch):
            r = ch.candidates.loc[i]
            s = next(x for x in comps.serving if x.run_id == r.serving_run)
            if (s.model, r.guard) not in have and all((s.model, r.guard) != (t[0].model, t[1]) for t in todo):
                todo.append((s, r.guard))
        if not todo:
            break
        for s, guard in todo:
            folder = out_dir / f"{records.model_label(s.model)}-{guard}"
            res = measure_one(s, guard, req, items, folder, progress)
            run_ids.append(log(s, guard, res, folder))
    comps = records.components(req)
    ch = chooser.choose(req, comps)
    q = next(j for j, f in enumerate(req.quality) if f.task == "pubmedqa_accuracy")
    table = pd.DataFrame([{"system": ch.candidates.loc[i, "system"], "feasible": bool(ch.candidates.loc[i, "feasible"]),
                           "pubmedqa": ch.candidates.loc[i, f"q{q}"], "how": ch.candidates.loc[i, f"q{q}_how"],
                           "run": ch.candidates.loc[i, f"q{q}_run"]} for i in top(ch)])
    return {"table": table, "run_ids": run_ids, "rounds": done_rounds, "choice": ch}
