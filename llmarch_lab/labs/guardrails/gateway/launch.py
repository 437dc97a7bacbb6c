"""Starting the guard gateway (lab venv): the guard service and the LiteLLM proxy in front of an
engine, as a Gateway (a context manager that stops both)."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

from llmarch_lab import LabError
from llmarch_lab.labs.guardrails.gateway import hook, keys
from llmarch_lab.labs.guardrails.gateway.hook import BLOCK_STYLES, ENV_STYLE, ENV_URL, ENV_WINDOW, HOOK_NAME
from llmarch_lab.llm import litellm_proxy as lp


@dataclass
class Gateway(lp.ProxyGateway):
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
    SERVICE = "guard"
    SERVICE_LOG = "guard_log_path"

    def endpoint(self, **kw):
        """The lab's client on the gateway, with its key (kw: extra_body, timeout_s, ...)."""
        from llmarch_lab.llm.endpoint import Endpoint

        return Endpoint(self.base_url, self.model_name, **{"api_key_env": self.api_key_env, **kw})

    def headers(self) -> dict:
        return {"Authorization": f"Bearer {os.environ.get(self.api_key_env, '')}"}

    def escalations(self):
        """The human-review queue the guard service appended to, as a DataFrame."""
        from llmarch_lab.labs.guardrails.policy import EscalationQueue

        return lp.read_jsonl_frame(self.escalations_path, EscalationQueue.COLUMNS)

    def resolve_escalation(self, row_id: str, verdict: str, reviewer: str) -> dict:
        """A reviewer's verdict (allow | block) on a queued row, through the guard service."""
        import httpx

        r = httpx.post(f"{self.guard_url}/escalations/{row_id}/resolve", json={"verdict": verdict, "reviewer": reviewer},
                       timeout=30)
        if r.status_code != 200:
            raise LabError(f"gateway: resolving escalation {row_id}: {r.json().get('error', r.text[:200])}")
        return r.json()

    def guard_metrics(self) -> dict:
        """The guard service's Prometheus counters, parsed: {(name, ((label, value), ...)): value}."""
        import httpx
        from prometheus_client.parser import text_string_to_metric_families

        r = httpx.get(self.guard_url + "/metrics", timeout=30)
        r.raise_for_status()
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for fam in text_string_to_metric_families(r.text) for s in fam.samples}


def launch(engine_base_url: str, guard_config, log_path, *, model_name: str = "smollm2-135m-instruct",
           block_style: str = "refusal", stream_window_chars: int = 64, audit_path=None, redactor: str = "",
           run_dir=None, ready_timeout_s: float = 180.0, prometheus: bool = False,
           usd_per_1m_tokens: float = 0.0, keys_file=None) -> Gateway:
    """Start the guard service and the LiteLLM proxy in front of `engine_base_url` (an OpenAI base
    URL ending in /v1, serving `model_name`); wait until both answer; return the Gateway (use it as
    a context manager: every child is stopped on exit, also when starting fails).

    guard_config: a policy.GuardConfig (or dict) whose checks name their scorers (built-in or
    "module:attr"): the guard runs in another process, so callables cannot be passed here.
    audit_path: the audit log (default run_dir/audit.jsonl); redactor: "module:attr" of the audit
    redactor (default: audit.regex_redact); keys_file: per-key limits and body checks (keys.py; the
    master key stays unlimited)."""
    from llmarch_lab.labs.guardrails import policy

    if block_style not in BLOCK_STYLES:
        raise LabError(f"gateway: block_style {block_style!r}: use one of {', '.join(BLOCK_STYLES)}")
    cfg = guard_config if isinstance(guard_config, policy.GuardConfig) else policy.GuardConfig.model_validate(guard_config)
    missing = [c.name for c in cfg.checks if c.enabled and not c.scorer]
    if missing:
        raise LabError(f"gateway: checks {missing} name no scorer; the guard service resolves scorers by name "
                       "(CheckSpec.scorer = a built-in or 'module:attr')")
    policy.Guard(cfg)  # resolve every scorer here first: a bad config fails before any process starts
    py = lp.litellm_python(who="gateway")
    log_path, run_dir = lp.run_folders(log_path, run_dir)
    guard_port, proxy_port = lp.free_ports(2)
    audit_path = Path(audit_path) if audit_path else run_dir / "audit.jsonl"
    (run_dir / "guard.json").write_text(cfg.model_dump_json(indent=2))
    lp.write_shim(run_dir / "lab_guard_hook.py", hook.__file__, "llmarch_guard_gateway", "LabGuardrail", "guardrail_class",
                  writer="llmarch_lab.labs.guardrails.gateway.launch")
    hook_vars = {}
    if keys_file:
        if not Path(keys_file).is_file():
            raise LabError(f"gateway: keys_file {keys_file}: no such file (write it with gateway.keys.write_keys)")
        lp.write_shim(run_dir / "lab_keys.py", keys.__file__, "llmarch_gateway_keys", "user_api_key_auth",
                      "auth_function", writer="llmarch_lab.labs.guardrails.gateway.launch")
        hook_vars[keys.ENV] = str(Path(keys_file).resolve())
    lp.write_config(run_dir / "config.yaml", litellm_config(engine_base_url, model_name, prometheus, usd_per_1m_tokens,
                                                            bool(keys_file)))
    gw = Gateway(f"http://127.0.0.1:{proxy_port}/v1", model_name, f"http://127.0.0.1:{guard_port}", engine_base_url,
                 run_dir, log_path, log_path.with_suffix(".guard.log"), audit_path, run_dir / "escalations.jsonl",
                 block_style, stream_window_chars, api_key_env=lp.new_master_key(proxy_port))
    cmd = [sys.executable, "-m", "llmarch_lab.labs.guardrails.gateway", "serve-guard", "--config",
           str(run_dir / "guard.json"), "--port", str(guard_port), "--audit", str(audit_path),
           "--escalations", str(gw.escalations_path), "--redactor", redactor, "--parent-pid", str(os.getpid())]
    return gw.start(cmd, gw.guard_url, run_dir / "config.yaml", proxy_port,
                    {ENV_URL: gw.guard_url, ENV_STYLE: block_style, ENV_WINDOW: str(stream_window_chars), **hook_vars},
                    lp.child_env(("LLMARCH_GUARD_",)), ready_timeout_s, py)


def litellm_config(engine_base_url: str, model_name: str, prometheus: bool = False, usd_per_1m_tokens: float = 0.0,
                   key_limits: bool = False) -> dict:
    """The proxy's config; prometheus=True adds LiteLLM's Prometheus callback (GET /metrics, open
    to a scraper without the master key, as a Prometheus server scrapes it); usd_per_1m_tokens > 0
    prices every token (LiteLLM's custom pricing), so its spend counter counts machine cost;
    key_limits=True authenticates and checks bodies through keys.py (lab_keys.py next to the config)."""
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
    if key_limits:
        cfg["general_settings"] = {"custom_auth": "lab_keys.user_api_key_auth"}
    if usd_per_1m_tokens > 0:
        cfg["model_list"][0]["litellm_params"].update(input_cost_per_token=usd_per_1m_tokens / 1e6,
                                                      output_cost_per_token=usd_per_1m_tokens / 1e6)
    return cfg
