"""The guard service (the lab's .venv: Starlette + uvicorn): POST /check_input, /check_output around
a policy.Guard, with its audit log and escalation queue. Started by launch.launch as
`python -m llmarch_lab.labs.guardrails.gateway serve-guard`."""

from __future__ import annotations

import json
import threading
from pathlib import Path


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
