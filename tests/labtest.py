"""Parameter models for the runner's test notebooks (tests/notebooks/)."""

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


def engine_pids() -> set[tuple[int, str]]:
    """(pid, command) of every llama.cpp server (llama-cpp-python's and llama.cpp's own
    llama-server binary) and LiteLLM process on the machine. Tests compare
    the set before and after what they start (tests/conftest.py does it around every module)."""
    ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    out = set()
    for line in ps.splitlines():
        pid, _, args = line.strip().partition(" ")
        exe = args.split(" ", 1)[0]
        if ("llama_cpp.server" in args or exe.rsplit("/", 1)[-1] == "llama-server"
                or ("litellm" in args and "pytest" not in args)):
            out.add((int(pid), args[:160]))
    return out
