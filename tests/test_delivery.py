"""Delivery: every program outside Python that the package looks up or starts is provided by a make
target, and the README's two commands (`make lab`, `make test`) run the targets that provide what
they use. A fresh machine has nothing installed by hand; CI runs where earlier installs linger, so
this test reads the code and the Makefile instead of trusting the machine."""

import ast
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from llmarch_lab.common import sysdeps

ROOT = Path(__file__).resolve().parents[1]
SUBPROCESS_CALLS = {"run", "Popen", "call", "check_call", "check_output"}


def _sources():
    for folder in ("llmarch_lab", "benchmarks"):
        yield from sorted((ROOT / folder).rglob("*.py"))


def _first_literal(node):
    """The program of a literal argv ["prog", ...] (or None when argv[0] is computed)."""
    if isinstance(node, ast.List) and node.elts and isinstance(node.elts[0], ast.Constant) \
            and isinstance(node.elts[0].value, str):
        return node.elts[0].value
    return None


def external_programs() -> dict[str, list[str]]:
    """{program: ["file:line", ...]} for every shutil.which("x"), every subprocess call (or argv list
    bound to a name that a subprocess call takes) with a literal argv[0], and every engine binary
    looked up under .engines/ through llm.engines.tool_path."""
    found: dict[str, list[str]] = {}
    for path in _sources():
        tree = ast.parse(path.read_text(), filename=str(path))
        argv_names: dict[str, ast.AST] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                argv_names[node.targets[0].id] = node.value
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            fn = node.func
            name = fn.attr if isinstance(fn, ast.Attribute) else fn.id if isinstance(fn, ast.Name) else ""
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            prog = None
            if name == "which" and node.args and isinstance(node.args[0], ast.Constant):
                prog = node.args[0].value
            elif name in SUBPROCESS_CALLS and node.args:
                arg = node.args[0]
                prog = _first_literal(argv_names.get(arg.id) if isinstance(arg, ast.Name) else arg)
            elif name == "tool_path" and len(node.args) >= 4 and isinstance(node.args[2], ast.Constant):
                prog = Path(node.args[2].value).name
                if prog == "python":  # an engine's own interpreter: the engine folder names it
                    prog = f"{Path(node.args[2].value).parts[0]}/bin/python"
                target = node.args[3].value if isinstance(node.args[3], ast.Constant) else None
                found.setdefault(f"@{prog}", []).append(f"{where} -> make {target}")
                continue
            if prog:
                found.setdefault(prog, []).append(where)
    return found


def make_dry_run(target: str) -> str:
    """What `make -n -B TARGET` would run: every recipe of the target and its prerequisites."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE")}
    r = subprocess.run(["make", "-n", "-B", target], cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z0-9-]*):", (ROOT / "Makefile").read_text(), re.M))


def test_the_scan_finds_what_the_package_is_known_to_start():
    progs = external_programs()
    # a few that must be seen, so the scan itself cannot go blind
    for p in ("dot", "promtool", "chromium", "initdb", "git"):
        assert p in progs, (p, sorted(progs))
    assert any(k.startswith("@llama-server") for k in progs)


def test_every_external_program_is_provided_by_a_make_target():
    targets = makefile_targets()
    unprovided = []
    for prog, where in sorted(external_programs().items()):
        if prog.startswith("@"):  # tool_path(..., make_target): that target must exist
            for w in where:
                target = w.rsplit("make ", 1)[1]
                if target not in targets:
                    unprovided.append(f"{prog[1:]} ({w}): no make target {target!r}")
            continue
        spec = sysdeps.PROGRAMS.get(prog)
        if spec is None:
            unprovided.append(f"{prog} ({', '.join(where)}): not in llmarch_lab/common/sysdeps.py PROGRAMS")
        elif spec.target and spec.target not in targets:
            unprovided.append(f"{prog}: make target {spec.target!r} does not exist")
    assert not unprovided, "\n".join(unprovided)


@pytest.mark.parametrize("name", [n for n, p in sysdeps.PROGRAMS.items() if p.package and p.target])
def test_each_sys_target_installs_its_program(name):
    spec = sysdeps.PROGRAMS[name]
    out = make_dry_run(spec.target)
    assert re.search(rf"-m llmarch_lab\.common\.sysdeps ensure {re.escape(spec.target)} .*\b{re.escape(name)}\b", out), out[-1000:]


def test_make_test_provides_every_program_and_make_lab_what_the_quickstart_starts():
    test_plan = make_dry_run("test")
    for name, spec in sysdeps.PROGRAMS.items():
        if spec.package and spec.target:
            assert re.search(rf"sysdeps ensure {re.escape(spec.target)} .*\b{re.escape(name)}\b", test_plan), \
                f"make test does not run make {spec.target} for {name}"
    assert "llama-server --version" in test_plan  # engine-llama-server's recipe
    quickstart = (ROOT / "experiments" / "quickstart.yaml").read_text()
    lab_plan = make_dry_run("lab")
    if "notebook: 90_system" in quickstart:  # the system report: diagram (dot) and bundle checks (promtool)
        for name in ("dot", "promtool"):
            assert re.search(rf"sysdeps ensure {sysdeps.PROGRAMS[name].target} .*\b{name}\b", lab_plan), name
    assert "engine-llamacpp" in lab_plan or "llamacpp-" in lab_plan  # the quickstart's serving run


def test_ci_runs_only_the_readme_commands():
    ci = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()
          if ln.strip() and not ln.lstrip().startswith("#")]
    assert not any("apt-get" in ln or "pip install" in ln for ln in ci), ci
    assert [ln for ln in ci if ln.startswith("make")] == ["make lint", "make test"]
    readme = (ROOT / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme


@pytest.mark.parametrize("name", [n for n, p in sysdeps.PROGRAMS.items() if p.package and p.target])
def test_the_named_debian_package_owns_the_program(name):
    """Where the program is installed, dpkg says it came from the package sysdeps names."""
    path = sysdeps.find(name)
    if path is None or shutil.which("dpkg") is None:
        pytest.skip(f"{name} not installed here (make test installs it first)")
    owners = []  # the path as found (/usr/bin/dot is graphviz's) or the file it links to (/usr/local/bin/initdb)
    found = [path, str(Path(path).resolve())]
    for p in dict.fromkeys(found + [f.removeprefix("/usr") for f in found]):  # merged /usr: dpkg has /sbin/runuser
        r = subprocess.run(["dpkg", "-S", p], capture_output=True, text=True)
        owners += [line.split(":", 1)[0] for line in r.stdout.splitlines()] if r.returncode == 0 else []
    assert any(o.startswith(sysdeps.PROGRAMS[name].package) for o in owners), (path, owners)


def test_ensure_says_in_one_line_what_to_install_when_it_cannot(monkeypatch, capsys):
    monkeypatch.setattr(sysdeps, "find", lambda p: None)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # not root: no apt-get
    assert sysdeps.ensure("sys-graphviz", ["dot"]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["make sys-graphviz: `dot` not found: install the Debian package(s) graphviz "
                   "(sudo apt-get install graphviz), then run make again"]
    assert sysdeps.ensure("sys-x", ["nosuch"]) == 2


def test_engine_modules_named_in_conftest_exist():
    import conftest

    missing = [m for m in conftest.ENGINE_MODULES if not (ROOT / "tests" / f"{m}.py").is_file()]
    assert not missing, f"tests/conftest.py ENGINE_MODULES names no such module: {missing}"
