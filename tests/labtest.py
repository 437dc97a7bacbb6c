"""Parameter models for the runner's test notebooks (tests/notebooks/)."""

import os
import subprocess

from pydantic import Field

from llmarch_lab import schema
from llmarch_lab.config import LabParams

# The probe lab lives outside the package, so it declares its one metric itself.
schema.declare(schema.MetricSpec("quality.value", "higher", "", "the probe notebook's value, logged back"))


class ProbeParams(LabParams):
    lab = "probe"
    key_metrics = ("quality.value",)

    value: int = Field(1, description="Logged back as quality.value.")
    sleep_s: float = Field(0.0, ge=0, description="Seconds to sleep before finishing.")
    fail: bool = Field(False, description="Raise inside the notebook.")
    api_key: str = Field("", description="A secret: must never reach MLflow params.")


# Set by tests/conftest.py for the whole test session and inherited by every process it starts
# (engines, gateways, CLIs and what they start): engine_pids() counts only those, so a second test
# run or an engine build on the same machine (a CI beside a developer) is never counted, or killed.
SESSION_ENV = "LLMARCH_TEST_SESSION"


def _in_this_session(pid: int) -> bool:
    marker = os.environ.get(SESSION_ENV)
    if not marker:
        return True
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f"{SESSION_ENV}={marker}".encode() in f.read().split(b"\0")
    except OSError:  # gone, or not ours to read
        return False


def engine_pids() -> set[tuple[int, str]]:
    """(pid, command) of every llama.cpp server (llama-cpp-python's and llama.cpp's own
    llama-server binary), engine adapter (OpenVINO GenAI, CTranslate2) and LiteLLM process that
    this test session started. Tests compare
    the set before and after what they start (tests/conftest.py does it around every module)."""
    ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    out = set()
    for line in ps.splitlines():
        pid, _, args = line.strip().partition(" ")
        exe = args.split(" ", 1)[0]
        if ("llama_cpp.server" in args or exe.rsplit("/", 1)[-1] in ("llama-server", "prometheus", "prometheus-alertmanager")
                or "adapters.openai_http" in args
                or ("litellm" in args and "pytest" not in args and " -m pip " not in args)) \
                and _in_this_session(int(pid)):
            out.add((int(pid), args[:160]))
    return out
