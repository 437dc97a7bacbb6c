"""One YAML -> pydantic loader: every file a user writes (suites, requirements, price tables) is
read the same way, and every problem is one line naming file:line: field.

    from llmarch_lab.common.yamlmodel import load_model
    table = load_model(path, PriceTable, "price table")    # a LabError like "prices.yaml:7: machines.0.usd_hour: ..."

`compose_with_lines` parses YAML into Python objects plus {key path: line}; duplicate keys, non-UTF-8
bytes and bad values are errors naming their line; `format_validation_error` turns pydantic's
errors into that one line.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from llmarch_lab import LabError


def load_model(file: str | Path, cls: type[BaseModel], what: str, /, **extra):
    """Read and validate a YAML mapping file as `cls` (with `extra` fields added, which the file
    may not set); a LabError of one line naming file:line: field ("unknown field" for a key `cls`
    does not have)."""
    path = Path(file)
    where = str(path)
    if not path.is_file():
        raise LabError(f"{where}: no such {what} file")
    data, lines = compose_with_lines(read_text_strict(path), where)
    if not isinstance(data, dict):
        raise LabError(f"{where}:1: a {what} file is a mapping ({', '.join(k for k in cls.model_fields if k not in extra)})")
    for k in extra:
        if k in data:
            raise LabError(f"{where}:{lines.get((k,))}: {k}: unknown field")
    try:
        return cls(**data, **extra)
    except ValidationError as err:
        msg = format_validation_error(err, where, lines, fields=cls.model_fields)
        raise LabError(msg.replace(": unknown parameter", ": unknown field")) from None


def format_validation_error(err: ValidationError, where: str, lines: dict | None = None,
                            prefix: tuple = (), fields=None) -> str:
    """One line: `where:LINE: field: message` for each error, joined with '; '."""
    parts = []
    for e in err.errors():
        loc = tuple(e["loc"])
        msg = e["msg"]
        if not loc and e["type"] == "value_error":
            # A model validator (a check across fields) names the field it is about first,
            # "base_url 'ftp://x': must ...": point at that field and its line, not at "(root)".
            msg = msg.removeprefix("Value error, ")
            m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)(:\s*)?", msg)
            if m and m.group(1) in (fields or ()):
                # "field: message" -> the message; "field and other: ..." keeps its words
                loc, msg = (m.group(1),), (msg[m.end():] if m.group(2) else msg) or msg
        name = ".".join(str(x) for x in loc) or "(root)"
        line = line_for(lines or {}, prefix + loc)
        at = f"{where}:{line}" if line else where
        if e["type"] == "extra_forbidden":
            msg = "unknown parameter"
        elif "input" in e and e["type"] != "missing" and e["loc"]:
            msg = msg.removeprefix("Value error, ")  # a whole-model input is not shown
            msg += shorten(f" (got {e['input']!r})", 120)
        parts.append(f"{at}: {name}: {msg}")
    return "; ".join(parts)


def shorten(text: str, n: int) -> str:
    """At most n characters, cut at a word boundary with an ellipsis (never mid-word)."""
    if len(text) <= n:
        return text
    cut = text[: n - 1].rsplit(" ", 1)[0]
    return (cut if len(cut) > n // 2 else text[: n - 1]) + "…"


def line_for(lines: dict, path: tuple) -> int | None:
    """The YAML line of the deepest known prefix of `path`."""
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get((), None)


def compose_with_lines(text: str, where: str):
    """Parse YAML into Python objects plus {path-tuple: line number} for error messages."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"{where}:{mark.line + 1}:{mark.column + 1}" if mark else where
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise LabError(f"{at}: bad YAML: {problem}") from None
    lines: dict[tuple, int] = {}

    def walk(node, path):
        lines.setdefault(path, node.start_mark.line + 1)  # a key's own line wins over its value's
        if isinstance(node, yaml.MappingNode):
            out = {}
            for k, v in node.value:
                if not isinstance(k, yaml.ScalarNode):
                    raise LabError(f"{where}:{k.start_mark.line + 1}: a mapping key must be a plain name, "
                                   "not a list or a mapping")
                key = k.value
                if key in out:  # PyYAML keeps the last value silently; a suite never means that
                    raise LabError(f"{where}:{k.start_mark.line + 1}: {'.'.join(map(str, path + (key,)))}: "
                                   f"duplicate key (first set on line {lines[path + (key,)]})")
                lines[path + (key,)] = k.start_mark.line + 1
                out[key] = walk(v, path + (key,))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [walk(v, path + (i,)) for i, v in enumerate(node.value)]
        loader = yaml.SafeLoader("")
        try:
            return loader.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, OverflowError) as e:  # e.g. a date like 2026-13-45
            raise LabError(f"{where}:{node.start_mark.line + 1}: bad YAML value {node.value!r}: "
                           f"{str(e).splitlines()[0][:120]}") from None

    return (walk(root, ()) if root is not None else None), lines


def read_text_strict(path: Path) -> str:
    """A text file as UTF-8; a LabError naming file:line:column of the first byte that is not."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise LabError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise LabError(f"{path}:{line}:{col}: not UTF-8 (byte 0x{raw[e.start]:02x}); save the file as UTF-8") from None
