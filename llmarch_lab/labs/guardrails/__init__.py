"""Guardrails lab: PII, prompt injection, toxicity, output validation, policy and audit."""
