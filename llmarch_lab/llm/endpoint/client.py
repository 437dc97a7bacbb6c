"""Endpoint: an OpenAI-compatible base URL and model; preflight, chat, streaming, log-probs,
embeddings (the key read from its environment variable at call time, never stored)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from llmarch_lab import LabError
from llmarch_lab.llm.endpoint.answers import Logprobs, Reply, Stream, int_or_none
from llmarch_lab.llm.endpoint.sse import read_sse

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _one_line(x, n: int = 200) -> str:
    return " ".join(str(x).split())[:n]


@dataclass
class Endpoint:
    """An OpenAI-compatible base URL (ending in /v1) and the model name it serves.

    The field order matches the load generator's former `Target(base_url, model, api_key,
    extra_body, timeout_s)`, but the third field is now the NAME of the key's environment variable."""

    base_url: str
    model: str
    api_key_env: str = ""  # e.g. "OPENAI_API_KEY"; "" = send no key
    extra_body: dict = field(default_factory=dict)  # engine-specific fields merged into chat/completions bodies
    timeout_s: float = 60.0
    key_required: bool = False  # True: an unset variable is an error before any request
    check_model: bool = True  # preflight: `model` must be among GET /models (False: TGI, which ignores it)
    _client: object = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        if not isinstance(self.api_key_env, str) or (self.api_key_env and not _ENV_NAME.match(self.api_key_env)):
            # never echo the value: it may be the key itself, passed where its variable's name belongs
            raise LabError("api_key_env must be the name of an environment variable (letters, digits, _), "
                           "not the API key itself")
        if not isinstance(self.extra_body, dict):
            raise LabError(f"extra_body must be a dict of JSON fields, got {type(self.extra_body).__name__}")
        if not isinstance(self.timeout_s, (int, float)) or self.timeout_s <= 0:
            raise LabError(f"timeout_s must be a positive number of seconds, got {self.timeout_s!r}")

    # ------------------------------------------------------------------ key, headers, URLs

    @property
    def api_key(self) -> str:
        """The key, read from the environment now ('' when no variable is named or it is unset)."""
        key = os.environ.get(self.api_key_env, "") if self.api_key_env else ""
        if not key and self.key_required:
            what = f"environment variable {self.api_key_env} is not set" if self.api_key_env else "no api_key_env is named"
            raise LabError(f"endpoint {self.base_url}: an API key is required but {what}")
        return key

    def headers(self) -> dict:
        key = self.api_key
        return {"Authorization": f"Bearer {key}"} if key else {}

    def key_hint(self) -> str:
        """Where the key came from, for an error message (never the key)."""
        if not self.api_key_env:
            return "no API key was sent (api_key_env is empty)"
        state = "set" if os.environ.get(self.api_key_env) else "NOT set"
        return f"the API key comes from environment variable {self.api_key_env}, which is {state}"

    def url(self, path: str) -> str:
        if not self.base_url.startswith(("http://", "https://")):
            raise LabError(f"endpoint base_url {self.base_url!r}: must start with http:// or https:// "
                           "(an OpenAI-compatible base URL ending in /v1)")
        return self.base_url.rstrip("/") + path

    # ------------------------------------------------------------------ the sync client (httpx)

    def _http(self):
        import httpx

        if self._client is None:
            self._client = httpx.Client(timeout=self.timeout_s)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _call(self, method: str, path: str, body: dict | None = None, timeout_s: float | None = None) -> dict:
        """One request; any failure becomes a one-line LabError naming the URL (never the key)."""
        import httpx

        what, t = f"{method} {path}", timeout_s or self.timeout_s
        try:
            r = self._http().request(method, self.url(path), json=body, headers=self.headers(), timeout=t)
        except (httpx.ConnectError, httpx.ConnectTimeout) as e:
            raise LabError(f"endpoint {self.base_url} unreachable: {type(e).__name__}: {_one_line(e)}") from None
        except httpx.TimeoutException:
            raise LabError(f"endpoint {self.base_url}: {what} timed out after {t:g} s") from None
        except httpx.HTTPError as e:
            raise LabError(f"endpoint {self.base_url}: {what} failed: {type(e).__name__}: {_one_line(e)}") from None
        if r.status_code in (401, 403):
            raise LabError(f"endpoint {self.base_url}: {what} gave HTTP {r.status_code}; {self.key_hint()}")
        if r.status_code == 404 and path == "/models":
            raise LabError(f"endpoint {self.base_url}: GET /models gave HTTP 404; "
                           "is this an OpenAI-compatible base URL ending in /v1?")
        if r.status_code != 200:
            raise LabError(f"endpoint {self.base_url}: {what} gave HTTP {r.status_code}: {_one_line(r.text)}")
        try:
            data = r.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise LabError(f"endpoint {self.base_url}: {what} answered something that is not an OpenAI JSON "
                           f"object ({_one_line(r.text, 80)!r}); is this an OpenAI-compatible server?")
        return data

    def preflight(self, timeout_s: float = 5.0) -> list[str]:
        """GET /models: the served model names, or a one-line LabError within seconds for an
        unreachable URL, a wrong scheme or path, a rejected key, a non-OpenAI answer, a wrong model."""
        self.headers()  # a required but unset key fails here, before the network
        data = self._call("GET", "/models", timeout_s=timeout_s)
        try:
            names = [m["id"] for m in data["data"]]
        except (KeyError, TypeError):
            raise LabError(f"endpoint {self.base_url}: GET /models is not an OpenAI model list "
                           "(no data[].id); is this an OpenAI-compatible server?") from None
        if names and self.check_model and self.model not in names:
            raise LabError(f"endpoint {self.base_url} does not serve model {self.model!r}; it serves {names}")
        return names

    # ------------------------------------------------------------------ chat

    def _chat(self, messages: list[dict] | str, max_tokens: int, temperature: float, extra: dict) -> tuple[dict, float]:
        """POST /chat/completions (a string is one user message; `extra` fields last, they win):
        (the answer's JSON, seconds)."""
        if isinstance(messages, str):
            messages = [{"role": "user", "content": messages}]
        body = {"model": self.model, "messages": messages, "max_tokens": max_tokens, "temperature": temperature, **extra}
        t0 = time.perf_counter()
        return self._call("POST", "/chat/completions", body), time.perf_counter() - t0

    def chat(self, messages: list[dict] | str, max_tokens: int, temperature: float = 0.0, **kw) -> Reply:
        """One non-streaming chat completion (greedy by default); `kw` are extra body fields."""
        data, seconds = self._chat(messages, max_tokens, temperature, {**self.extra_body, **kw})
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise LabError(f"endpoint {self.base_url}: /chat/completions answer has no "
                           "choices[0].message.content") from None
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        return Reply(text, int_or_none(usage.get("completion_tokens")), int_or_none(usage.get("prompt_tokens")),
                     seconds, choice.get("finish_reason"))

    def chat_logprobs(self, messages: list[dict] | str, max_tokens: int, top_logprobs: int = 1,
                      temperature: float = 0.0, required: bool = True, **kw) -> tuple[Reply, Logprobs]:
        """A chat completion with per-token log-probs (OpenAI chat format: logprobs=true and
        top_logprobs=N), as (Reply, Logprobs in the completions layout). The server applies the
        model's own chat template, so no tokenizer is needed here. A LabError when none come back,
        unless required=False (a guard in front may answer with a canned text and no log-probs:
        the Logprobs are then empty)."""
        data, seconds = self._chat(messages, max_tokens, temperature, {
            "logprobs": True, "top_logprobs": max(1, int(top_logprobs)), **self.extra_body, **kw})
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
            content = (choice.get("logprobs") or {}).get("content")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise LabError(f"endpoint {self.base_url}: /chat/completions answer has no choices[0].message") from None
        if not required and not content:
            content = []
        elif not isinstance(content, list) or (max_tokens > 0 and not content and text):
            raise LabError(f"endpoint {self.base_url}: /chat/completions gave no logprobs.content for model "
                           f"{self.model!r}; this server does not return chat log-probs")
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        reply = Reply(text, int_or_none(usage.get("completion_tokens")), int_or_none(usage.get("prompt_tokens")),
                      seconds, choice.get("finish_reason"))
        lp = Logprobs(text, [c.get("token") for c in content],
                      [None if c.get("logprob") is None else float(c["logprob"]) for c in content],
                      [{str(t.get("token")): float(t.get("logprob")) for t in (c.get("top_logprobs") or [])}
                       for c in content])
        return reply, lp

    def session(self, limit: int = 0, client: str = "aiohttp"):
        """A session for astream_chat (create it inside the running loop). client="aiohttp": an
        aiohttp session; limit=0: no client-side connection cap, the caller sets the concurrency.
        client="wire": the socket client's connection pool (wire.py: plain http://, the clock
        from the request's write to the kernel's receive time of each chunk)."""
        if client == "wire":
            from llmarch_lab.llm.endpoint.wire import Pool

            return Pool(self.url(""), connect_timeout_s=min(10.0, self.timeout_s))
        if client != "aiohttp":
            raise LabError(f"client {client!r}: use 'aiohttp' or 'wire'")
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=None, sock_connect=min(10.0, self.timeout_s), sock_read=self.timeout_s)
        # An idle connection is dropped after 4 s, before the servers do (cpp-httplib in llama-server
        # and uvicorn in vLLM close idle keep-alive connections after 5 s; aiohttp's default is 15 s).
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=limit, keepalive_timeout=4.0),
                                     timeout=timeout)

    async def astream_chat(self, messages: list[dict], max_tokens: int, temperature: float = 0.0,
                           session=None, **kw) -> Stream:
        """Stream one chat completion and time every chunk. Failures (HTTP status, timeout after
        timeout_s, dropped connection, an error event) become `error`, never an exception.
        `session` from self.session(): aiohttp's (the default) or the socket client's (wire.py)."""
        import aiohttp

        from llmarch_lab.llm.endpoint import wire

        if session is None:
            async with self.session() as s:
                return await self.astream_chat(messages, max_tokens, temperature, session=s, **kw)
        body = {"model": self.model, "messages": messages, "max_tokens": max_tokens, "stream": True,
                "stream_options": {"include_usage": True}, "temperature": temperature, **self.extra_body, **kw}
        url, headers = self.url("/chat/completions"), self.headers()
        st, parts = Stream(t0=time.perf_counter()), []
        end = None
        try:
            async with asyncio.timeout(self.timeout_s):
                if isinstance(session, wire.Pool):
                    end = await wire.stream(session, urlsplit(url).path, headers, json.dumps(body).encode(), st, parts)
                else:
                    await self._aiohttp_stream(session, url, body, headers, st, parts)
        except TimeoutError:
            st.error = f"timeout after {self.timeout_s:g} s"
        except (aiohttp.ClientError, RuntimeError, OSError) as e:
            st.error = (f"{type(e).__name__}: {e}"[:400]).rstrip(": ")
        end = end if end is not None else time.perf_counter()
        st.text = "".join(parts)
        if not st.error and st.ttft_ms is None:
            st.error = "no content in the stream"
        if not st.error:
            st.e2e_ms = (end - st.t0) * 1000
        return st

    @staticmethod
    async def _aiohttp_stream(session, url: str, body: dict, headers: dict, st: Stream, parts: list) -> None:
        import aiohttp

        answered = False
        for attempt in (0, 1):
            try:
                # The second attempt goes on a connection of its own (a pooled one may be
                # just as stale as the first).
                fresh = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True),
                                              timeout=session.timeout) if attempt else None
                async with (fresh or session).post(url, json=body, headers=headers) as resp:
                    answered = True
                    if resp.status != 200:
                        text = (await resp.read()).decode(errors="replace")
                        raise RuntimeError(f"HTTP {resp.status}: {text[:300]}")
                    await read_sse(resp, st, parts)
                break
            except (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError):
                # A kept-alive connection the server had already closed (llama-server's
                # HTTP library closes some after a streamed answer): nothing was answered,
                # so the request is sent once more on a new connection, as HTTP clients
                # do for a stale pooled connection (RFC 9112, 9.3.1). A second failure,
                # or one after the answer began, is the request's error.
                if answered or attempt:
                    raise
                st.reconnects += 1
            finally:
                if fresh is not None:
                    await fresh.close()

    # ------------------------------------------------------------------ log-probs

    def completion_logprobs(self, prompt: str, max_tokens: int = 1, top_logprobs: int = 20, **kw) -> Logprobs:
        """POST /completions with `logprobs=top_logprobs` (greedy). The prompt is sent as it is:
        apply the chat template yourself. A LabError when the server gives no log-probs."""
        body = {"model": self.model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0,
                "logprobs": top_logprobs, **self.extra_body, **kw}
        data = self._call("POST", "/completions", body)
        try:
            choice = data["choices"][0]
            lp = choice.get("logprobs")
        except (KeyError, IndexError, TypeError, AttributeError):
            raise LabError(f"endpoint {self.base_url}: /completions answer has no choices[0]") from None
        if not isinstance(lp, dict) or not isinstance(lp.get("top_logprobs"), list) or not lp["top_logprobs"]:
            raise LabError(f"endpoint {self.base_url}: /completions gave no logprobs.top_logprobs for model "
                           f"{self.model!r}; this server does not return completion log-probs")
        top = [{str(k): float(v) for k, v in (d or {}).items()} for d in lp["top_logprobs"]]
        return Logprobs(choice.get("text") or "", list(lp.get("tokens") or []),
                        [None if x is None else float(x) for x in lp.get("token_logprobs") or []], top)

    def label_logprobs(self, prompt: str, labels, first_tokens=None, top_logprobs: int = 20,
                       strict: bool = False) -> dict:
        """{label: log-prob of the label's first token as the next token after `prompt`}, from
        the server's top-`top_logprobs` list; None for a label not in that list (strict=True
        raises instead). The server reports tokens as text, so each label is looked up as
        `first_tokens[i]` (default: the label itself; pass the tokenizer's first-token text
        when a label is several tokens, e.g. tok.decode(local.label_token_ids(tok, labels)[i]))."""
        labels = list(labels)
        keys = list(first_tokens) if first_tokens is not None else labels
        if len(keys) != len(labels):
            raise LabError(f"label_logprobs: {len(labels)} labels but {len(keys)} first tokens")
        top = self.completion_logprobs(prompt, max_tokens=1, top_logprobs=top_logprobs).top_logprobs[0]
        out = {lab: top.get(k) for lab, k in zip(labels, keys)}
        missing = [lab for lab, v in out.items() if v is None]
        if missing and strict:
            shown = sorted(top, key=top.get, reverse=True)[:8]
            raise LabError(f"label(s) {missing} not among the top {top_logprobs} next tokens from "
                           f"{self.base_url} (top: {shown}); raise top_logprobs or check first_tokens")
        return out

    # ------------------------------------------------------------------ embeddings, openai

    def embeddings(self, texts: list[str] | str) -> list[list[float]]:
        """POST /embeddings: one vector per text, in the order given (the answer's `index` decides)."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        data = self._call("POST", "/embeddings", {"model": self.model, "input": texts})
        try:
            items = sorted(enumerate(data["data"]), key=lambda p: p[1].get("index", p[0]))
            vecs = [[float(x) for x in d["embedding"]] for _, d in items]
        except (KeyError, TypeError, ValueError, AttributeError):
            raise LabError(f"endpoint {self.base_url}: /embeddings is not an OpenAI embedding list "
                           "(data[].embedding)") from None
        if len(vecs) != len(texts):
            raise LabError(f"endpoint {self.base_url}: /embeddings gave {len(vecs)} vectors for {len(texts)} texts")
        return vecs

    def openai_client(self, async_: bool = True):
        """An (Async)OpenAI client on the same base URL, key, timeout (no retries). extra_body is
        not attached: the openai client has no default body; pass it per call where needed."""
        from openai import AsyncOpenAI, OpenAI

        cls = AsyncOpenAI if async_ else OpenAI
        return cls(base_url=self.base_url, api_key=self.api_key or "none", timeout=self.timeout_s, max_retries=0)
