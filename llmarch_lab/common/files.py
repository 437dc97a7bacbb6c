"""Files, one home for their jobs: atomic writes (a file or folder appears whole or not at all, so
a killed or failing process never leaves half a report, cache entry or output file) and JSON-lines
reading with errors that name FILE:LINE.

    from llmarch_lab.common.files import atomic_dir, atomic_path, write_atomic
    write_atomic(out, text)                        # text (or bytes) to a file
    with atomic_path(path, suffix=".npz") as tmp:  # any writer: np.savez(tmp), joblib.dump(x, tmp)
        np.savez(tmp, ...)
    with atomic_dir(folder) as tmp:                # a whole folder, replacing the old one
        (tmp / "a.txt").write_text("...")
    for line_no, obj in jsonl_objects(path):       # every non-blank line; .gz read as gzip
        ...
    write_atomic(out, dumps_json(result, indent=2))  # valid JSON: NaN and infinities become null

The temporary file or folder lies beside the target (same file system: the final rename is
atomic) and is removed on any error; the target is only ever replaced whole.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import math
import os
import secrets
import shutil
import tempfile
from pathlib import Path

from llmarch_lab import LabError


@contextlib.contextmanager
def atomic_path(path, suffix: str = "", private: bool = False):
    """A fresh temporary path beside `path` that replaces `path` when the block ends without error.
    suffix: for writers that need an extension (np.savez adds .npz to any other name); private:
    the file is created with mode 0600 (secrets), else 0666 less the umask, as open() would."""
    path = Path(path)
    if os.path.lexists(path) and (path.is_symlink() or not path.is_file()):  # never replace a device, pipe or link
        raise LabError(f"{path}: not a regular file (a device, pipe, socket or link, which a rename would replace)")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp{suffix}")
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o666))
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path, data: str | bytes, private: bool = False) -> None:
    """Write `data` (text as UTF-8, or bytes) to `path` atomically."""
    with atomic_path(path, private=private) as tmp:
        if isinstance(data, bytes):
            tmp.write_bytes(data)
        else:
            tmp.write_text(data, encoding="utf-8")


@contextlib.contextmanager
def atomic_dir(folder):
    """Build a folder in a temporary sibling and put it in place (replacing the old one) only when
    the block ends without error; on any error, or a kill, the temporary folder is what is lost."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        yield tmp
        if folder.exists():
            shutil.rmtree(folder)
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def jsonl_objects(path, where: str = "", errors: str = "strict"):
    """(line number, object) for every non-blank line of a JSON-lines file (gzip-compressed files
    are read as such); a line that is not a JSON object is one LabError naming WHERE:LINE (where:
    how the user named the file, default its path). errors: the UTF-8 decoding's ("replace" turns
    odd bytes into U+FFFD; "strict" raises UnicodeDecodeError for the caller to name)."""
    path = Path(path)
    where = where or str(path)
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    with (gzip.open(path, "rt", encoding="utf-8", errors=errors) if gz
          else open(path, encoding="utf-8", errors=errors)) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise LabError(f"{where}:{n}: not valid JSON ({e.msg})") from None
            if not isinstance(obj, dict):
                raise LabError(f"{where}:{n}: expected a JSON object, got {type(obj).__name__}")
            yield n, obj


def check_output(out, inputs: dict[str, object] | None = None, flag: str = "--out") -> Path:
    """The one check every command runs on a file it will write, before any work: not a folder,
    not one of its `inputs` ({flag: path}) by any name (the same path, a symlink or a hard link to
    it), and a folder that exists and takes a new file. A LabError naming the flag otherwise."""
    out = Path(out)
    if out.is_dir():
        raise LabError(f"{flag} {out}: is a folder; give the path of a file to write")
    if out.exists() and not out.is_file():  # /dev/null, /dev/stdout, a pipe: an atomic write would replace it
        raise LabError(f"{flag} {out}: not a regular file (a device, pipe or socket, which writing would "
                       "replace); give the path of a file")
    _refuse_system_folder(out, flag)
    for name, given in (inputs or {}).items():
        src = Path(given)
        same = out.resolve() == src.resolve()
        if not same and out.exists() and src.exists():
            with contextlib.suppress(OSError):
                same = os.path.samefile(out, src)
        if same:
            raise LabError(f"{flag} {out}: the same file as {name} {src}; writing it would destroy the input")
    if out.is_symlink():
        raise LabError(f"{flag} {out}: a symbolic link (writing would replace the link, not its target); "
                       f"give the target's path {os.path.realpath(out)}")
    parent = out.parent
    if not parent.is_dir():
        raise LabError(f"{flag} {out}: no such folder {parent}")
    try:  # the real test (access() says yes to root on a read-only mount)
        with tempfile.NamedTemporaryFile(dir=parent, prefix=f".{out.name}.probe."):
            pass
    except OSError as e:
        raise LabError(f"{flag} {out}: cannot write in {parent} ({e.strerror or e})") from None
    return out


SYSTEM_FOLDERS = (Path("/dev"), Path("/proc"), Path("/sys"))


def _refuse_system_folder(out: Path, flag: str) -> None:
    """Never write into /dev, /proc or /sys (root may: a rename there replaced /dev/null once)."""
    for where in (Path(os.path.abspath(out)), out.resolve()):  # the name itself (/dev/stdout), and where it leads
        if any(where == d or d in where.parents for d in SYSTEM_FOLDERS):
            raise LabError(f"{flag} {out}: in a system folder ({where.parent}); give the path of a file of your own")


OUTPUT_MARKER = ".llmarch-output"  # in every folder a command writes whole (atomic_dir), naming the command


def check_output_dir(out, inputs: dict[str, object] | None = None, flag: str = "--out",
                     ours: tuple[str, ...] = ()) -> Path:
    """The check for a folder a command replaces whole (atomic_dir): a new folder, an empty one, or
    one this tool wrote before (OUTPUT_MARKER in it, or any of the `ours` names, from before the
    marker); never a folder holding one of the `inputs` or the working directory. A LabError
    naming the flag otherwise, before any work."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise LabError(f"{flag} {out}: is a file; give a folder to write the report into")
    where = out.resolve()
    _refuse_system_folder(out, flag)
    for name, given in {**(inputs or {}), "the working directory": Path.cwd()}.items():
        src = Path(given).resolve()
        if src == where or where in src.parents:
            raise LabError(f"{flag} {out}: holds {name} {given}; replacing the folder would destroy it")
    if out.is_dir() and any(out.iterdir()) and not any((out / n).exists() for n in (OUTPUT_MARKER, *ours)):
        raise LabError(f"{flag} {out}: a folder with other files in it (no {OUTPUT_MARKER}), which would be "
                       "replaced whole; give a new or empty folder")
    parent = where.parent
    while not parent.exists():  # atomic_dir makes the missing folders; the nearest one must take them
        parent = parent.parent
    if not parent.is_dir():
        raise LabError(f"{flag} {out}: {parent} is not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(dir=parent, prefix=f".{out.name}.probe."))
    except OSError as e:
        raise LabError(f"{flag} {out}: cannot write in {parent} ({e.strerror or e})") from None
    return out


def json_safe(obj, default=None):
    """`obj` with every NaN or infinity (at any depth) turned into None, so the JSON written from it
    is valid JSON (json.dumps writes NaN, which no strict parser reads). Dict keys become strings,
    tuples and sets lists, numpy scalars and arrays Python values; anything else goes through
    `default` (like json.dumps's) when given, else is left for the encoder to refuse.
    Hand-written: pydantic_core.to_jsonable_python(inf_nan_mode="null") does the same but raises on
    bytes that are not UTF-8, which a parquet binary column may hold; `default` decides those here."""
    if isinstance(obj, float):  # numpy.float64 too
        return float(obj) if math.isfinite(obj) else None
    if obj is None or isinstance(obj, (str, int)):
        return obj
    if isinstance(obj, dict):
        return {k if isinstance(k, str) else str(json_safe(k, default)): json_safe(v, default) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [json_safe(v, default) for v in obj]
    if type(obj).__module__ == "numpy" and hasattr(obj, "tolist"):  # scalars and arrays
        return json_safe(obj.tolist(), default)
    if default is not None:
        out = default(obj)
        return out if type(out) is type(obj) else json_safe(out, default)
    return obj


def dumps_json(obj, default=None, **kw) -> str:
    """json.dumps of json_safe(obj): NaN and infinities become null, and allow_nan=False makes any
    that slipped past (a `default` returning one) an error, never invalid JSON on disk."""
    return json.dumps(json_safe(obj, default), allow_nan=False, **kw)
