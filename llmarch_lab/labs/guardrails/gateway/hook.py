"""The LiteLLM side of the guard gateway: the CustomGuardrail that the LiteLLM proxy loads (in
.engines/litellm) and that calls the guard service over loopback HTTP.

LiteLLM loads it through a three-line shim written next to its config.yaml that loads this file by
path (llm.litellm_proxy.write_shim), so this module imports only the standard library at the top
(no llmarch_lab, pydantic or litellm): it runs in both environments. The system bundle ships this
file as gateway/guardrails_gateway.py.

Blocking, OpenAI-style:
- block_style="refusal" (default): HTTP 200, the block message as the assistant's content,
  finish_reason="content_filter" (LiteLLM's passthrough mode; a stream gets the same as SSE). Any
  OpenAI client and garak's detectors see an ordinary answer that says it was filtered.
- block_style="error": input blocks are HTTP 400 with error.code "content_filter" (Azure OpenAI's
  convention); output blocks stay 200 + finish_reason="content_filter" (the tokens are spent).
Escalations with on_escalate="hold" answer like a block with the hold message.

Streaming (stream=True): the output is checked on a holdback window. Chunks are held until
`stream_window_chars` more characters have arrived, the text so far is checked, and only then are
the held chunks released; at the end of the stream the whole text is checked once more. A block
stops the stream with a content_filter chunk carrying the block message; text already released
stays released (that is the window's trade-off: a larger window holds more back and delays the
first token more). stream_window_chars=0 streams straight through and checks only at the end
(audit and escalation still happen, but nothing can be withheld). A redaction inside the held
window is applied to the held text; text already released cannot be redacted.

If the guard service cannot be reached, the hooks fail closed (block).
"""

from __future__ import annotations

import copy
import os
import sys
import uuid

HOOK_NAME = "llmarch-guard"
ENV_URL = "LLMARCH_GUARD_URL"
ENV_STYLE = "LLMARCH_GUARD_BLOCK_STYLE"
ENV_WINDOW = "LLMARCH_GUARD_STREAM_WINDOW"
ENV_TIMEOUT = "LLMARCH_GUARD_TIMEOUT_S"
BLOCK_STYLES = ("refusal", "error")
_COMPLETION_CALLS = ("completion", "acompletion")


def chunk_text(ch) -> str:
    """A streamed chunk's delta text ('' for a finish or usage chunk)."""
    try:
        return ch.choices[0].delta.content or ""
    except (AttributeError, IndexError):
        return ""


def with_content(ch, s: str, finish=None):
    """A copy of chunk `ch` carrying text `s` (and `finish` as its finish_reason)."""
    out = copy.deepcopy(ch)
    try:
        out.choices[0].delta.content = s
        if finish is not None:
            out.choices[0].finish_reason = finish
    except (AttributeError, IndexError):
        pass
    return out


def verdict(res: dict, text: str, released: int):
    """(stop text or None, replacement for the held text or None) from an output check of `text`,
    whose first `released` characters the client already has."""
    if res.get("reply") is not None:
        return res["reply"], None
    t = res.get("text")
    if t is not None and t != text and t[:released] == text[:released]:
        return None, t[released:]
    return None, None


def request_id(data: dict) -> str:
    """LiteLLM's call id for this request (one is made when missing), the audit's request id."""
    rid = data.get("litellm_call_id")
    if not rid:
        rid = data["litellm_call_id"] = uuid.uuid4().hex
    return str(rid)


class GuardHooks:
    """The guardrail's behaviour, in the standard library: pre_call (input checks: block / hold /
    redact the messages), post_call (output checks on the whole answer), streaming (output checks on
    a holdback window, module docstring). guardrail_class() mixes it into LiteLLM's CustomGuardrail
    and hands it httpx and FastAPI's HTTPException as class attributes."""

    httpx = None  # the httpx module (set by guardrail_class)
    HTTPException = None  # fastapi.HTTPException (set by guardrail_class)

    def setup(self) -> None:
        self.guard_url = os.environ.get(ENV_URL, "").rstrip("/")
        self.block_style = os.environ.get(ENV_STYLE, "refusal")
        self.window = int(os.environ.get(ENV_WINDOW, "0") or 0)
        self.guard_timeout = float(os.environ.get(ENV_TIMEOUT, "30"))
        self._clients: dict = {}

    # ---------------------------------------------------------------- the guard service

    def _client(self):
        import asyncio

        loop = asyncio.get_running_loop()
        c = self._clients.get(id(loop))
        if c is None:
            c = self._clients[id(loop)] = self.httpx.AsyncClient(timeout=self.guard_timeout)
        return c

    async def _ask(self, path: str, body: dict) -> dict:
        try:
            r = await self._client().post(self.guard_url + path, json=body)
            r.raise_for_status()
            return r.json()
        except (self.httpx.HTTPError, ValueError) as e:  # fail closed, and say so in the proxy's log
            print(f"llmarch-guard: {path} failed ({type(e).__name__}: {e}); blocking", file=sys.stderr, flush=True)
            msg = f"guard service unavailable ({type(e).__name__}); request blocked"
            return {"decision": {"action": "block", "tripped": ["guard_service"], "error": str(e)[:200]},
                    "reply": msg, "messages": None, "text": ""}

    def _stop(self, res: dict, data: dict, stage: str, original_response=None):
        d = res.get("decision") or {}
        info = {"stage": stage, "action": d.get("action"), "tripped": d.get("tripped"),
                "escalated": d.get("escalated"), "scores": d.get("scores"), "request_id": d.get("request_id")}
        if stage == "input" and self.block_style == "error":
            raise self.HTTPException(status_code=400, detail={
                "error": {"message": res["reply"], "type": "guardrail_blocked", "code": "content_filter",
                          "param": None, "guardrail": HOOK_NAME, **info}})
        self.raise_passthrough_exception(violation_message=res["reply"], request_data=data,
                                         detection_info=info, original_response=original_response)

    # ---------------------------------------------------------------- hooks

    async def async_pre_call_hook(self, user_api_key_dict, cache, data: dict, call_type):
        if call_type not in _COMPLETION_CALLS or not isinstance(data.get("messages"), list):
            return data
        res = await self._ask("/check_input", {"messages": data["messages"], "request_id": request_id(data)})
        if res.get("reply") is not None:
            self._stop(res, data, "input")
        if res.get("messages") is not None:
            data["messages"] = res["messages"]
        return data

    async def async_post_call_success_hook(self, data: dict, user_api_key_dict, response):
        try:
            msg = response.choices[0].message
        except (AttributeError, IndexError):
            return response
        text = msg.content or ""
        res = await self._ask("/check_output", {"text": text, "messages": data.get("messages"),
                                                "request_id": request_id(data)})
        if res.get("reply") is not None:
            self._stop(res, data, "output", original_response=response)
        if res.get("text") is not None and res["text"] != text:
            msg.content = res["text"]
        return response

    async def async_post_call_streaming_iterator_hook(self, user_api_key_dict, response, request_data: dict):
        rid, msgs = request_id(request_data), request_data.get("messages")
        held: list = []
        text, released, checked = "", 0, 0  # chars: received, released to the client, last checked
        last = None

        async def check():  # each check (window or final) is one audited output decision
            return verdict(await self._ask("/check_output", {"text": text, "messages": msgs, "request_id": rid}),
                           text, released)

        async for chunk in response:
            last = chunk
            piece = chunk_text(chunk)
            if self.window <= 0:
                text += piece
                yield chunk
                released = len(text)
                continue
            held.append(chunk)
            text += piece
            if len(text) - checked >= self.window:
                checked = len(text)
                stop, repl = await check()
                if stop is not None:
                    yield with_content(held[0], stop, "content_filter")
                    return
                if repl is not None:
                    yield with_content(held[-1], repl)
                else:
                    for h in held:
                        yield h
                held, released = [], len(text)
        stop, repl = await check()
        if stop is not None:
            if last is not None:
                yield with_content(last, stop, "content_filter")
            return
        if repl is not None and held:
            tail = held[-1]
            yield with_content(held[0], repl)
            if chunk_text(tail) == "" and tail is not held[0]:
                yield tail  # the finish / usage chunk
        else:
            for h in held:
                yield h


def guardrail_class():
    """Build the LiteLLM CustomGuardrail subclass (imports litellm: call it in that environment)."""
    import httpx
    from fastapi import HTTPException
    from litellm.integrations.custom_guardrail import CustomGuardrail
    from litellm.types.guardrails import GuardrailEventHooks

    class LabGuardrail(GuardHooks, CustomGuardrail):
        __doc__ = GuardHooks.__doc__

        # LiteLLM's proxy decides whether to call a callback's streaming iterator hook by looking
        # in the registered class's own __dict__ (proxy/utils.py, callback_capabilities), not its
        # bases: inherited from GuardHooks, the hook was never called, so a guarded stream went
        # straight through with one check at its end and no holdback. Named here, it is called.
        async_post_call_streaming_iterator_hook = GuardHooks.async_post_call_streaming_iterator_hook

        def __init__(self, **kwargs):
            self.setup()
            kwargs.setdefault("supported_event_hooks", [GuardrailEventHooks.pre_call, GuardrailEventHooks.post_call])
            CustomGuardrail.__init__(self, **kwargs)

    LabGuardrail.httpx, LabGuardrail.HTTPException = httpx, HTTPException
    return LabGuardrail


def __getattr__(name: str):  # PEP 562: `LabGuardrail` is built on first access (in the litellm venv)
    if name == "LabGuardrail":
        cls = guardrail_class()
        globals()["LabGuardrail"] = cls
        return cls
    raise AttributeError(name)
