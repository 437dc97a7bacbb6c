"""The guard service (the lab's .venv: Starlette + uvicorn): POST /check_input, /check_output around
a policy.Guard, with its audit log and escalation queue. Started by launch.launch as
`python -m llmarch_lab.labs.guardrails.gateway serve-guard`.

    GET  /health                      the checks it runs
    GET  /escalations[?status=pending] the human-review queue (rows, oldest first)
    POST /escalations/{id}/resolve    {"verdict": "allow" | "block", "reviewer": "..."} -> the row
    GET  /metrics                     Prometheus text: the counters below (no key needed, as a scraper)

Prometheus (prometheus_client, a registry per app):
    guard_decisions_total{stage, check, action}   per check per decision: the check's own outcome
        (allow; its action when tripped; escalate in its band; skipped; error)
    guard_requests_total{stage, action}           per decision: the stage's overall action
    guard_decision_seconds{stage}                 histogram of a stage's time inside the guard
    guard_escalations_pending                     rows waiting for a reviewer
"""

from __future__ import annotations

from pathlib import Path

BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def check_outcome(c) -> str:
    """One check's own outcome in a decision, the `action` label of guard_decisions_total."""
    if c.skipped:
        return "skipped"
    if c.error:
        return "error"
    if c.tripped:
        return c.action
    return "escalate" if c.escalated else "allow"


class GuardMetrics:
    """The service's Prometheus counters, in their own registry (several apps in one process, as
    in tests, do not collide)."""

    def __init__(self, guard):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.decisions = Counter("guard_decisions", "Guard check outcomes, per check and decision",
                                 ["stage", "check", "action"], registry=self.registry)
        self.requests = Counter("guard_requests", "Guard decisions by their overall action",
                                ["stage", "action"], registry=self.registry)
        self.seconds = Histogram("guard_decision_seconds", "Time of one stage inside the guard", ["stage"],
                                 buckets=BUCKETS, registry=self.registry)
        pending = Gauge("guard_escalations_pending", "Escalations waiting for a reviewer", registry=self.registry)
        pending.set_function(lambda: len(guard.escalations.pending()))

    def record(self, d) -> None:
        for c in d.checks:
            self.decisions.labels(d.stage, c.name, check_outcome(c)).inc()
        self.requests.labels(d.stage, d.action).inc()
        self.seconds.labels(d.stage).observe(d.latency_ms / 1000.0)

    def text(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def make_guard_app(guard, escalations_path: Path | None = None, redactor=None):
    """The Starlette app around a policy.Guard. Scoring runs in the threadpool (it is CPU-bound).
    escalations_path / redactor: where the guard's EscalationQueue keeps its JSONL and how it
    redacts the texts it queues (else the queue's own settings)."""
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    from llmarch_lab import LabError
    from llmarch_lab.labs.guardrails.policy import message_text

    if escalations_path is not None:
        guard.escalations.path = Path(escalations_path)
    if redactor is not None:
        guard.escalations.redactor = redactor
    metrics = GuardMetrics(guard)

    def do_input(body: dict) -> dict:
        msgs = body.get("messages") or []
        d = guard.check_input(message_text(msgs), request_id=str(body.get("request_id") or ""))
        metrics.record(d)
        reply = guard.reply_for(d)
        redacted = guard.redact_messages(msgs) if (reply is None and d.redacts) else None
        return {"decision": d.to_record(), "reply": reply, "messages": redacted}

    def do_output(body: dict) -> dict:
        d = guard.check_output(str(body.get("text") or ""), context={"messages": body.get("messages") or []},
                               request_id=str(body.get("request_id") or ""))
        metrics.record(d)
        return {"decision": d.to_record(), "reply": guard.reply_for(d), "text": d.text}

    def route(fn):
        async def handler(request):
            try:
                body = await request.json()
            except ValueError:
                return JSONResponse({"error": "body is not JSON"}, status_code=400)
            if not isinstance(body, dict):
                return JSONResponse({"error": "body is not a JSON object"}, status_code=400)
            return JSONResponse(await run_in_threadpool(fn, body))
        return handler

    async def health(request):
        return JSONResponse({"ok": True, "checks": [c.spec.name for c in guard.checks]})

    async def escalations(request):
        status = request.query_params.get("status")
        rows = guard.escalations.pending() if status == "pending" else guard.escalations.rows
        return JSONResponse(rows)

    async def resolve(request):
        try:
            body = await request.json()
        except ValueError:
            return JSONResponse({"error": "body is not JSON"}, status_code=400)
        body = body if isinstance(body, dict) else {}
        try:
            row = guard.escalations.resolve(request.path_params["row_id"], body.get("verdict"), body.get("reviewer"))
        except LabError as e:
            return JSONResponse({"error": str(e)}, status_code=404 if "no such row" in str(e) else 400)
        return JSONResponse(row)

    async def prometheus(request):
        data, ctype = metrics.text()
        return Response(data, media_type=ctype)

    return Starlette(routes=[Route("/health", health), Route("/escalations", escalations),
                             Route("/escalations/{row_id}/resolve", resolve, methods=["POST"]),
                             Route("/metrics", prometheus),
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
    queue = policy.EscalationQueue(Path(escalations_path) if escalations_path else None, redactor=red)
    guard = policy.Guard(cfg, audit=log, escalations=queue)
    app = make_guard_app(guard)
    litellm_proxy.serve(app, port)
