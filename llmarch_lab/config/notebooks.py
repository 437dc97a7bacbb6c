"""Notebooks: where they are, which params model each names, their parameters cell.

Every read of a notebook file goes through `read_notebook`, which bounds its size
(MAX_NOTEBOOK_BYTES) and checks the JSON's shape once, so a malformed notebook is one line naming
the file and the field, never an AttributeError further on."""

from __future__ import annotations

import ast
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from llmarch_lab import LabError, paths
from llmarch_lab.common.yamlmodel import MAX_NOTEBOOK_BYTES, MAX_PATH_CHARS, echo, read_limited
from llmarch_lab.config.params import LabParams

_CELL_TYPES = ("code", "markdown", "raw")


def notebooks_dir() -> Path:
    return paths.home() / "notebooks"


def resolve_notebook(ref: str | Path, base: Path | None = None) -> Path:
    """`00_quickstart`, `00_quickstart.ipynb` or a path -> an existing notebook file."""
    ref = str(ref)
    if len(ref) > MAX_PATH_CHARS or not ref.isprintable():
        raise LabError(f"unknown notebook {echo(ref)}: a notebook is a name or a path of printable characters, "
                       f"at most {MAX_PATH_CHARS:,} (the limit MAX_PATH_CHARS, fixed)")
    candidates = [Path(ref)]
    if not ref.endswith(".ipynb"):
        candidates.append(Path(ref + ".ipynb"))
    folders = [base] if base else []
    folders.append(notebooks_dir())
    for c in list(candidates):
        if not c.is_absolute():
            candidates.extend(f / c for f in folders)
    for c in candidates:
        try:
            if c.is_file():
                return c.resolve()
        except OSError:  # a name too long for the file system, a loop of links: not this one
            continue
    valid = ", ".join(sorted(p.stem for p in notebooks_dir().glob("*.ipynb")))
    raise LabError(f"unknown notebook {echo(ref)} (valid: {valid or 'none in ' + str(notebooks_dir())})")


def read_notebook(nb_path: Path) -> dict[str, Any]:
    """The notebook's JSON, its shape checked before anything reads it: an object whose
    `metadata` is an object and whose `cells` is a list of objects, each with a known
    `cell_type`, a `source` (text or a list of text) and object `metadata` with a list of text
    `tags`. One LabError line naming the file and the field otherwise.

    Hand-written rather than nbformat's validator: that checks far more than is read here (it
    rejects notebooks papermill runs fine) and its messages run over many lines."""
    raw = read_limited(Path(nb_path), MAX_NOTEBOOK_BYTES, "a notebook (MAX_NOTEBOOK_BYTES, fixed)",
                       "clear its outputs (jupyter nbconvert --clear-output)")
    try:
        nb = json.loads(raw)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        why = "nested too deeply" if isinstance(e, RecursionError) else str(e).splitlines()[0][:120]
        raise LabError(f"{nb_path}: not a readable notebook ({why})") from None

    def bad(field: str, what: str, value) -> LabError:
        return LabError(f"{nb_path}: not a notebook: {field} must be {what} (got {type(value).__name__} {echo(value)})")

    if not isinstance(nb, dict):
        raise bad("the file's JSON", "an object with cells and metadata", nb)
    if not isinstance(meta := nb.get("metadata", {}), dict):
        raise bad("metadata", "an object", meta)
    if not isinstance(own := meta.get("llmarch_lab", {}), dict):
        raise bad("metadata.llmarch_lab", "an object", own)
    for key in ("lab", "params"):
        if key in own and not isinstance(own[key], str):
            raise bad(f"metadata.llmarch_lab.{key}", "text", own[key])
    if not isinstance(cells := nb.get("cells"), list):
        raise bad("cells", "a list", cells)
    for i, cell in enumerate(cells):
        if not isinstance(cell, dict):
            raise bad(f"cells[{i}]", "an object", cell)
        if cell.get("cell_type") not in _CELL_TYPES:
            raise bad(f"cells[{i}].cell_type", " or ".join(_CELL_TYPES), cell.get("cell_type"))
        src = cell.get("source", "")
        if not (isinstance(src, str) or isinstance(src, list) and all(isinstance(s, str) for s in src)):
            raise bad(f"cells[{i}].source", "text or a list of text", src)
        if not isinstance(cmeta := cell.get("metadata", {}), dict):
            raise bad(f"cells[{i}].metadata", "an object", cmeta)
        tags = cmeta.get("tags", [])
        if not (isinstance(tags, list) and all(isinstance(t, str) for t in tags)):
            raise bad(f"cells[{i}].metadata.tags", "a list of text", tags)
    return nb


def notebook_params_class(nb_path: Path, nb: dict | None = None) -> type[LabParams]:
    """The parameters model of the lab the notebook names in its metadata (`llmarch_lab.lab`,
    looked up in the registry; `llmarch_lab.params` = "module:Class" for labs outside it).
    `nb`: the notebook's JSON when the caller already read it with read_notebook."""
    from llmarch_lab import registry

    meta = (read_notebook(nb_path) if nb is None else nb).get("metadata", {}).get("llmarch_lab", {})
    if meta.get("lab") in registry.LABS:
        return registry.params_class(meta["lab"])
    ref = meta.get("params")
    if not ref:
        raise LabError(f"{nb_path}: metadata.llmarch_lab.lab is missing or unknown (got {echo(meta.get('lab'))}; "
                       f"valid: {', '.join(registry.names())}), and there is no metadata.llmarch_lab.params")
    if not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*", ref):
        raise LabError(f"{nb_path}: metadata.llmarch_lab.params {echo(ref)}: must be \"module:Class\"")
    module = ref.partition(":")[0]
    if module.startswith("llmarch_lab.") and not module.startswith("llmarch_lab.labs."):
        raise LabError(f"{nb_path}: metadata.llmarch_lab.params {echo(ref)} names a module that moved in House v2; "
                       f"set metadata.llmarch_lab.lab to the lab's name instead (one of {', '.join(registry.names())})")
    cls = registry.load(ref, where=str(nb_path))
    if not (isinstance(cls, type) and issubclass(cls, LabParams)):
        raise LabError(f"{nb_path}: metadata.llmarch_lab.params {echo(ref)} is not a parameters model (a LabParams class)")
    return cls


def notebook_fingerprint(nb_path: Path, nb: dict | None = None) -> str:
    """Hash of the code and markdown sources only: outputs and execution counts don't count."""
    h = hashlib.sha256()
    for cell in (read_notebook(nb_path) if nb is None else nb)["cells"]:
        src = cell.get("source", "")
        h.update(cell["cell_type"].encode())
        h.update(("".join(src) if isinstance(src, list) else src).encode())
    return h.hexdigest()


def parameters_cell(nb_path: Path, nb: dict | None = None) -> dict[str, Any]:
    """The literal assignments of the notebook's single `parameters`-tagged cell."""
    cells = [c for c in (read_notebook(nb_path) if nb is None else nb)["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise LabError(f"{nb_path}: {len(cells)} cells tagged 'parameters' (papermill wants exactly one: tag the "
                       "cell that assigns the defaults)")
    src = cells[0].get("source", "")
    src = "".join(src) if isinstance(src, list) else src
    try:
        body = ast.parse(src).body
    except (SyntaxError, ValueError, RecursionError) as e:  # ValueError: a NUL byte
        raise LabError(f"{nb_path}: parameters cell: not valid Python ({type(e).__name__}: "
                       f"{echo(getattr(e, 'msg', None) or str(e))})") from None
    values = {}
    for node in body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
                raise LabError(f"{nb_path}: parameters cell: {node.targets[0].id} is not a literal") from None
    return values
