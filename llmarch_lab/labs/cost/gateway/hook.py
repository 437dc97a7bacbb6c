"""The LiteLLM side of the routed gateway: the callback whose pre-call hook asks the router service
which model answers (model "auto" only), and what both sides share (the text scored, the decision).

LiteLLM loads it through a shim that loads this file by path (llm.litellm_proxy.write_shim), so
this module imports only the standard library at the top: it runs in both environments.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections import OrderedDict

SMALL, LARGE, AUTO = "small", "large", "auto"
ENV_URL = "LLMARCH_ROUTER_URL"
ENV_TIMEOUT = "LLMARCH_ROUTER_TIMEOUT_S"
_COMPLETION_CALLS = ("completion", "acompletion")


def prompt_text(messages) -> str:
    """The text a router scores: the last user message's content (text parts of a list content
    joined by newlines); a plain string is returned as is."""
    if isinstance(messages, str):
        return messages
    for m in reversed(messages or []):
        if isinstance(m, dict) and m.get("role") == "user":
            c = m.get("content")
            if isinstance(c, list):
                return "\n".join(str(p.get("text", "")) for p in c if isinstance(p, dict) and p.get("type") == "text")
            return "" if c is None else str(c)
    return ""


def decide(score: float, threshold: float) -> str:
    """large when score >= threshold (routing.curve's convention)."""
    return LARGE if score >= threshold else SMALL


def text_sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def router_hook_class():
    """Build the LiteLLM CustomLogger subclass (imports litellm: call it in that environment)."""
    import httpx
    from litellm.integrations.custom_logger import CustomLogger

    class LabRouter(CustomLogger):
        """pre_call: model "auto" -> ask the router service, rewrite data["model"]; response headers:
        the decision. Calls naming "small" / "large" pass straight through."""

        def __init__(self, **kwargs):
            self.router_url = os.environ.get(ENV_URL, "").rstrip("/")
            self.timeout = float(os.environ.get(ENV_TIMEOUT, "10"))
            self._clients: dict = {}
            self._decided: OrderedDict = OrderedDict()  # call id -> headers, until the response goes out
            super().__init__(**kwargs)

        def _client(self):
            import asyncio

            loop = asyncio.get_running_loop()
            c = self._clients.get(id(loop))
            if c is None:
                c = self._clients[id(loop)] = httpx.AsyncClient(timeout=self.timeout)
            return c

        async def async_pre_call_hook(self, user_api_key_dict, cache, data: dict, call_type):
            if call_type not in _COMPLETION_CALLS or data.get("model") != AUTO:
                return data
            rid = str(data.get("litellm_call_id") or "")
            t0 = time.perf_counter()
            headers = {}
            try:
                r = await self._client().post(self.router_url + "/route",
                                              json={"messages": data.get("messages"), "request_id": rid})
                r.raise_for_status()
                res = r.json()
                model = res["model"] if res.get("model") in (SMALL, LARGE) else LARGE
                headers["x-llmarch-route-score"] = repr(float(res.get("score")))
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as e:  # fail over to quality
                print(f"llmarch-router: /route failed ({type(e).__name__}: {e}); sending to {LARGE}",
                      file=sys.stderr, flush=True)
                model, headers["x-llmarch-route-fallback"] = LARGE, type(e).__name__
            headers["x-llmarch-route"] = model
            headers["x-llmarch-router-ms"] = f"{(time.perf_counter() - t0) * 1000:.3f}"
            data["model"] = model
            if rid:
                self._decided[rid] = headers
                while len(self._decided) > 10000:  # a response that never went out leaves no leak
                    self._decided.popitem(last=False)
            return data

        async def async_post_call_response_headers_hook(self, data: dict, user_api_key_dict, response,
                                                        request_headers=None, litellm_call_info=None):
            return self._decided.pop(str(data.get("litellm_call_id") or ""), None)

    return LabRouter


def router_hook():
    """The hook instance LiteLLM's litellm_settings.callbacks names (through the shim)."""
    return router_hook_class()()
