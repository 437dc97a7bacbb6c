"""Process plumbing for a LiteLLM proxy in front of the lab's engines, with small lab-venv services
beside it (the guardrails lab's guard service, the cost lab's router service).

    from llmarch_lab.llm import litellm_proxy as lp
    key_env = lp.new_master_key(proxy_port)          # fresh sk-... in os.environ[LLMARCH_GATEWAY_KEY_<port>]
    lp.write_shim(run_dir / "lab_hook.py", __file__, "my_alias", "Hook", "hook_class")
    lp.write_config(run_dir / "config.yaml", {"model_list": [...], ...})
    svc = lp.spawn([sys.executable, "-m", "my.module", ...], svc_log, lp.child_env())
    proxy = lp.start_proxy(run_dir / "config.yaml", proxy_port, log_path, lp.proxy_env(key_env, {...}))
    lp.wait_healthy("litellm", proxy, lp.proxy_health_url(proxy_port), deadline, [log_path, svc_log])
    ...
    lp.stop_all({"litellm": proxy, "svc": svc}); lp.drop_master_key(key_env)

LiteLLM lives in its own environment (`make engine-litellm` -> .engines/litellm) because
litellm[proxy] pins fastapi/pydantic/openai against the lab's. LiteLLM loads a lab hook through a
three-line shim (write_shim) that loads the hook's module by path, so such a module must import
only the standard library at its top.

Every child runs in its own process group (start_new_session), gets SIGKILL when the launching
process dies (PR_SET_PDEATHSIG, from the main thread), and services also watch their parent pid
(watch_parent), so a killed benchmark leaves nothing running. The proxy's master key is handed
over in environment variables only (never argv, where ps shows it).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from llmarch_lab import LabError
from llmarch_lab.common.files import jsonl_objects
from llmarch_lab.common.procs import (
    free_ports,  # noqa: F401  (re-exported: the gateways call lp.free_ports)
    log_tail,
    spawn,
    stop_all,
    wait_healthy,
)

KEY_ENV_PREFIX = "LLMARCH_GATEWAY_KEY_"
# Variables a child must not inherit from the launcher: other gateways' keys, a stray OpenAI key or
# LiteLLM setting that would change what the proxy does.
CHILD_ENV_DROP = (KEY_ENV_PREFIX, "OPENAI_", "LITELLM_")


def litellm_python(check: bool = True, who: str = "gateway") -> Path:
    """The LiteLLM environment's interpreter (LLMARCH_LITELLM_PYTHON overrides); with `check`, a
    LabError saying how to make it when it is missing."""
    env = os.environ.get("LLMARCH_LITELLM_PYTHON")
    if env:
        py = Path(env)
    else:
        from llmarch_lab import paths

        py = paths.home() / ".engines" / "litellm" / "bin" / "python"
    if check and not py.exists():
        raise LabError(f"{who}: no LiteLLM environment at {py}; run `make engine-litellm` (or set LLMARCH_LITELLM_PYTHON)")
    return py


# ---------------------------------------------------------------------- the master key


def new_master_key(port: int) -> str:
    """Put a fresh master key for the proxy on `port` in os.environ; return the variable's NAME.

    The proxy refuses to start without a master key (right: it would accept anyone). One per
    launch, never in argv; the lab's clients read it by name (Endpoint.api_key_env)."""
    name = f"{KEY_ENV_PREFIX}{port}"
    os.environ[name] = "sk-" + secrets.token_hex(24)
    return name


def drop_master_key(name: str) -> None:
    if name:
        os.environ.pop(name, None)


# ---------------------------------------------------------------------- environments


def child_env(drop_prefixes: tuple[str, ...] = ()) -> dict:
    """This process's environment less the variables no child should inherit (CHILD_ENV_DROP and
    `drop_prefixes`, e.g. a lab's own hook settings, set explicitly where they belong)."""
    drop = CHILD_ENV_DROP + tuple(drop_prefixes)
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def proxy_env(key_env: str, extra: dict | None = None, base: dict | None = None) -> dict:
    """The proxy's environment: `base` (default child_env()), its master key, offline and quiet
    settings (local cost map, no telemetry, no docs pages), then `extra` (a hook's settings)."""
    env = dict(child_env() if base is None else base)
    env.update({"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False",
                "LITELLM_LOG": os.environ.get("LITELLM_LOG", "ERROR"), "LITELLM_MASTER_KEY": os.environ[key_env],
                "NO_DOCS": "True", "NO_REDOC": "True", "HF_HUB_OFFLINE": "1"})
    env.update(extra or {})
    return env


# ---------------------------------------------------------------------- files next to config.yaml


def run_folders(log_path, run_dir=None) -> tuple[Path, Path]:
    """(the proxy's log path, the folder for its config, hook shim and service files), both made;
    run_dir defaults to LOG_STEM.d beside the log."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    run_dir = Path(run_dir) if run_dir else log_path.parent / f"{log_path.stem}.d"
    run_dir.mkdir(parents=True, exist_ok=True)
    return log_path, run_dir


_SHIM = '''# Written by the lab ({writer}): LiteLLM loads this file (next to its config.yaml); it loads the
# hook's module by path, so the lab's package need not be importable in LiteLLM's environment.
import importlib.util
import sys

_spec = importlib.util.spec_from_file_location({alias!r}, {path!r})
_mod = sys.modules[{alias!r}] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
{name} = _mod.{factory}()
'''


def write_shim(path, module_file, alias: str, name: str, factory: str, writer: str = "") -> Path:
    """Write the shim LiteLLM imports as `<path stem>.<name>`: it loads `module_file` by path under
    `alias` and binds `name = module.factory()` (a hook class for guardrails, an instance for
    litellm_settings.callbacks)."""
    path = Path(path)
    path.write_text(_SHIM.format(writer=writer or alias, alias=alias, path=str(Path(module_file).resolve()),
                                 name=name, factory=factory))
    return path


def write_config(path, cfg: dict) -> Path:
    path = Path(path)
    path.write_text(json.dumps(cfg, indent=2))  # JSON is YAML: no yaml dependency needed to write it
    return path


# ---------------------------------------------------------------------- processes


def proxy_command(config_path, port: int, python: Path | None = None) -> list[str]:
    py = python or litellm_python()
    return [str(py), "-m", "litellm.proxy.proxy_cli", "--config", str(config_path), "--host", "127.0.0.1",
            "--port", str(port), "--num_workers", "1"]


def start_proxy(config_path, port: int, log, env: dict, python: Path | None = None) -> subprocess.Popen:
    """Start the LiteLLM proxy on 127.0.0.1:port with `config_path` (env: proxy_env(...))."""
    return spawn(proxy_command(config_path, port, python), log, env)


def proxy_health_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/health/liveliness"  # unauthenticated, answers once the app is up


# ---------------------------------------------------------------------- a gateway's children


@dataclass(kw_only=True)
class ProxyGateway:
    """What the lab's gateways share (the guardrails guard, the cost router): a lab-venv service and
    the LiteLLM proxy as children by name, their logs, stopping them, the context manager. A
    subclass is a dataclass with the field `log_path` (the proxy's log) and the field SERVICE_LOG
    names (the service's log)."""

    api_key_env: str = ""  # NAME of the variable (in this process) holding the proxy's master key
    procs: dict = field(default_factory=dict)  # name -> Popen
    start_s: float = 0.0

    SERVICE = "service"  # the service child's name (its health route is GET <service_url>/health)
    SERVICE_LOG = "service_log_path"

    def logs(self) -> tuple:
        return (self.log_path, getattr(self, self.SERVICE_LOG))

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs.values()]

    def alive(self) -> bool:
        return any(p.poll() is None for p in self.procs.values())

    def log_tail(self, n: int = 15) -> str:
        return log_tail(self.logs(), n)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM each child's process group (proxy first), SIGKILL what is left after `timeout`."""
        stop_all(self.procs, ("litellm", self.SERVICE), timeout)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
        drop_master_key(self.api_key_env)

    def start(self, service_cmd: list[str], service_url: str, config_path, proxy_port: int, proxy_vars: dict,
              base_env: dict, ready_timeout_s: float, python: Path, who: str = "gateway"):
        """Start the service and the proxy (proxy_vars: what the hook reads), wait until both answer;
        on any failure (a timeout, Ctrl-C) stop both, forget the key and re-raise. Returns self."""
        t0 = time.perf_counter()
        deadline = t0 + ready_timeout_s
        try:
            self.procs[self.SERVICE] = spawn(service_cmd, getattr(self, self.SERVICE_LOG), base_env)
            self.procs["litellm"] = start_proxy(config_path, proxy_port, self.log_path,
                                                proxy_env(self.api_key_env, proxy_vars, base=base_env), python=python)
            wait_healthy(self.SERVICE, self.procs[self.SERVICE], service_url + "/health", deadline, self.logs(), who)
            wait_healthy("litellm", self.procs["litellm"], proxy_health_url(proxy_port), deadline, self.logs(), who)
        except BaseException:
            self.stop()
            drop_master_key(self.api_key_env)
            raise
        self.start_s = time.perf_counter() - t0
        return self


def read_jsonl_frame(path, columns):
    """The rows a service appended to `path` (one JSON object a line) as a DataFrame with `columns`."""
    import pandas as pd

    path = Path(path)
    rows = [obj for _, obj in jsonl_objects(path)] if path.exists() else []
    return pd.DataFrame(rows, columns=list(columns))


# ---------------------------------------------------------------------- the service side


def watch_parent(parent_pid: int) -> None:
    """Exit when the process that launched us is gone (a killed benchmark leaves no orphan, also
    where PDEATHSIG was not set)."""
    def loop():
        while True:
            if os.getppid() != parent_pid:
                os._exit(0)
            time.sleep(0.5)

    threading.Thread(target=loop, daemon=True).start()


def serve(app, port: int, parent_pid: int = 0) -> None:
    """Serve an ASGI app on 127.0.0.1:port (uvicorn, quiet), exiting with its parent."""
    import uvicorn

    if parent_pid:
        watch_parent(parent_pid)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
