"""A resumable per-item score cache: one JSON line per scored item, appended as soon as it is scored,
so an interrupted run starts again where it stopped.

    cache = ScoreCache.open("smollm2-135m-instruct", "crows")   # <cache dir>/bias/v1/<model>/crows.jsonl
    todo = [k for k in keys if k not in cache]
    cache.put(key, [[-58.4, 15], [-63.4, 15]])                   # any JSON value

A key names the item and how it was scored (set, line, prompt variant), and METHOD versions the
scoring code: a change to prompts or scoring gets a new folder instead of mixing old and new scores.
A torn last line (a killed run) is ignored on reading.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

METHOD = "v1"


class ScoreCache:
    def __init__(self, path: Path | None):
        self.path = path
        self.values: dict[str, object] = {}
        if path is not None and path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line torn by a killed run
                if isinstance(row, dict) and "key" in row:
                    self.values[row["key"]] = row.get("value")

    @classmethod
    def open(cls, model_key: str, name: str, enabled: bool = True) -> "ScoreCache":
        """The cache of one model and one set under the lab cache dir (in memory only if not enabled)."""
        if not enabled:
            return cls(None)
        from llmarch_lab import paths

        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", model_key)
        folder = paths.cache_dir() / "bias" / METHOD / safe
        folder.mkdir(parents=True, exist_ok=True)
        return cls(folder / f"{name}.jsonl")

    def __contains__(self, key: str) -> bool:
        return key in self.values

    def __getitem__(self, key: str):
        return self.values[key]

    def put(self, key: str, value) -> None:
        self.values[key] = value
        if self.path is not None:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps({"key": key, "value": value}) + "\n")
