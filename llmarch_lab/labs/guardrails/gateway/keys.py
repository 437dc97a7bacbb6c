"""Per-key limits and request-body checks in the gateway, without a key database.

LiteLLM's custom auth (general_settings.custom_auth) calls auth_function()'s coroutine with each
request: it looks the key up in a keys file and returns the key's UserAPIKeyAuth carrying its rpm /
tpm / max-parallel limits, which LiteLLM's own parallel-request limiter enforces (HTTP 429). The
proxy's master key (LITELLM_MASTER_KEY) is accepted without limits: the lab's own clients use it.
Keys are stored as sha256 digests; the file's path is in LLMARCH_GATEWAY_KEYS:

    {"<sha256 of the key>": {"alias": "tenant-a", "rpm_limit": 600, "tpm_limit": null,
                             "max_parallel_requests": 2}, ...}

    keys.write_keys(path, {"sk-a-...": {"alias": "tenant-a", "max_parallel_requests": 2}})

The same coroutine checks a chat-completions body against chat_schema() and answers HTTP 400
naming the field: LiteLLM passes wrong JSON types and out-of-range numbers on and answers 500.

LiteLLM loads this module through a shim (llm/litellm_proxy.write_shim) in its own environment,
so only the standard library is imported at the top.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets

ENV = "LLMARCH_GATEWAY_KEYS"
ENV_MAX_BODY = "LLMARCH_GATEWAY_MAX_BODY_BYTES"
MAX_BODY_BYTES = 1_000_000  # default; LiteLLM's own max_request_size_mb is an enterprise feature
LIMITS = ("rpm_limit", "tpm_limit", "max_parallel_requests")


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def _save(path, records: dict) -> None:
    tmp = f"{path}.partial"
    with open(tmp, "w") as f:
        json.dump(records, f, indent=1)
    os.replace(tmp, path)  # atomic: the gateway never reads half a file


def _limits(alias: str, limits: dict) -> dict:
    unknown = sorted(set(limits) - set(LIMITS))
    if unknown:
        raise ValueError(f"gateway keys: {alias}: unknown fields {unknown}: use alias, {', '.join(LIMITS)}")
    for k, v in limits.items():
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"gateway keys: {alias}: {k} must be a whole number >= 1, got {v!r}")
    return {n: limits.get(n) for n in LIMITS}


def write_keys(path, keys: dict) -> None:
    """Write the keys file: {plain key: {"alias": ..., limits...}} stored as digests, atomically."""
    _save(path, {digest(k): {"alias": v.get("alias", k[:6]),
                             **_limits(v.get("alias", k[:6]), {n: x for n, x in v.items() if n != "alias"})}
                 for k, v in keys.items()})


def add_key(path, alias: str, **limits) -> str:
    """Add a new key for `alias` with `limits` (rpm_limit, tpm_limit, max_parallel_requests; None =
    unlimited) to the keys file (created if missing); return the key, which is stored only as its
    digest. A gateway reads the file when it starts."""
    if not alias.strip():
        raise ValueError("gateway keys: alias must not be empty")
    records = {}
    if os.path.exists(path):
        try:
            with open(path) as f:
                records = json.load(f)
        except (OSError, ValueError) as e:
            raise ValueError(f"gateway keys: {path}: not a readable keys file ({e})") from None
        if not isinstance(records, dict):
            raise ValueError(f"gateway keys: {path}: not a keys file (a JSON object of digests)")
    key = "sk-" + secrets.token_hex(24)
    records[digest(key)] = {"alias": alias, **_limits(alias, limits)}
    _save(path, records)
    return key


def chat_schema():
    """A pydantic model of an OpenAI chat-completions body: the fields LiteLLM or the engine would
    otherwise fail on with HTTP 500 (wrong JSON types, out-of-range numbers). Hand-written: the
    openai package's request types are TypedDicts, with no runtime validation."""
    from typing import Literal, Optional, Union

    from pydantic import BaseModel, ConfigDict, Field

    class Open(BaseModel):
        model_config = ConfigDict(extra="allow", strict=True)

    class Message(Open):
        role: Literal["system", "developer", "user", "assistant", "tool", "function"]
        content: Optional[Union[str, list[dict]]] = None

    class Format(Open):
        type: Literal["text", "json_object", "json_schema"]

    class Function(Open):
        name: str

    class Tool(Open):
        type: Literal["function"]
        function: Function

    class StreamOptions(Open):
        include_usage: Optional[bool] = None

    class Chat(Open):
        model: str
        messages: list[Message] = Field(min_length=1)
        max_tokens: Optional[int] = Field(None, ge=1)
        max_completion_tokens: Optional[int] = Field(None, ge=1)
        temperature: Optional[float] = Field(None, ge=0, le=2)
        top_p: Optional[float] = Field(None, ge=0, le=1)
        n: Optional[int] = Field(None, ge=1, le=16)
        stream: Optional[bool] = None
        stream_options: Optional[StreamOptions] = None
        stop: Optional[Union[str, list[str]]] = None
        seed: Optional[int] = None
        presence_penalty: Optional[float] = Field(None, ge=-2, le=2)
        frequency_penalty: Optional[float] = Field(None, ge=-2, le=2)
        logit_bias: Optional[dict[str, float]] = None
        logprobs: Optional[bool] = None
        top_logprobs: Optional[int] = Field(None, ge=0, le=20)
        response_format: Optional[Format] = None
        tools: Optional[list[Tool]] = None
        tool_choice: Optional[Union[str, dict]] = None
        user: Optional[str] = None

    return Chat


def body_problem(raw: bytes, schema) -> str:
    """Why a chat-completions body is invalid, in one line naming the field ("" when it is valid,
    empty or not JSON: LiteLLM names a missing body or a JSON syntax error itself)."""
    from pydantic import ValidationError

    if not raw.strip():
        return ""
    try:
        body = json.loads(raw)
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return f"the request body must be a JSON object, not a JSON {type(body).__name__}"
    try:
        schema.model_validate(body)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "body"
        return f"field {where}: {err['msg']}"
    return ""


def auth_function():
    """The custom auth coroutine LiteLLM calls with (request, api_key)."""
    from fastapi import HTTPException
    from litellm.proxy._types import UserAPIKeyAuth

    with open(os.environ[ENV]) as f:
        keys = json.load(f)
    master = os.environ.get("LITELLM_MASTER_KEY", "")
    if master:
        keys[digest(master)] = {"alias": "master"}
    schema = chat_schema()
    max_body = int(os.environ.get(ENV_MAX_BODY) or MAX_BODY_BYTES)

    async def user_api_key_auth(request, api_key: str) -> UserAPIKeyAuth:
        key = (api_key or "").removeprefix("Bearer ").strip()
        rec = keys.get(digest(key))
        if rec is None:
            raise HTTPException(status_code=401, detail={"error": "invalid API key"})
        if request.method == "POST" and request.url.path.endswith("/chat/completions"):
            raw = await request.body()
            if len(raw) > max_body:
                raise HTTPException(status_code=413, detail={"error": f"request body of {len(raw)} bytes is over "
                                                             f"the gateway's limit of {max_body} bytes"})
            problem = body_problem(raw, schema)
            if problem:
                raise HTTPException(status_code=400, detail={"error": problem})
        return UserAPIKeyAuth(api_key=key, key_alias=rec["alias"], user_id=rec["alias"],
                              **{k: rec.get(k) for k in LIMITS if rec.get(k) is not None})

    return user_api_key_auth
