"""Parsing and validating a reply: fences stripped, JSON parsed, the model checked; one error line."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from pydantic import ValidationError

from llmarch_lab.labs.guardrails.rules import as_text  # noqa: F401 - also validation.as_text
from llmarch_lab.labs.guardrails.validation.schema import DECISIONS, Extraction, json_schema

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
