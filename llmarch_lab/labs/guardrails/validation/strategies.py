"""The three strategies on one item: plain, re-ask with the error, constrained decoding (llama.cpp / vLLM bodies)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from llmarch_lab import LabError
from llmarch_lab.labs.guardrails.rules import as_text  # noqa: F401 - also validation.as_text
from llmarch_lab.labs.guardrails.validation.parse import validate
from llmarch_lab.labs.guardrails.validation.schema import (
    CONSTRAINTS,
    GBNF,
    MAX_TOKENS,
    REASK,
    REASON_MAX_CHARS,
    build_messages,
    json_schema,
)

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


def ask(endpoint, messages, max_tokens, **kw):
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
    text, ct, pt, err = ask(endpoint, build_messages(item["question"], item["long_answer"]), max_tokens)
    return _outcome("plain", item, text, validate(text), 1, t0, ct, pt, err)


def run_reask(endpoint, item, max_retries: int = 2, max_tokens: int = MAX_TOKENS) -> Outcome:
    """plain, then up to `max_retries` re-asks carrying the validation error; calls <= 1 + max_retries."""
    if not isinstance(max_retries, int) or max_retries < 0:
        raise LabError(f"max_retries must be an integer >= 0, got {max_retries!r}")
    t0 = time.perf_counter()
    messages = build_messages(item["question"], item["long_answer"])
    ctoks = ptoks = 0
    for attempt in range(max_retries + 1):
        text, ct, pt, err = ask(endpoint, messages, max_tokens)
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
    text, ct, pt, err = ask(endpoint, build_messages(item["question"], item["long_answer"]), max_tokens, **body)
    return _outcome("constrained", item, text, validate(text), 1, t0, ct, pt, err)
