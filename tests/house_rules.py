"""The measures behind House v3's rules (tests/test_house_rules.py): module and function sizes,
package sizes, private imports across modules, import cycles, README length, the modules
docs/ARCHITECTURE.md names, notebook code lines and import forms.

    python tests/house_rules.py     prints every offender with its current size (to shrink the lists)
"""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "llmarch_lab"

MODULE_LINES = 400
FUNCTION_LINES = 80
TOP_LEVEL_MODULES = 8
PACKAGE_MODULES = 12
PACKAGE_LINES = 3000
README_LINES = 250
NOTEBOOK_CODE_LINES = 30


def rel(p: Path) -> str:
    return p.relative_to(ROOT).as_posix()


def modules() -> list[Path]:
    return sorted(p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts)


def module_name(p: Path) -> str:
    parts = list(p.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _tree(p: Path) -> ast.Module:
    return ast.parse(p.read_text(), filename=str(p))


def module_sizes() -> dict[str, int]:
    return {rel(p): len(p.read_text().splitlines()) for p in modules()}


def function_sizes() -> dict[str, int]:
    """{"path:Qual.name": lines} for every function and method (nested ones by their own name)."""
    out = {}
    for p in modules():
        def walk(node, prefix, p=p):
            for child in ast.iter_child_nodes(node):
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    out[f"{rel(p)}:{prefix}{child.name}"] = child.end_lineno - child.lineno + 1
                    walk(child, f"{prefix}{child.name}.")
                elif isinstance(child, ast.ClassDef):
                    walk(child, f"{prefix}{child.name}.")
                else:
                    walk(child, prefix)
        walk(_tree(p), "")
    return out


def top_level_modules() -> list[str]:
    return sorted(rel(p) for p in PKG.glob("*.py") if p.name != "__init__.py")


def packages() -> dict[str, tuple[int, int]]:
    """{package folder: (modules directly in it, their lines)} for every subpackage of llmarch_lab."""
    out = {}
    for d in sorted(PKG.rglob("__init__.py")):
        folder = d.parent
        if folder == PKG:
            continue
        files = [p for p in folder.glob("*.py")]
        out[rel(folder)] = (len(files), sum(len(p.read_text().splitlines()) for p in files))
    return out


def _resolve(p: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module_name(p).split(".")
    if p.name != "__init__.py":
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def private_imports(roots=("llmarch_lab", "benchmarks")) -> set[str]:
    """"importer -> module.name" for every `from m import _name` and every `alias._name` where alias
    is a module of the package imported under that name, across modules (dunders are public)."""
    out = set()
    files = [p for r in roots for p in sorted((ROOT / r).rglob("*.py")) if "__pycache__" not in p.parts]
    for p in files:
        tree = _tree(p)
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                src = _resolve(p, node)
                for a in node.names:
                    if a.name.startswith("_") and not a.name.startswith("__"):
                        out.add(f"{rel(p)} -> {src}.{a.name}")
                    if src.startswith("llmarch_lab"):
                        aliases[a.asname or a.name] = f"{src}.{a.name}"
            elif isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.startswith("llmarch_lab"):
                        aliases[a.asname or a.name.split(".")[0]] = a.asname and a.name or a.name.split(".")[0]
        own = module_name(p) if p.is_relative_to(PKG) else ""
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases \
                    and node.attr.startswith("_") and not node.attr.startswith("__") \
                    and aliases[node.value.id] != own:
                out.add(f"{rel(p)} -> {aliases[node.value.id]}.{node.attr}")
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere (function bodies and TYPE_CHECKING too)."""
    names = {module_name(p) for p in modules()}
    graph: dict[str, set[str]] = {}
    for p in modules():
        me = module_name(p)
        deps = set()
        for node in ast.walk(_tree(p)):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                src = _resolve(p, node)
                targets = [f"{src}.{a.name}" if f"{src}.{a.name}" in names else src for a in node.names]
            for t in targets:
                while t and t not in names:
                    t = t.rpartition(".")[0]
                if t and t != me and not me.startswith(t + "."):  # a package's own __init__ is not a cycle
                    deps.add(t)
        graph[me] = deps
    return graph


def import_cycles() -> list[frozenset[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    graph = import_graph()
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(frozenset(comp))

    import sys
    sys.setrecursionlimit(10_000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def readme_lines() -> int:
    return len((ROOT / "README.md").read_text().splitlines())


def modules_missing_from_architecture() -> list[str]:
    """Modules whose path under llmarch_lab/ (e.g. llm/engines.py) docs/ARCHITECTURE.md does not name.
    A line listing a folder's files ("common/  stats.py, report.py") names each of them."""
    doc = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    named = set(re.findall(r"[\w/]+\.py", doc))
    folder = ""
    for line in doc.splitlines():  # "  llm/   local.py (...), quant.py" and its continuation lines
        m = re.match(r"\s*([\w/<>]+/)\s{2,}", line)
        if m:
            folder = m.group(1)
        elif not line.startswith(" " * 8):
            folder = ""
        if folder:  # labs/<lab>/ names that file in every lab
            folders = [f"labs/{d.name}/" for d in (PKG / "labs").iterdir() if d.is_dir()] \
                if folder == "labs/<lab>/" else [folder]
            named |= {d + f for d in folders for f in re.findall(r"\b(\w+\.py)\b", line)}
    out = []
    for p in modules():
        path = p.relative_to(PKG).as_posix()
        if p.name == "__init__.py" or path in named or f"llmarch_lab/{path}" in named:
            continue
        out.append(path)
    return out


def notebook_code() -> dict[str, tuple[int, list[str]]]:
    """{notebook: (code lines outside the parameters cell, its import lines in another form than
    `from llmarch_lab... import names` / `import pandas as pd`)}."""
    out = {}
    for nb in sorted((ROOT / "notebooks").glob("*.ipynb")):
        n, odd = 0, []
        for cell in json.loads(nb.read_text())["cells"]:
            if cell["cell_type"] != "code" or "parameters" in cell.get("metadata", {}).get("tags", []):
                continue
            for line in "".join(cell["source"]).splitlines():
                s = line.strip()
                if s and not s.startswith("#"):
                    n += 1
                if s.startswith(("import ", "from ")) and not (
                        re.fullmatch(r"from llmarch_lab(\.\w+)* import \w+(, \w+)*", s) or s == "import pandas as pd"):
                    odd.append(s)
        out[rel(nb)] = (n, odd)
    return out


def lab_readmes_off_template() -> dict[str, list[str]]:
    """{lab README: the template's sections (docs/LAB_README_TEMPLATE.md) it lacks}, for every lab."""
    template = re.findall(r"^## (.+)$", (ROOT / "docs" / "LAB_README_TEMPLATE.md").read_text(), re.M)
    out = {}
    for readme in sorted((PKG / "labs").glob("*/README.md")):
        have = set(re.findall(r"^## (.+)$", readme.read_text(), re.M))
        missing = [t for t in template if t not in have]
        if missing:
            out[rel(readme)] = missing
    return out


def report() -> dict:
    return {
        "modules": {k: v for k, v in module_sizes().items() if v > MODULE_LINES},
        "lab_readmes": lab_readmes_off_template(),
        "functions": {k: v for k, v in function_sizes().items() if v > FUNCTION_LINES},
        "top_level": len(top_level_modules()),
        "packages": {k: v for k, v in packages().items() if v[0] > PACKAGE_MODULES or v[1] > PACKAGE_LINES},
        "private": sorted(private_imports()),
        "private_tests": sorted(private_imports(("tests",))),
        "cycles": [sorted(c) for c in import_cycles()],
        "readme": readme_lines(),
        "architecture_missing": modules_missing_from_architecture(),
        "notebooks": {k: v for k, v in notebook_code().items() if v[0] > NOTEBOOK_CODE_LINES or v[1]},
    }


if __name__ == "__main__":
    import pprint

    pprint.pprint(report(), width=120, sort_dicts=True)


def contract_modules() -> set[str]:
    """Every module or package that some import-linter contract in .importlinter names (layers are
    read relative to their containers)."""
    import configparser

    cp = configparser.ConfigParser()
    cp.read(ROOT / ".importlinter")
    out = set()
    for sec in cp.sections():
        if not sec.startswith("importlinter:contract:"):
            continue
        c = cp[sec]
        containers = c.get("containers", "").split() or [""]
        for key in ("source_modules", "modules", "layers"):
            for line in c.get(key, "").splitlines():
                for name in (x.strip() for x in line.replace("|", ":").split(":")):
                    if not name:
                        continue
                    if key == "layers":
                        out |= {f"{k}.{name}" if k else name for k in containers}
                    else:
                        out.add(name)
    return out


def uncovered_modules() -> list[str]:
    """Modules of the package that no contract covers (the package's own __init__ aside; a
    contract over the whole package, like no-benchmarks, covers nothing in particular)."""
    named = contract_modules() - {"llmarch_lab"}
    return sorted(m for m in map(module_name, modules())
                  if m != "llmarch_lab" and not any(m == n or m.startswith(n + ".") for n in named))
