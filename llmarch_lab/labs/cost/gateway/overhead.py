"""The routed gateway's overhead, measured: TTFT through the engine, the proxy and the proxy + router."""

from __future__ import annotations

from llmarch_lab.labs.cost.gateway.hook import AUTO, LARGE, SMALL, decide, text_sha
from llmarch_lab.labs.cost.gateway.launch import RoutedGateway


def overhead(gw: RoutedGateway, small_base_url: str, prompts, *, small_name: str = "", max_tokens: int = 8,
             rounds: int = 1, block: int = 2, warmup: int = 1, timeout_s: float = 120.0) -> dict:
    """TTFT on the same prompts, one request at a time (the serving lab's load generator):
    the small engine directly, the gateway with model "small" (proxy, no router), the gateway with
    model "auto" (proxy + router).

    Order: the prompts are taken `block` at a time and each block goes through the three targets in
    turn (engine p1 p2, proxy p1 p2, auto p1 p2, next block ...), `rounds` times with the target
    order rotated. Fine interleaving spreads the drift of a shared CPU over all targets, and with
    block >= 2 no engine ever sees the same prompt twice in a row, so llama.cpp's reuse of the
    previous prompt's KV prefix gives no target an edge (block=1 would hand it to the second and
    third target).

    Returns percentiles (common.stats) of ttft_engine_ms, ttft_proxy_small_ms, ttft_auto_small_ms,
    ttft_auto_large_ms, router_score_ms (the service's scoring time) and
    router_overhead_ms = p50 TTFT(auto, routed small) - p50 TTFT(small via proxy) on the prompts
    routed small; proxy_overhead_ms = p50 TTFT(small via proxy) - p50 TTFT(engine) (and the
    *_paired_ms medians of the per-prompt differences); the measured
    large-model share vs the offline share (the same prompts scored in-process with the router);
    decision agreement; and `requests`, a DataFrame with one row per timed request."""
    from llmarch_lab import LabError
    from llmarch_lab.llm.endpoint import Endpoint

    prompts = [str(p) for p in prompts]
    if not prompts:
        raise LabError("overhead: no prompts")
    if len(set(prompts)) != len(prompts):
        raise LabError("overhead: prompts must be distinct (a repeated prompt hits llama.cpp's prefix cache)")
    if block < 2 and len(prompts) > 1:
        raise LabError(f"overhead: block={block}: use >= 2 (block=1 sends each prompt twice in a row to the small engine)")
    targets = {"engine": Endpoint(small_base_url, small_name or gw.small_name, timeout_s=timeout_s),
               "proxy_small": gw.endpoint(SMALL, timeout_s=timeout_s),
               "auto": gw.endpoint(AUTO, timeout_s=timeout_s)}
    df, dec = _measure(gw, targets, prompts, max_tokens, rounds, block, warmup, timeout_s)
    out: dict = {"n_prompts": len(prompts), "rounds": rounds, "max_tokens": max_tokens,
                 "n_errors": int((df["error"] != "").sum()), "threshold": gw.threshold}
    out |= _summary(gw, prompts, df, dec)
    out["requests"] = df
    return out


def _blocks(n: int, block: int) -> list[list[int]]:
    """Prompt ids `block` at a time; a lone last prompt joins the block before it (it would go to the
    small engine twice in a row)."""
    blocks = [list(range(i, min(i + block, n))) for i in range(0, n, block)]
    if len(blocks) > 1 and len(blocks[-1]) == 1:
        blocks[-2] += blocks.pop()
    return blocks


def _measure(gw: RoutedGateway, targets: dict, prompts: list[str], max_tokens: int, rounds: int, block: int,
             warmup: int, timeout_s: float):
    """(one row per timed request, the router's decisions on the auto requests), in overhead's order."""
    import pandas as pd

    from llmarch_lab import LabError
    from llmarch_lab.llm import load

    def run(target, ids):
        rs = [load.Request(i, [{"role": "user", "content": prompts[i] if i >= 0 else f"Warm-up {i}: say hi."}],
                           max_tokens) for i in ids]
        recs, _ = load.run_level(target, iter(rs), "concurrent", 1, max_requests=len(rs), max_seconds=timeout_s * len(rs))
        return recs

    for name in ("engine", "proxy_small"):  # not "auto": warm-ups must not enter the decisions
        if warmup:
            run(targets[name], list(range(-warmup, 0)))
    rows, decided = [], []
    names = list(targets)
    for r in range(rounds):
        order = names[r % 3:] + names[:r % 3]
        for ids in _blocks(len(prompts), block):
            for name in order:
                n_before = len(gw.decisions())
                recs = run(targets[name], ids)
                route = [SMALL] * len(ids)
                if name == "auto":
                    d = gw.decisions().iloc[n_before:].reset_index(drop=True)
                    # one request at a time: the k-th new decision is the k-th prompt (checked by hash)
                    if len(d) != len(ids) or list(d["text_sha"]) != [text_sha(prompts[i]) for i in ids]:
                        raise LabError(f"overhead: {len(d)} router decisions for {len(ids)} auto requests do not line "
                                       f"up with the prompts (decisions: {gw.decisions_path})")
                    route = list(d["model"])
                    decided.append(d.assign(round=r, id=ids))
                for rec, rt in zip(recs, route):
                    rows.append({"round": r, "target": name, "id": rec.id, "route": rt, "ttft_ms": rec.ttft_ms,
                                 "e2e_ms": rec.e2e_ms, "output_tokens": rec.output_tokens, "error": rec.error,
                                 "chars": len(prompts[rec.id])})
    return pd.DataFrame(rows), pd.concat(decided, ignore_index=True)


def _summary(gw: RoutedGateway, prompts: list[str], df, dec) -> dict:
    """overhead's percentiles, overheads, shares and agreement (its docstring)."""
    import numpy as np
    import pandas as pd

    from llmarch_lab.common.stats import percentiles
    from llmarch_lab.labs.cost import routing

    ok = df[(df["error"] == "") & df["ttft_ms"].notna()]
    router = routing.load(gw.router_path)
    offline_scores = np.asarray(router.score(pd.DataFrame({"prompt": prompts})), dtype=float)
    offline = np.array([decide(s, gw.threshold) for s in offline_scores])
    first = dec[dec["round"] == 0].sort_values("id")
    measured = first["model"].to_numpy()
    small_ids = set(first.loc[first["model"] == SMALL, "id"])

    def t(target, route=None, ids=None):
        x = ok[ok["target"] == target]
        if route is not None:
            x = x[x["route"] == route]
        if ids is not None:
            x = x[x["id"].isin(ids)]
        return x["ttft_ms"]

    out = percentiles(t("engine"), "ttft_engine_ms")
    out |= percentiles(t("proxy_small"), "ttft_proxy_small_ms")
    out |= percentiles(t("auto", SMALL), "ttft_auto_small_ms", required=False)
    out |= percentiles(t("auto", LARGE), "ttft_auto_large_ms", required=False)
    out |= percentiles(dec["router_ms"], "router_score_ms")
    if small_ids:  # paired: the same prompts (those routed small) through the proxy with and without the router
        out["router_overhead_ms"] = float(t("auto", SMALL, small_ids).median() - t("proxy_small", ids=small_ids).median())
    out["proxy_overhead_ms"] = float(t("proxy_small").median() - t("engine").median())
    # the same differences taken per (round, prompt) first: less sensitive to a noisy neighbour on the CPU
    wide = ok.pivot_table(index=["round", "id"], columns="target", values="ttft_ms")
    route_of = dict(zip(first["id"], first["model"]))
    routed_small = wide[[route_of.get(i) == SMALL for i in wide.index.get_level_values("id")]]
    if {"auto", "proxy_small"} <= set(wide.columns) and len(routed_small):
        out["router_overhead_paired_ms"] = float((routed_small["auto"] - routed_small["proxy_small"]).median())
    if {"engine", "proxy_small"} <= set(wide.columns):
        out["proxy_overhead_paired_ms"] = float((wide["proxy_small"] - wide["engine"]).median())
    out["large_share_measured"] = float((dec["model"] == LARGE).mean())
    out["large_share_offline"] = float((offline == LARGE).mean())
    out["decision_agreement"] = float((measured == offline).mean())
    out["score_max_abs_diff"] = float(np.max(np.abs(first["score"].to_numpy(dtype=float) - offline_scores)))
    return out
