"""The guard in front of an engine as a real OpenAI-compatible gateway: a LiteLLM proxy whose
custom guardrail calls the lab's guard service.

    with gateway.launch(eng.base_url, guard_config, log_path=run_dir / "gateway.log",
                        model_name=eng.model_name) as gw:
        gw.base_url                 # http://127.0.0.1:<port>/v1, OpenAI-compatible, guarded
        gw.endpoint().chat(...)     # the lab's client on it
        gw.escalations()            # the human-review queue (DataFrame) for the artifact table
        gw.audit_path               # the hash-chained audit log (audit.verify)

Three processes, all on 127.0.0.1, each in its own process group:

    client -> LiteLLM proxy (.engines/litellm) -> llama.cpp / vLLM (the engine, started by the caller)
                 |  LabGuardrail hooks: pre_call, post_call, streaming iterator
                 v
              guard service (the lab's .venv: Starlette + uvicorn): POST /check_input, /check_output

Why a separate guard service rather than importing the guard into LiteLLM: the scorers need the
lab's environment (presidio/spaCy, torch, scikit-learn), which clashes with litellm[proxy]'s
pins; the scorers are CPU-bound and would stall the proxy's event loop if run inside it; and the
guard (with its audit log and escalation queue) stays one process whatever the proxy does. The
cost is one loopback HTTP round trip per stage (about a millisecond).

The hook class lives in this file. LiteLLM loads it through a three-line shim written next to its
config.yaml that loads this file by path, so this module imports only the standard library at the
top (no llmarch_lab, pydantic or litellm): it runs in both environments.

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

import argparse
import copy
import json
import os
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

HOOK_NAME = "llmarch-guard"
ENV_URL = "LLMARCH_GUARD_URL"
ENV_STYLE = "LLMARCH_GUARD_BLOCK_STYLE"
ENV_WINDOW = "LLMARCH_GUARD_STREAM_WINDOW"
ENV_TIMEOUT = "LLMARCH_GUARD_TIMEOUT_S"
BLOCK_STYLES = ("refusal", "error")
_COMPLETION_CALLS = ("completion", "acompletion")


def _lab_error(msg: str) -> Exception:
    try:
        from llmarch_lab import LabError
    except ImportError:  # inside the litellm environment
        return RuntimeError(msg)
    return LabError(msg)


# ====================================================================== the guard service (lab venv)


def make_guard_app(guard, escalations_path: Path | None = None, redactor=None):
    """The Starlette app around a policy.Guard. Scoring runs in the threadpool (it is CPU-bound)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from llmarch_lab.labs.guardrails.policy import message_text

    lock = threading.Lock()

    def escalate(d) -> None:
        if escalations_path is None or not d.escalated:
            return
        row = {"ts": d.ts, "request_id": d.request_id, "stage": d.stage, "checks": ",".join(d.tripped),
               "scores": d.scores, "text": redactor(d.text) if redactor else d.text, "status": "pending"}
        with lock, open(escalations_path, "a") as f:
            f.write(json.dumps(row) + "\n")

    def do_input(body: dict) -> dict:
        msgs = body.get("messages") or []
        d = guard.check_input(message_text(msgs), request_id=str(body.get("request_id") or ""))
        escalate(d)
        reply = guard.reply_for(d)
        redacted = guard.redact_messages(msgs) if (reply is None and d.action == "redact") else None
        return {"decision": d.to_record(), "reply": reply, "messages": redacted}

    def do_output(body: dict) -> dict:
        d = guard.check_output(str(body.get("text") or ""), context={"messages": body.get("messages") or []},
                               request_id=str(body.get("request_id") or ""))
        escalate(d)
        return {"decision": d.to_record(), "reply": guard.reply_for(d), "text": d.text}

    def route(fn):
        async def handler(request):
            try:
                body = await request.json()
            except ValueError:
                return JSONResponse({"error": "body is not JSON"}, status_code=400)
            return JSONResponse(await run_in_threadpool(fn, body))
        return handler

    async def health(request):
        return JSONResponse({"ok": True, "checks": [c.spec.name for c in guard.checks]})

    async def escalations(request):
        return JSONResponse(guard.escalations.rows)

    return Starlette(routes=[Route("/health", health), Route("/escalations", escalations),
                             Route("/check_input", route(do_input), methods=["POST"]),
                             Route("/check_output", route(do_output), methods=["POST"])])


def serve_guard(config_path: str, port: int, audit_path: str = "", escalations_path: str = "",
                redactor: str = "", parent_pid: int = 0) -> None:
    from llmarch_lab.labs.guardrails import audit, policy
    from llmarch_lab.llm import litellm_proxy

    if parent_pid:
        litellm_proxy.watch_parent(parent_pid)
    cfg = policy.GuardConfig.model_validate_json(Path(config_path).read_text())
    red = audit.regex_redact
    if redactor:
        import importlib

        mod, _, attr = redactor.partition(":")
        red = getattr(importlib.import_module(mod), attr)
    log = audit.AuditLog(audit_path, redactor=red) if audit_path else None
    guard = policy.Guard(cfg, audit=log)
    app = make_guard_app(guard, Path(escalations_path) if escalations_path else None, red)
    litellm_proxy.serve(app, port)


# ====================================================================== the LiteLLM hook (litellm venv)


def guardrail_class():
    """Build the LiteLLM CustomGuardrail subclass (imports litellm: call it in that environment)."""
    import httpx
    from fastapi import HTTPException
    from litellm.integrations.custom_guardrail import CustomGuardrail
    from litellm.types.guardrails import GuardrailEventHooks

    class LabGuardrail(CustomGuardrail):
        """pre_call: input checks (block / hold / redact the messages); post_call: output checks on
        the whole answer; streaming: output checks on a holdback window (module docstring)."""

        def __init__(self, **kwargs):
            self.guard_url = os.environ.get(ENV_URL, "").rstrip("/")
            self.block_style = os.environ.get(ENV_STYLE, "refusal")
            self.window = int(os.environ.get(ENV_WINDOW, "0") or 0)
            self.guard_timeout = float(os.environ.get(ENV_TIMEOUT, "30"))
            self._clients: dict = {}
            kwargs.setdefault("supported_event_hooks", [GuardrailEventHooks.pre_call, GuardrailEventHooks.post_call])
            super().__init__(**kwargs)

        # ------------------------------------------------------------ the guard service

        def _client(self):
            import asyncio

            loop = asyncio.get_running_loop()
            c = self._clients.get(id(loop))
            if c is None:
                c = self._clients[id(loop)] = httpx.AsyncClient(timeout=self.guard_timeout)
            return c

        async def _ask(self, path: str, body: dict) -> dict:
            try:
                r = await self._client().post(self.guard_url + path, json=body)
                r.raise_for_status()
                return r.json()
            except (httpx.HTTPError, ValueError) as e:  # fail closed, and say so in the proxy's log
                print(f"llmarch-guard: {path} failed ({type(e).__name__}: {e}); blocking", file=sys.stderr, flush=True)
                msg = f"guard service unavailable ({type(e).__name__}); request blocked"
                return {"decision": {"action": "block", "tripped": ["guard_service"], "error": str(e)[:200]},
                        "reply": msg, "messages": None, "text": ""}

        @staticmethod
        def _rid(data: dict) -> str:
            rid = data.get("litellm_call_id")
            if not rid:
                rid = data["litellm_call_id"] = uuid.uuid4().hex
            return str(rid)

        def _stop(self, res: dict, data: dict, stage: str, original_response=None):
            d = res.get("decision") or {}
            info = {"stage": stage, "action": d.get("action"), "tripped": d.get("tripped"),
                    "scores": d.get("scores"), "request_id": d.get("request_id")}
            if stage == "input" and self.block_style == "error":
                raise HTTPException(status_code=400, detail={
                    "error": {"message": res["reply"], "type": "guardrail_blocked", "code": "content_filter",
                              "param": None, "guardrail": HOOK_NAME, **info}})
            self.raise_passthrough_exception(violation_message=res["reply"], request_data=data,
                                             detection_info=info, original_response=original_response)

        # ------------------------------------------------------------ hooks

        async def async_pre_call_hook(self, user_api_key_dict, cache, data: dict, call_type):
            if call_type not in _COMPLETION_CALLS or not isinstance(data.get("messages"), list):
                return data
            res = await self._ask("/check_input", {"messages": data["messages"], "request_id": self._rid(data)})
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
                                                    "request_id": self._rid(data)})
            if res.get("reply") is not None:
                self._stop(res, data, "output", original_response=response)
            if res.get("text") is not None and res["text"] != text:
                msg.content = res["text"]
            return response

        async def async_post_call_streaming_iterator_hook(self, user_api_key_dict, response, request_data: dict):
            rid, msgs = self._rid(request_data), request_data.get("messages")
            held: list = []
            text, released, checked = "", 0, 0  # chars: received, released to the client, last checked
            last = None

            async def check(final: bool):  # each check (window or final) is one audited output decision
                return await self._ask("/check_output", {"text": text, "messages": msgs, "request_id": rid})

            def content(ch) -> str:
                try:
                    return ch.choices[0].delta.content or ""
                except (AttributeError, IndexError):
                    return ""

            def with_content(ch, s: str, finish=None):
                out = copy.deepcopy(ch)
                try:
                    out.choices[0].delta.content = s
                    if finish is not None:
                        out.choices[0].finish_reason = finish
                except (AttributeError, IndexError):
                    pass
                return out

            def verdict(res):
                """(stop_text or None, replacement for the held text or None)."""
                if res.get("reply") is not None:
                    return res["reply"], None
                t = res.get("text")
                if t is not None and t != text and t[:released] == text[:released]:
                    return None, t[released:]
                return None, None

            async for chunk in response:
                last = chunk
                piece = content(chunk)
                if self.window <= 0:
                    text += piece
                    yield chunk
                    released = len(text)
                    continue
                held.append(chunk)
                text += piece
                if len(text) - checked >= self.window:
                    checked = len(text)
                    stop, repl = verdict(await check(False))
                    if stop is not None:
                        yield with_content(held[0], stop, "content_filter")
                        return
                    if repl is not None:
                        yield with_content(held[-1], repl)
                    else:
                        for h in held:
                            yield h
                    held, released = [], len(text)
            stop, repl = verdict(await check(True))
            if stop is not None:
                if last is not None:
                    yield with_content(last, stop, "content_filter")
                return
            if repl is not None and held:
                tail = held[-1]
                yield with_content(held[0], repl)
                if content(tail) == "" and tail is not held[0]:
                    yield tail  # the finish / usage chunk
            else:
                for h in held:
                    yield h

    return LabGuardrail


def __getattr__(name: str):  # PEP 562: `LabGuardrail` is built on first access (in the litellm venv)
    if name == "LabGuardrail":
        cls = guardrail_class()
        globals()["LabGuardrail"] = cls
        return cls
    raise AttributeError(name)


# ====================================================================== launch (lab venv)


def litellm_python() -> Path:
    """The LiteLLM environment's interpreter (LLMARCH_LITELLM_PYTHON overrides; llm.litellm_proxy)."""
    from llmarch_lab.llm import litellm_proxy

    return litellm_proxy.litellm_python(check=False)


@dataclass
class Gateway:
    base_url: str  # the proxy's OpenAI base URL (ends in /v1)
    model_name: str
    guard_url: str
    engine_base_url: str
    run_dir: Path
    log_path: Path
    guard_log_path: Path
    audit_path: Path | None
    escalations_path: Path
    block_style: str
    stream_window_chars: int
    api_key_env: str = ""  # NAME of the variable (in this process) holding the proxy's master key
    procs: dict = field(default_factory=dict)  # name -> Popen
    start_s: float = 0.0

    def endpoint(self, **kw):
        """The lab's client on the gateway, with its key (kw: extra_body, timeout_s, ...)."""
        from llmarch_lab.llm.endpoint import Endpoint

        return Endpoint(self.base_url, self.model_name, **{"api_key_env": self.api_key_env, **kw})

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {os.environ.get(self.api_key_env, '')}"}

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs.values()]

    def alive(self) -> bool:
        return any(p.poll() is None for p in self.procs.values())

    def escalations(self):
        import pandas as pd

        from llmarch_lab.labs.guardrails.policy import EscalationQueue

        rows = []
        if self.escalations_path.exists():
            rows = [json.loads(line) for line in self.escalations_path.read_text().splitlines() if line.strip()]
        return pd.DataFrame(rows, columns=list(EscalationQueue.COLUMNS))

    def log_tail(self, n: int = 15) -> str:
        from llmarch_lab.llm import litellm_proxy

        return litellm_proxy.log_tail((self.log_path, self.guard_log_path), n)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM each child's process group (proxy first), SIGKILL what is left after `timeout`."""
        from llmarch_lab.llm import litellm_proxy  # here: the LiteLLM venv imports this module too

        litellm_proxy.stop_all(self.procs, ("litellm", "guard"), timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        from llmarch_lab.llm import litellm_proxy

        self.stop()
        litellm_proxy.drop_master_key(self.api_key_env)


def launch(engine_base_url: str, guard_config, log_path, *, model_name: str = "smollm2-135m-instruct",
           block_style: str = "refusal", stream_window_chars: int = 64, audit_path=None, redactor: str = "",
           run_dir=None, ready_timeout_s: float = 180.0, prometheus: bool = False) -> Gateway:
    """Start the guard service and the LiteLLM proxy in front of `engine_base_url` (an OpenAI base
    URL ending in /v1, serving `model_name`); wait until both answer; return the Gateway (use it as
    a context manager: every child is stopped on exit, also when starting fails).

    guard_config: a policy.GuardConfig (or dict) whose checks name their scorers (built-in or
    "module:attr"): the guard runs in another process, so callables cannot be passed here.
    audit_path: the audit log (default run_dir/audit.jsonl); redactor: "module:attr" of the audit
    redactor (default: audit.regex_redact)."""
    from llmarch_lab.labs.guardrails import policy
    from llmarch_lab.llm import litellm_proxy as lp

    if block_style not in BLOCK_STYLES:
        raise _lab_error(f"gateway: block_style {block_style!r}: use one of {', '.join(BLOCK_STYLES)}")
    cfg = guard_config if isinstance(guard_config, policy.GuardConfig) else policy.GuardConfig.model_validate(guard_config)
    missing = [c.name for c in cfg.checks if c.enabled and not c.scorer]
    if missing:
        raise _lab_error(f"gateway: checks {missing} name no scorer; the guard service resolves scorers by name "
                         "(CheckSpec.scorer = a built-in or 'module:attr')")
    policy.Guard(cfg)  # resolve every scorer here first: a bad config fails before any process starts
    py = lp.litellm_python(who="gateway")
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    run_dir = Path(run_dir) if run_dir else log_path.parent / f"{log_path.stem}.d"
    run_dir.mkdir(parents=True, exist_ok=True)
    guard_port, proxy_port = lp.free_ports(2)
    audit_path = Path(audit_path) if audit_path else run_dir / "audit.jsonl"
    (run_dir / "guard.json").write_text(cfg.model_dump_json(indent=2))
    lp.write_shim(run_dir / "lab_guard_hook.py", __file__, "llmarch_guard_gateway", "LabGuardrail", "guardrail_class",
                  writer="llmarch_lab.labs.guardrails.gateway.launch")
    lp.write_config(run_dir / "config.yaml", _litellm_config(engine_base_url, model_name, prometheus))
    gw = Gateway(f"http://127.0.0.1:{proxy_port}/v1", model_name, f"http://127.0.0.1:{guard_port}", engine_base_url,
                 run_dir, log_path, log_path.with_suffix(".guard.log"), audit_path, run_dir / "escalations.jsonl",
                 block_style, stream_window_chars, api_key_env=lp.new_master_key(proxy_port))
    base_env = lp.child_env(("LLMARCH_GUARD_",))
    logs = (gw.log_path, gw.guard_log_path)
    t0 = time.perf_counter()
    deadline = t0 + ready_timeout_s
    try:
        gw.procs["guard"] = lp.spawn(
            [sys.executable, "-m", "llmarch_lab.labs.guardrails.gateway", "serve-guard", "--config",
             str(run_dir / "guard.json"), "--port", str(guard_port), "--audit", str(audit_path),
             "--escalations", str(gw.escalations_path), "--redactor", redactor, "--parent-pid", str(os.getpid())],
            gw.guard_log_path, base_env)
        gw.procs["litellm"] = lp.start_proxy(
            run_dir / "config.yaml", proxy_port, log_path,
            lp.proxy_env(gw.api_key_env, {ENV_URL: gw.guard_url, ENV_STYLE: block_style,
                                          ENV_WINDOW: str(stream_window_chars)}, base=base_env), python=py)
        lp.wait_healthy("guard", gw.procs["guard"], gw.guard_url + "/health", deadline, logs)
        lp.wait_healthy("litellm", gw.procs["litellm"], lp.proxy_health_url(proxy_port), deadline, logs)
    except BaseException:
        gw.stop()
        lp.drop_master_key(gw.api_key_env)
        raise
    gw.start_s = time.perf_counter() - t0
    return gw


def _litellm_config(engine_base_url: str, model_name: str, prometheus: bool = False) -> dict:
    """The proxy's config; prometheus=True adds LiteLLM's Prometheus callback (GET /metrics, open
    to a scraper without the master key, as a Prometheus server scrapes it)."""
    cfg = {
        "model_list": [{"model_name": model_name,
                        "litellm_params": {"model": f"openai/{model_name}", "api_base": engine_base_url,
                                           "api_key": "none"}}],
        "guardrails": [{"guardrail_name": HOOK_NAME,
                        "litellm_params": {"guardrail": "lab_guard_hook.LabGuardrail",
                                           "mode": ["pre_call", "post_call"], "default_on": True}}],
        "litellm_settings": {"drop_params": True, "num_retries": 0, "request_timeout": 600},
    }
    if prometheus:
        cfg["litellm_settings"].update({"callbacks": ["prometheus"], "require_auth_for_metrics_endpoint": False})
    return cfg


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m llmarch_lab.labs.guardrails.gateway")
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve-guard", help="the guard service (started by launch)")
    s.add_argument("--config", required=True)
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--audit", default="")
    s.add_argument("--escalations", default="")
    s.add_argument("--redactor", default="")
    s.add_argument("--parent-pid", type=int, default=0)
    a = ap.parse_args(argv)
    serve_guard(a.config, a.port, a.audit, a.escalations, a.redactor, a.parent_pid)
    return 0


if __name__ == "__main__":
    sys.exit(main())
