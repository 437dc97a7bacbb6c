"""Cost model: $/1M input and output tokens from measured throughput and a machine's $/hour.

    from llmarch_lab.labs.cost import costmodel
    table = costmodel.load_prices()                                  # experiments/cost/prices/prices.yaml
    p = costmodel.token_costs(prefill_tok_s=900, decode_tok_s=25, usd_per_hour=table["cpu-2vcpu"].usd_per_hour)
    costmodel.request_cost(df.prompt_tokens, df.output_tokens, p)    # $ per request (vectorised)
    tp = costmodel.throughput_from_runs(models=["smollm2"], measured=[{...}])
    costmodel.litellm_check(requests, {"small": p_small, "large": p_large})   # LiteLLM agrees?

Allocation rule (one machine, one model): a machine-hour is split by time share. Prefill
(prompt) and decode (output) throughputs are measured separately, as aggregate tokens/s at a
given concurrency, so a request occupies the machine for

    prompt_tokens / prefill_tok_s + output_tokens / decode_tok_s   seconds (of machine time)

and costs usd_per_second times that. That is a per-token price for each side directly:
usd_per_1m_input = usd_per_hour / (prefill_tok_s * 3600) * 1e6, and the same with decode_tok_s
for output. `utilization` < 1 spreads the idle share of the hour over the tokens served. With
continuous batching prefill and decode overlap, so the rule is exact only for the prompt/output
mix the throughputs were measured on; it is the same convention as the serving lab's
cost.usd_per_1m_output_tokens (which charges the whole hour to output tokens).

The price table (`machines:` name, usd_per_hour, kind cpu|gpu, source, date, note) is validated
with pydantic; errors name file:line and field (config's YAML loader and error format).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from pathlib import Path
from typing import Literal, Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

from llmarch_lab import LabError, paths
from llmarch_lab.common.yamlmodel import load_model

PRICE_KEYS = ("usd_per_1m_input", "usd_per_1m_output")
THROUGHPUT_COLUMNS = ["model", "engine", "concurrency", "prefill_tok_s", "decode_tok_s", "source"]


def prices_path() -> Path:
    """The lab's price table. experiments/*.yaml and experiments/*/*.yaml are suites
    (config.suite_files), so it lives two folders down."""
    return paths.home() / "experiments" / "cost" / "prices" / "prices.yaml"


# ---------------------------------------------------------------------------------- price table

class Machine(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$", description="Machine type, e.g. cpu-2vcpu, h100-80gb.")
    usd_per_hour: float = Field(gt=0, description="On-demand list price per hour (USD).")
    kind: Literal["cpu", "gpu"]
    source: str = Field(min_length=1, description="URL or text the price comes from ('assumed, not verified' if none).")
    date: dt.date = Field(description="Date the source states the price for (YYYY-MM-DD).")
    note: str = ""

    @field_validator("usd_per_hour", mode="before")
    @classmethod
    def _not_bool(cls, v):
        if isinstance(v, bool):
            raise ValueError("must be a number of USD per hour, not a boolean")
        return v

    @field_validator("date", mode="before")
    @classmethod
    def _iso_date(cls, v):
        # pydantic would take an int (seconds since 1970) or a datetime; a price date is YYYY-MM-DD
        if isinstance(v, dt.datetime) or not isinstance(v, (str, dt.date)):
            raise ValueError("must be a date written YYYY-MM-DD")
        if isinstance(v, str):
            try:
                return dt.date.fromisoformat(v.strip())
            except ValueError:
                raise ValueError("must be a date written YYYY-MM-DD") from None
        return v


class PriceTable(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    machines: list[Machine] = Field(min_length=1)

    @field_validator("machines")
    @classmethod
    def _unique(cls, v):
        seen = set()
        for m in v:
            if m.name in seen:
                raise ValueError(f"machine name {m.name!r} appears twice")
            seen.add(m.name)
        return v


def load_prices(path: str | Path | None = None) -> dict[str, Machine]:
    """{name: Machine} from the price table; a LabError of one line naming file:line: field."""
    path = Path(path) if path is not None else prices_path()
    if not path.is_file():
        raise LabError(f"{path}: price table not found")
    table = load_model(path, PriceTable, "price table")
    return {m.name: m for m in table.machines}


def machine(name: str, table: Mapping[str, Machine] | None = None) -> Machine:
    table = load_prices() if table is None else table
    if name not in table:
        raise LabError(f"machine {name!r} is not in the price table (valid: {', '.join(table)})")
    return table[name]


# ---------------------------------------------------------------------------------- arithmetic

def token_costs(throughput_in_tok_s: float, throughput_out_tok_s: float, usd_per_hour: float,
                utilization: float = 1.0) -> dict[str, float]:
    """{usd_per_1m_input, usd_per_1m_output}: $/hour / (tokens per hour) * 1e6 for each side
    (the time-share rule in the module docstring). Throughputs are aggregate tokens/s."""
    for name, v in (("throughput_in_tok_s", throughput_in_tok_s), ("throughput_out_tok_s", throughput_out_tok_s)):
        if not (v is not None and float(v) > 0 and float(v) < float("inf")):
            raise LabError(f"token_costs: {name} must be a positive measured rate, got {v!r}")
    if not float(usd_per_hour) >= 0:
        raise LabError(f"token_costs: usd_per_hour must be >= 0, got {usd_per_hour!r}")
    if not 0 < float(utilization) <= 1:
        raise LabError(f"token_costs: utilization must be in (0, 1], got {utilization!r}")
    per_hour = float(usd_per_hour) / float(utilization)
    return {"usd_per_1m_input": per_hour / (float(throughput_in_tok_s) * 3600.0) * 1e6,
            "usd_per_1m_output": per_hour / (float(throughput_out_tok_s) * 3600.0) * 1e6}


def _check_prices(prices: Mapping[str, float], where: str = "prices") -> tuple[float, float]:
    try:
        a, b = float(prices["usd_per_1m_input"]), float(prices["usd_per_1m_output"])
    except (KeyError, TypeError, ValueError):
        raise LabError(f"{where}: needs numbers usd_per_1m_input and usd_per_1m_output (got {prices!r})") from None
    if a < 0 or b < 0:
        raise LabError(f"{where}: prices must be >= 0 (got {prices!r})")
    return a, b


def request_cost(prompt_tokens, output_tokens, prices: Mapping[str, float]):
    """$ per request: prompt_tokens * $/1M input / 1e6 + output_tokens * $/1M output / 1e6.
    Scalars give a float, arrays (or Series) an ndarray."""
    import numpy as np

    pin, pout = _check_prices(prices)
    p = np.asarray(prompt_tokens, dtype=float)
    o = np.asarray(output_tokens, dtype=float)
    out = p * (pin / 1e6) + o * (pout / 1e6)
    return float(out) if out.ndim == 0 else out


# ---------------------------------------------------------------------------------- throughput

def _serving_rows(models: list[str] | None, experiments: list[str] | None) -> list[dict]:
    """Per-level prefill/decode rates of finished serving runs in the store (none if no store).

    Per level of a closed-loop sweep (profile concurrent or synchronous: step = concurrency) from
    the `*.sweep.*` series the serving lab logs:
      mean prompt tokens = (throughput.total_tok_per_s - throughput.output_tok_per_s) / throughput.req_per_s
      prefill_tok_s = concurrency * mean prompt tokens / (latency.ttft_ms_p50 / 1000)
      decode_tok_s  = concurrency * 1000 / latency.tpot_ms_p50
    TTFT under load includes queueing, so prefill_tok_s is a lower bound above concurrency 1.
    Open-loop runs (constant, poisson: step = level index, not a concurrency) are left out."""
    from llmarch_lab.store import tracking

    if not tracking.require_store(write=False):
        return []
    want = None if models is None else set(models)
    rows, seen = [], set()
    for r in tracking.search_many(experiments, tags={"lab": "serving"}):  # newest first
        p, tags = r["params"], r["tags"]
        if p.get("profile", "concurrent") not in ("concurrent", "synchronous") or tags.get("llmarch.parent") == "true":
            continue
        model = p.get("model", tags.get("model", ""))
        names = {model, Path(model).name, Path(model).stem}
        if want is not None and not names & want:
            continue
        key = (r["experiment"], tags.get("llmarch.name", r["name"]))
        if key in seen:  # the newest finished run of each run name
            continue
        seen.add(key)
        series = {k: dict(tracking.metric_history(r["run_id"], f"{k.split('.')[0]}.sweep.{k.split('.', 1)[1]}"))
                  for k in ("throughput.output_tok_per_s", "throughput.total_tok_per_s", "throughput.req_per_s",
                            "latency.ttft_ms_p50", "latency.tpot_ms_p50")}
        label = next(iter(names & want)) if want else model
        for step in sorted(series["throughput.output_tok_per_s"]):
            g = {k: v.get(step) for k, v in series.items()}
            if any(v is None or not v > 0 for v in g.values()):
                continue  # a level with no successful request has no rates
            prompt = (g["throughput.total_tok_per_s"] - g["throughput.output_tok_per_s"]) / g["throughput.req_per_s"]
            conc = 1 if p.get("profile") == "synchronous" else step
            rows.append({"model": label, "engine": p.get("engine", ""), "concurrency": int(conc),
                         "prefill_tok_s": conc * prompt / (g["latency.ttft_ms_p50"] / 1000.0) if prompt > 0 else float("nan"),
                         "decode_tok_s": conc * 1000.0 / g["latency.tpot_ms_p50"], "source": r["run_id"]})
    return rows


def throughput_from_runs(models: list[str] | None = None, measured=None, experiments: list[str] | None = None,
                         prefer: Literal["runs", "measured"] = "runs"):
    """Tidy prefill/decode throughput: model, engine, concurrency, prefill_tok_s, decode_tok_s,
    source (an MLflow run id, or "measured in this run").

    Serving-lab runs in the tracking store (all experiments, or `experiments`) are read when
    present; `measured` (a DataFrame or list of dicts with model, engine, concurrency,
    prefill_tok_s, decode_tok_s) are the cost lab's own measurements. With prefer="runs" a
    model's measured rows are used only when no serving run covers it; prefer="measured" the
    other way round."""
    import pandas as pd

    runs = pd.DataFrame(_serving_rows(models, experiments), columns=THROUGHPUT_COLUMNS)
    meas = pd.DataFrame(measured if measured is not None else [])
    if len(meas):
        need = set(THROUGHPUT_COLUMNS) - {"source"}
        missing = need - set(meas.columns)
        if missing:
            raise LabError(f"throughput_from_runs: measured needs columns {sorted(need)} (missing {sorted(missing)})")
        meas = meas.assign(source=meas["source"] if "source" in meas else "measured in this run")[THROUGHPUT_COLUMNS]
        if models is not None:
            meas = meas[meas.model.isin(models)]
    first, second = (runs, meas) if prefer == "runs" else (meas, runs)
    if len(second):
        second = second[~second.model.isin(set(first.model))]
    parts = [d for d in (first, second) if len(d)]
    if not parts:
        return pd.DataFrame(columns=THROUGHPUT_COLUMNS)
    out = pd.concat(parts, ignore_index=True)
    out["concurrency"] = out["concurrency"].astype(int)
    return out.sort_values(["model", "engine", "concurrency"], kind="stable").reset_index(drop=True)


def price_at(throughput, model: str, usd_per_hour: float, concurrency: int | None = None,
             utilization: float = 1.0) -> dict[str, float]:
    """token_costs of one model's row in a throughput_from_runs table at `concurrency` (None =
    the highest measured), with the row's concurrency and source added."""
    rows = throughput[throughput.model == model]
    if rows.empty:
        raise LabError(f"no measured throughput for model {model!r} (have: {', '.join(map(str, throughput.model.unique())) or 'none'})")
    if concurrency is None:
        row = rows.loc[rows.concurrency.idxmax()]
    else:
        hit = rows[rows.concurrency == concurrency]
        if hit.empty:
            raise LabError(f"model {model!r}: no throughput measured at concurrency {concurrency} "
                           f"(measured: {sorted(rows.concurrency.unique().tolist())})")
        row = hit.iloc[0]
    return {**token_costs(row.prefill_tok_s, row.decode_tok_s, usd_per_hour, utilization),
            "concurrency": int(row.concurrency), "source": str(row.source)}


# ---------------------------------------------------------------------------------- LiteLLM check

def litellm_python() -> Path:
    """The LiteLLM environment's interpreter (its pins clash with the lab's, so it is separate)."""
    from llmarch_lab.llm.litellm_proxy import litellm_python as shared

    return shared(check=True, who="cost model (LiteLLM check)")


# Runs in the LiteLLM environment: JSON in on stdin, JSON out on stdout. LiteLLM prints provider
# hints to stdout, so stdout is kept for the answer and everything else goes to stderr.
_LITELLM_SCRIPT = r"""
import json, os, sys
out = sys.stdout
sys.stdout = sys.stderr
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
import litellm
litellm.suppress_debug_info = True
job = json.load(sys.stdin)
litellm.register_model({name: {"input_cost_per_token": c["input_cost_per_token"],
                               "output_cost_per_token": c["output_cost_per_token"],
                               "litellm_provider": "openai", "mode": "chat"}
                        for name, c in job["models"].items()})
costs = []
for r in job["requests"]:
    p, c = litellm.cost_per_token(model=r["model"], prompt_tokens=r["prompt_tokens"],
                                  completion_tokens=r["completion_tokens"])
    costs.append(p + c)
from importlib.metadata import version
out.write(json.dumps({"costs": costs, "litellm": version("litellm")}))
"""


def litellm_check(requests_df, prices, timeout_s: float = 300.0):
    """Price the same requests with LiteLLM's cost tracking (custom prices registered with
    litellm.register_model, LITELLM_LOCAL_MODEL_COST_MAP=True: offline) and with this module.

    `requests_df`: model, prompt_tokens, output_tokens (+ any other columns, kept). `prices`:
    {model: {usd_per_1m_input, usd_per_1m_output}} or a DataFrame with those columns and `model`.
    Returns the frame with lab_usd, litellm_usd, abs_diff, rel_diff; attrs["max_rel_diff"] and
    attrs["litellm_version"] summarise."""
    import numpy as np
    import pandas as pd

    if hasattr(prices, "to_dict") and hasattr(prices, "columns"):
        prices = {r["model"]: r for r in prices.to_dict("records")}
    df = pd.DataFrame(requests_df).reset_index(drop=True).copy()
    missing = {"model", "prompt_tokens", "output_tokens"} - set(df.columns)
    if missing:
        raise LabError(f"litellm_check: requests need columns model, prompt_tokens, output_tokens (missing {sorted(missing)})")
    unknown = sorted(set(df.model) - set(prices))
    if unknown:
        raise LabError(f"litellm_check: no prices for model(s) {unknown} (have: {', '.join(map(str, prices))})")
    lab = np.zeros(len(df))
    for m, idx in df.groupby("model").groups.items():
        lab[idx] = request_cost(df.loc[idx, "prompt_tokens"], df.loc[idx, "output_tokens"],
                                prices[m]) if len(idx) else 0.0
    # LiteLLM names: a prefix keeps them apart from its built-in catalogue
    name = {m: f"llmarch-lab/{m}" for m in prices}
    job = {"models": {name[m]: {"input_cost_per_token": _check_prices(p, f"prices[{m!r}]")[0] / 1e6,
                                "output_cost_per_token": _check_prices(p, f"prices[{m!r}]")[1] / 1e6}
                      for m, p in prices.items()},
           "requests": [{"model": name[m], "prompt_tokens": int(p), "completion_tokens": int(o)}
                        for m, p, o in zip(df.model, df.prompt_tokens, df.output_tokens)]}
    py = litellm_python()
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False"}
    try:
        proc = subprocess.run([str(py), "-c", _LITELLM_SCRIPT], input=json.dumps(job), capture_output=True,
                              text=True, timeout=timeout_s, env=env)
    except subprocess.TimeoutExpired:
        raise LabError(f"litellm_check: {py} did not answer within {timeout_s:g} s") from None
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise LabError(f"litellm_check: {py} exited with {proc.returncode}: {tail[:300]}")
    try:
        answer = json.loads(proc.stdout)
        ll = np.asarray(answer["costs"], dtype=float)
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise LabError(f"litellm_check: {py} gave no JSON answer: {proc.stdout[-300:]!r}") from None
    if len(ll) != len(df):
        raise LabError(f"litellm_check: LiteLLM priced {len(ll)} requests of {len(df)}")
    df["lab_usd"] = lab
    df["litellm_usd"] = ll
    df["abs_diff"] = np.abs(lab - ll)
    with np.errstate(divide="ignore", invalid="ignore"):
        df["rel_diff"] = np.where(np.maximum(np.abs(lab), np.abs(ll)) > 0,
                                  df["abs_diff"] / np.maximum(np.abs(lab), np.abs(ll)), 0.0)
    df.attrs["max_rel_diff"] = float(df["rel_diff"].max()) if len(df) else 0.0
    df.attrs["litellm_version"] = answer.get("litellm", "")
    return df
