"""Notebooks: where they are, which params model each names, their parameters cell."""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path
from typing import Any

from llmarch_lab import LabError, paths
from llmarch_lab.config.params import LabParams


def notebooks_dir() -> Path:
    return paths.home() / "notebooks"


def resolve_notebook(ref: str | Path, base: Path | None = None) -> Path:
    """`00_quickstart`, `00_quickstart.ipynb` or a path -> an existing notebook file."""
    ref = str(ref)
    candidates = [Path(ref)]
    if not ref.endswith(".ipynb"):
        candidates.append(Path(ref + ".ipynb"))
    folders = [base] if base else []
    folders.append(notebooks_dir())
    for c in list(candidates):
        if not c.is_absolute():
            candidates.extend(f / c for f in folders)
    for c in candidates:
        if c.is_file():
            return c.resolve()
    valid = ", ".join(sorted(p.stem for p in notebooks_dir().glob("*.ipynb")))
    raise LabError(f"unknown notebook {ref!r} (valid: {valid or 'none in ' + str(notebooks_dir())})")


def notebook_params_class(nb_path: Path) -> type[LabParams]:
    """The parameters model of the lab the notebook names in its metadata (`llmarch_lab.lab`,
    looked up in the registry; `llmarch_lab.params` = "module:Class" for labs outside it)."""
    from llmarch_lab import registry

    try:
        nb = json.loads(Path(nb_path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise LabError(f"{nb_path}: not a readable notebook ({e})") from None
    meta = nb.get("metadata", {}).get("llmarch_lab", {})
    if meta.get("lab") in registry.LABS:
        return registry.params_class(meta["lab"])
    ref = meta.get("params")
    if not ref:
        raise LabError(f"{nb_path}: metadata.llmarch_lab.lab is missing or unknown (got {meta.get('lab')!r}; "
                       f"valid: {', '.join(registry.names())}), and there is no metadata.llmarch_lab.params")
    module = ref.partition(":")[0]
    if module.startswith("llmarch_lab.") and not module.startswith("llmarch_lab.labs."):
        raise LabError(f"{nb_path}: metadata.llmarch_lab.params {ref!r} names a module that moved in House v2; "
                       f"set metadata.llmarch_lab.lab to the lab's name instead (one of {', '.join(registry.names())})")
    return registry.load(ref, where=str(nb_path))


def notebook_fingerprint(nb_path: Path) -> str:
    """Hash of the code and markdown sources only: outputs and execution counts don't count."""
    nb = json.loads(Path(nb_path).read_text())
    h = hashlib.sha256()
    for cell in nb.get("cells", []):
        src = cell.get("source", "")
        h.update(cell.get("cell_type", "").encode())
        h.update(("".join(src) if isinstance(src, list) else src).encode())
    return h.hexdigest()


def parameters_cell(nb_path: Path) -> dict[str, Any]:
    """The literal assignments of the notebook's single `parameters`-tagged cell."""
    nb = json.loads(Path(nb_path).read_text())
    cells = [c for c in nb.get("cells", []) if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise LabError(f"{nb_path}: {len(cells)} cells tagged 'parameters' (papermill wants exactly one)")
    src = cells[0]["source"]
    src = "".join(src) if isinstance(src, list) else src
    values = {}
    for node in ast.parse(src).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                raise LabError(f"{nb_path}: parameters cell: {node.targets[0].id} is not a literal") from None
    return values
