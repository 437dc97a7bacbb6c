"""An iteration-level model of llama-server's continuous batching, calibrated on a serving sweep.

llama-server runs one loop: each step gathers one token for every slot that is generating and the
whole prompt of every slot that was just given a request (up to n_batch tokens), decodes them in
one batch, and emits a token per slot; a request that arrives during a step waits for the next
one, and with every slot busy it waits in FCFS order (server_context::update_slots in llama.cpp's
tools/server). So a new request's prefill stalls every decoding slot for the whole prefill: at
0.5 req/s with 150-token prompts a processor-sharing model (sizing.simulate_batching) put Qwen
0.5B's TPOT p50 at 21 ms where 40 ms was measured.

    cost = calibrate(serving.requests, slots)                # StepCost from the 1/2/4 sweep
    times, arr = simulate(cost, slots, arrivals_ms, prompts, outputs)  # per-request token times
    lat = client_view(times, arr, window_tokens, check_ms)

Step time is linear: a + per_decode x decoding slots + per_prompt x prompt tokens (ms), fitted on
the sweep (calibrate). Hand-written: no simulation library models this scheduler, and the loop is
short.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

import numpy as np

N_BATCH = 2048  # llama-server's default logical batch: prompt tokens per step beyond it wait


@dataclass(frozen=True)
class StepCost:
    a: float  # ms per step
    per_decode: float  # ms per decoding slot in the step
    per_prompt: float  # ms per prompt token in the step

    def ms(self, decoding: int, prompt: int) -> float:
        return self.a + self.per_decode * decoding + self.per_prompt * prompt


def simulate(cost: StepCost, slots: int, arrivals_ms, prompt_tokens, output_tokens,
             closed_clients: int = 0, n_closed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """(token emission times (ms) of each request, its arrival). Open loop: requests arrive at
    `arrivals_ms`. Closed loop (closed_clients > 0): that many clients each send their next
    request the moment their previous one ends, n_closed in all (the first ones at 0); prompt and
    output lengths are cycled."""
    closed = closed_clients > 0
    n = n_closed if closed else len(arrivals_ms)
    P = [int(prompt_tokens[i % len(prompt_tokens)]) for i in range(n)]
    N = [max(1, int(output_tokens[i % len(output_tokens)])) for i in range(n)]
    arr = np.zeros(n) if closed else np.asarray(arrivals_ms, dtype=float)
    times: list[list[float]] = [[] for _ in range(n)]
    pending = [(0.0, i) for i in range(min(closed_clients, n))] if closed else [(arr[i], i) for i in range(n)]
    heapq.heapify(pending)
    sent = len(pending)
    queue: list[int] = []  # arrived, waiting for a slot (FCFS)
    prefill: dict[int, int] = {}  # request -> prompt tokens left
    decoding: list[int] = []
    t = 0.0
    while pending or queue or prefill or decoding:
        while pending and pending[0][0] <= t:
            queue.append(heapq.heappop(pending)[1])
        while queue and len(prefill) + len(decoding) < slots:
            j = queue.pop(0)
            prefill[j] = P[j]
        if not prefill and not decoding:
            t = pending[0][0]
            continue
        budget, chunk = N_BATCH - len(decoding), {}
        for j in prefill:  # admission order; what does not fit waits for the next step
            chunk[j] = min(prefill[j], max(0, budget))
            budget -= chunk[j]
        t += cost.ms(len(decoding), sum(chunk.values()))
        for j in list(decoding):
            times[j].append(t)
        for j, k in chunk.items():
            prefill[j] -= k
            if prefill[j] == 0:
                del prefill[j]
                times[j].append(t)  # the first token comes out of the prompt's last step
                decoding.append(j)
        for j in [j for j in decoding if len(times[j]) >= N[j]]:
            decoding.remove(j)
            if closed and sent < n:
                arr[sent] = t
                heapq.heappush(pending, (t, sent))
                sent += 1
    return [np.asarray(x) for x in times], arr


def client_view(times: list[np.ndarray], sent_ms, window_tokens: float = 0.0, check_ms: float = 0.0) -> dict:
    """What the client measures (llm/load.py's definitions): ttft, e2e and tpot = (e2e - ttft) /
    (n - 1) per request, from its send `sent_ms`. Behind the guarded gateway the engine saw the
    request after the input check (simulate it at sent + check_ms), and with window_tokens > 0
    the output is held back: released each time `window_tokens` more tokens are out, after a
    check of `check_ms`, the rest at the end after the final check (guardrails gateway/hook.py)."""
    arr = np.asarray(sent_ms, dtype=float)
    ttft, e2e, tpot = (np.full(len(times), np.nan) for _ in range(3))
    w = int(np.ceil(window_tokens)) if window_tokens > 0 else 0
    for i, tt in enumerate(times):
        if not len(tt):
            continue
        first = tt[w - 1] + check_ms if 0 < w < len(tt) else (tt[-1] + check_ms if w else tt[0])
        end = tt[-1] + (check_ms if w else 0.0)
        ttft[i], e2e[i] = first - arr[i], end - arr[i]
        tpot[i] = (e2e[i] - ttft[i]) / (len(tt) - 1) if len(tt) > 1 else np.nan
    return {"ttft_ms": ttft, "e2e_ms": e2e, "tpot_ms": tpot}


def calibrate(requests, slots: int) -> StepCost:
    """The step cost that reproduces a serving sweep (closed loop, concurrency levels, its
    per-request table): the lowest level's TPOT p50 is a + per_decode and its TTFT p50 is a +
    per_prompt x prompt; the split of the TPOT between a and per_decode is the one whose simulated
    sweep best matches the higher levels' TTFT and TPOT p50 (least squares on log ratios over a
    grid; with one slot the split does not matter). The split is weakly identified: over the
    middle of the grid the fit error barely moves while the predicted open-loop p99 at 90% load
    moves by tens of percent (docs/results/system.md)."""
    r = requests[requests.ttft_ms.notna() & requests.tpot_ms.notna()]
    base = r[r.level == r.level.min()]
    ttft1, tpot1 = float(base.ttft_ms.median()), float(base.tpot_ms.median())
    prompt = float(base.prompt_tokens.median()) if "prompt_tokens" in base else 0.0
    outs = r.output_tokens.astype(int).tolist() if "output_tokens" in r else [32]
    higher = [(int(k), g) for k, g in r.groupby("level") if k > r.level.min()]
    best, best_err = None, np.inf
    for per_decode in np.linspace(0.0, 0.9 * tpot1, 19):
        a = tpot1 - per_decode
        cost = StepCost(a, per_decode, max(0.0, (ttft1 - a) / prompt) if prompt else 0.0)
        err = 0.0
        for k, g in higher:
            times, arr = simulate(cost, slots, [], g.prompt_tokens.astype(int).tolist(), outs,
                                  closed_clients=k, n_closed=len(g))
            lat = client_view(times, arr)
            for m in ("ttft_ms", "tpot_ms"):
                err += np.log(np.nanmedian(lat[m]) / g[m].median()) ** 2
        if err < best_err:
            best, best_err = cost, err
    return best
