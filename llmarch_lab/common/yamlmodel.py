"""One YAML -> pydantic loader: every file a user writes (suites, requirements, price tables) is
read the same way, and every problem is one line naming file:line: field.

    from llmarch_lab.common.yamlmodel import load_model
    table = load_model(path, PriceTable, "price table")    # a LabError like "prices.yaml:7: machines.0.usd_hour: ..."

`compose_with_lines` parses YAML into Python objects plus {key path: line}; duplicate keys, non-UTF-8
bytes and bad values are errors naming their line; `format_validation_error` turns pydantic's
errors into that one line; `echo` is how a message quotes a user's value (short, escaped).

Limits (the LIMITS block below; docs/USAGE.md "Limits"): every input is bounded before the work it
feeds, and a value past a limit is refused in one line naming the limit, the file, line and field.

    MAX_FILE_BYTES      1 MiB    a YAML file (suite, requirements, price table), checked before parsing
    MAX_NOTEBOOK_BYTES  16 MiB   a notebook (.ipynb JSON, outputs included), checked before parsing
    MAX_DEPTH           20       nesting of YAML lists and mappings (JSON notebooks: Python's own)
    MAX_NODES           100,000  YAML values after expanding aliases, counted while composing
    MAX_STRING_CHARS    10,000   one YAML string value; no control character but tab and newline
    MAX_NAME_CHARS      100      a name: suite, run entry, mapping key; printable characters only
    MAX_PATH_CHARS      4,096    a file path or notebook name a suite gives (Linux PATH_MAX)
    MAX_RUN_NAME_CHARS  250      a run's name with its grid label (MLflow's run-name column)
    MAX_RUNS            10,000   runs a suite expands to (raisable: `run --max-runs N`)
    ECHO_CHARS          80       a user value quoted in an error message (then "…")
"""

from __future__ import annotations

import re
import reprlib
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from llmarch_lab import LabError

# ---------------------------------------------------------------------------------- LIMITS
MAX_FILE_BYTES = 1 << 20
MAX_NOTEBOOK_BYTES = 16 << 20
MAX_DEPTH = 20
MAX_NODES = 100_000
MAX_STRING_CHARS = 10_000
MAX_NAME_CHARS = 100
MAX_PATH_CHARS = 4096
MAX_RUN_NAME_CHARS = 250
MAX_RUNS = 10_000
ECHO_CHARS = 80
# ------------------------------------------------------------------------------------------


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
            msg += f" (got {echo(e['input'])})"
        # a validator's own message may quote the value it refused: bounded like any echo
        parts.append(f"{at}: {name}: {shorten(msg, 4 * ECHO_CHARS)}")
    return "; ".join(parts)


def shorten(text: str, n: int) -> str:
    """At most n characters, cut at a word boundary with an ellipsis (never mid-word)."""
    if len(text) <= n:
        return text
    cut = text[: n - 1].rsplit(" ", 1)[0]
    return (cut if len(cut) > n // 2 else text[: n - 1]) + "…"


_repr = reprlib.Repr()
_repr.maxstring = _repr.maxother = ECHO_CHARS
_repr.maxlist = _repr.maxtuple = _repr.maxdict = _repr.maxset = 6
_repr.maxlevel = 3


def echo(value, n: int = ECHO_CHARS, bare: bool = False) -> str:
    """A user's value as an error message quotes it: its repr (control characters and terminal
    escapes escaped), at most about n characters; a longer string is cut with "…" and its length
    named. The one place messages format user values, so none prints one back whole.
    `bare`: a short printable string as it is, without quotes (a flag's value, a name)."""
    if bare and isinstance(value, str) and len(value) <= n and value.isprintable():
        return value
    if not isinstance(value, str):
        text = _repr.repr(value)
        return text if len(text) <= n else text[:n] + "…"
    if len(value) <= n and len(text := repr(value)) <= n + 2:
        return text
    head = repr(value[:n])
    head = head[: n + 1] if len(head) > n + 2 else head[:-1]  # escapes can make the repr longer
    return f"{head}…{head[0]} ({len(value):,} characters)"


def line_for(lines: dict, path: tuple) -> int | None:
    """The YAML line of the deepest known prefix of `path`."""
    while path:
        if path in lines:
            return lines[path]
        path = path[:-1]
    return lines.get((), None)


if yaml.__with_libyaml__:
    # libyaml scans and parses about 20x faster than PyYAML's pure-Python scanner (a 1 MiB file:
    # ~1 s instead of ~25 s); composing stays in Python (_BoundedComposer) so nodes are counted
    # and depth bounded as they are built.
    from yaml._yaml import CParser as _Events
else:  # pragma: no cover - PyYAML built without libyaml
    class _Events(yaml.reader.Reader, yaml.scanner.Scanner, yaml.parser.Parser):
        def __init__(self, text):
            yaml.reader.Reader.__init__(self, text)
            yaml.scanner.Scanner.__init__(self)
            yaml.parser.Parser.__init__(self)


class _BoundedComposer(yaml.composer.Composer, _Events, yaml.constructor.SafeConstructor, yaml.resolver.Resolver):
    """PyYAML's composer with the limits checked while nodes are built, before anything expands:
    nesting depth (MAX_DEPTH) and the node count with every alias counted at its anchor's full
    size each time it is used (MAX_NODES), so an alias bomb ("billion laughs") stops at once."""

    def __init__(self, text: str, where: str):
        _Events.__init__(self, text)
        yaml.composer.Composer.__init__(self)
        yaml.constructor.SafeConstructor.__init__(self)
        yaml.resolver.Resolver.__init__(self)
        self.where, self.count, self.depth, self.sizes = where, 0, 0, {}

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent):
            node = self.anchors.get(event.anchor)
            if node is not None:
                if id(node) not in self.sizes:
                    raise self.refuse(event, f"alias *{echo(event.anchor)} is used inside its own anchor "
                                             "(a structure without end)")
                self.grow(self.sizes[id(node)], event)
            return super().compose_node(parent, index)
        nested = isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent))
        self.depth += nested
        if self.depth > MAX_DEPTH:
            raise self.refuse(event, _TOO_DEEP)
        start = self.count
        self.grow(1, event)
        node = super().compose_node(parent, index)
        self.depth -= nested
        if event.anchor is not None:
            self.sizes[id(node)] = self.count - start
        return node

    def grow(self, n: int, event) -> None:
        self.count += n
        if self.count > MAX_NODES:
            raise self.refuse(event, f"the file expands to more than {MAX_NODES:,} values (the limit MAX_NODES, "
                                     "fixed; an alias counts its anchor's values each time it is used)")

    def refuse(self, event, what: str) -> LabError:
        return LabError(f"{self.where}:{event.start_mark.line + 1}: {what}")


_TOO_DEEP = f"lists and mappings nested more than {MAX_DEPTH} deep (the limit MAX_DEPTH, fixed)"
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0 and C1 controls, DEL; not tab, newline


def compose_with_lines(text: str, where: str):
    """Parse YAML into Python objects plus {path-tuple: line number} for error messages.
    The limits (MAX_NODES, MAX_DEPTH, MAX_STRING_CHARS, MAX_NAME_CHARS for keys) hold."""
    try:
        loader = _BoundedComposer(text, where)  # the pure-Python reader checks characters here
        root = loader.get_single_node()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"{where}:{mark.line + 1}:{mark.column + 1}" if mark else where
        if isinstance(e, yaml.reader.ReaderError) and isinstance(e.character, int) and chr(e.character) in text:
            at = f"{where}:{text[:text.index(chr(e.character))].count(chr(10)) + 1}"
        problem = getattr(e, "problem", None) or getattr(e, "reason", None) or str(e).splitlines()[0]
        if "maximum nesting depth" in problem:  # libyaml's own guard (1,000) met before ours
            raise LabError(f"{at}: {_TOO_DEEP}") from None
        raise LabError(f"{at}: bad YAML: {problem}") from None
    lines: dict[tuple, int] = {}
    return (_walk(root, (), lines, where, loader) if root is not None else None), lines


def _walk(node, path: tuple, lines: dict, where: str, loader):
    """A composed node as Python objects, its keys' lines recorded; keys and values checked."""
    lines.setdefault(path, node.start_mark.line + 1)  # a key's own line wins over its value's
    field = ".".join(map(str, path)) or "(root)"
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and len(path) >= MAX_DEPTH:
        # aliases can nest deeper than the text does; the composer counted them, here depth
        raise LabError(f"{where}:{node.start_mark.line + 1}: {field}: {_TOO_DEEP}")
    if isinstance(node, yaml.MappingNode):
        out = {}
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                raise LabError(f"{where}:{k.start_mark.line + 1}: a mapping key must be a plain name, "
                               "not a list or a mapping")
            key = k.value
            if len(key) > MAX_NAME_CHARS or not key.isprintable():
                raise LabError(f"{where}:{k.start_mark.line + 1}: {field}: key {echo(key)}: a key is a name of "
                               f"printable characters, at most {MAX_NAME_CHARS} (the limit MAX_NAME_CHARS, fixed)")
            if key in out:  # PyYAML keeps the last value silently; a suite never means that
                raise LabError(f"{where}:{k.start_mark.line + 1}: {'.'.join(map(str, path + (key,)))}: "
                               f"duplicate key (first set on line {lines[path + (key,)]})")
            lines[path + (key,)] = k.start_mark.line + 1
            out[key] = _walk(v, path + (key,), lines, where, loader)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_walk(v, path + (i,), lines, where, loader) for i, v in enumerate(node.value)]
    at = f"{where}:{node.start_mark.line + 1}: {field}"
    if len(node.value) > MAX_STRING_CHARS:
        raise LabError(f"{at}: {echo(node.value)} is over the limit of {MAX_STRING_CHARS:,} characters "
                       "(MAX_STRING_CHARS, fixed; put long text in a file and give its path)")
    if m := _CONTROL.search(node.value):
        raise LabError(f"{at}: control character {m.group()!r} in {echo(node.value)} (a value may hold "
                       "tabs and newlines, no other control character)")
    try:
        return loader.construct_object(node, deep=True)
    except (yaml.YAMLError, ValueError, OverflowError) as e:  # e.g. a date like 2026-13-45
        raise LabError(f"{at}: bad YAML value {echo(node.value)}: {str(e).splitlines()[0][:120]}") from None


def read_limited(path: Path, limit: int, what: str, advice: str) -> bytes:
    """A file's bytes, refused in one line naming the limit when it holds more than `limit` bytes:
    at most limit + 1 bytes are read, whatever the file claims its size is."""
    try:
        with open(path, "rb") as f:
            raw = f.read(limit + 1)
    except OSError as e:
        raise LabError(f"{path}: cannot read ({e.strerror or e})") from None
    if len(raw) > limit:
        try:
            size = f"{path.stat().st_size:,} bytes"
        except OSError:
            size = "too large"
        raise LabError(f"{path}: {size}, over the limit of {limit >> 20} MiB ({limit:,} bytes) for {what}; {advice}")
    return raw


def read_text_strict(path: Path) -> str:
    """A text file as UTF-8 (at most MAX_FILE_BYTES); a LabError naming file:line:column of the
    first byte that is not."""
    raw = read_limited(Path(path), MAX_FILE_BYTES, "a YAML file (MAX_FILE_BYTES, fixed)", "split it into smaller files")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise LabError(f"{path}:{line}:{col}: not UTF-8 (byte 0x{raw[e.start]:02x}); save the file as UTF-8") from None
