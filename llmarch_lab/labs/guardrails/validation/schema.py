"""The extraction task: its pydantic model, JSON schema, GBNF grammar and prompts."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

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
