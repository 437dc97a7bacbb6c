"""What a module's own command line shares (`python -m llmarch_lab....`): key=value arguments read
as YAML scalars, and one-line errors.

    @one_line_errors
    def main(argv=None) -> int: ...          # a LabError: "error: ..." on stderr, exit status 2
    key_values(["steps=4", "lr=1e-3"])       # {"steps": 4, "lr": 0.001}
"""

from __future__ import annotations

import functools
import sys

from llmarch_lab import LabError


def one_line_errors(main):
    """Decorate a main(argv) -> int: a LabError becomes one line on stderr and exit status 2."""
    @functools.wraps(main)
    def wrapped(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs)
        except LabError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    return wrapped


def key_values(args: list[str], keys: str = "") -> dict:
    """{key: YAML value} from key=value arguments; a LabError naming the first that is not one
    (`keys`, when given, lists the valid keys in the message)."""
    import yaml

    bad = [a for a in args if "=" not in a]
    if bad:
        raise LabError(f"arguments are key=value, got {bad[0]!r}" + (f" (keys: {keys})" if keys else ""))
    out = {}
    for k, v in (a.split("=", 1) for a in args):
        try:
            out[k] = yaml.safe_load(v)
        except yaml.YAMLError:
            raise LabError(f"{k}={v}: not a YAML value") from None
    return out
