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

Per-key limits: launch(..., keys_file=...) authenticates every request through keys.py (LiteLLM
custom auth: each key's rpm / tpm / max-parallel limits, HTTP 429 above them; bodies checked,
HTTP 400 naming the field).

Modules: hook.py (the LiteLLM guardrail: standard library only at the top, loaded by path),
keys.py (per-key limits and body checks, also loaded by path),
service.py (the guard service), launch.py (Gateway, launch, litellm_config), __main__.py
(`python -m llmarch_lab.labs.guardrails.gateway serve-guard`).
"""

from llmarch_lab.labs.guardrails.gateway.hook import (
    BLOCK_STYLES,
    ENV_STYLE,
    ENV_TIMEOUT,
    ENV_URL,
    ENV_WINDOW,
    HOOK_NAME,
    guardrail_class,
)
from llmarch_lab.labs.guardrails.gateway.launch import Gateway, launch, litellm_config
from llmarch_lab.labs.guardrails.gateway.service import make_guard_app, serve_guard

__all__ = ["BLOCK_STYLES", "ENV_STYLE", "ENV_TIMEOUT", "ENV_URL", "ENV_WINDOW", "HOOK_NAME", "guardrail_class", "Gateway", "launch", "litellm_config", "make_guard_app", "serve_guard"]
