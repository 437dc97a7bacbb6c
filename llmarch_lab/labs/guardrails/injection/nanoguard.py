"""The `nanoguard` detector (metatronnanoguard as it comes) and the disk memo of its scores."""

from __future__ import annotations

import hashlib

from llmarch_lab import LabError, paths
from llmarch_lab.labs.guardrails.detectors import Detector, windows
from llmarch_lab.labs.guardrails.injection.base import CACHE

# ============================================================================== nanoguard

class NanoGuardDetector(Detector):
    """metatronnanoguard as it comes: 512-token windows padded like NanoGuard.scan, max over windows."""

    name = "nanoguard"

    def __init__(self, threshold: float = 0.5, overlap: int = 32, batch_size: int = 8, cache: bool = False):
        self.threshold, self.overlap, self.batch_size, self.cache = threshold, overlap, batch_size, cache
        self._ng = None

    def _load(self):
        if self._ng is None:
            try:
                from nanoguard import NanoGuard
            except ImportError:
                raise LabError("detector 'nanoguard' needs metatronnanoguard==0.1.0 (pip install metatronnanoguard==0.1.0)") from None
            self._ng = NanoGuard(device="cpu", threshold=self.threshold)
            self.seq_len = int(self._ng.config.sequence_len)  # 512, BOS included
        return self._ng

    def _windows(self, text: str) -> list[list[int]]:
        tok = self._ng.tokenizer
        ids = tok.enc.encode_ordinary(text)
        return [[tok.bos_token_id, *w] for w in windows(ids, self.seq_len - 1, self.overlap)]

    def _forward(self, wins: list[list[int]]):
        import torch

        ng = self._ng
        pad = ng.tokenizer.pad_token_id
        ids = torch.full((len(wins), self.seq_len), pad, dtype=torch.long)
        mask = torch.zeros((len(wins), self.seq_len), dtype=torch.bool)
        for i, w in enumerate(wins):
            ids[i, :len(w)] = torch.tensor(w, dtype=torch.long)
            mask[i, :len(w)] = True
        with torch.inference_mode():
            logits = ng.model(ids, mask)
        return torch.softmax(logits.float(), dim=-1)[:, 1].numpy()

    def _score_uncached(self, texts: list[str]):
        import numpy as np

        self._load()
        per_text = [[tuple(w) for w in self._windows(t)] for t in texts]
        uniq = list(dict.fromkeys(w for ws in per_text for w in ws))  # repeated boilerplate: one forward
        prob: dict[tuple, float] = {}
        for s in range(0, len(uniq), self.batch_size):
            part = uniq[s:s + self.batch_size]
            prob.update(zip(part, map(float, self._forward([list(w) for w in part]))))
        return np.array([max(prob[w] for w in ws) for ws in per_text])

    def _score(self, texts: list[str]):
        if not self.cache:
            return self._score_uncached(texts)
        return _disk_memo("nanoguard-0.1.0-padded", texts, self._score_uncached)

    def info(self) -> dict:
        return self._load().info()


def _disk_memo(tag: str, texts: list[str], fn):
    """Scores of a fixed (untrained) model, memoised on disk by text sha256: CV of the cascade and
    the ensemble re-uses nanoguard's scores of the training file instead of paying ~0.4 s a text."""
    import numpy as np
    from diskcache import Cache

    keys = [f"{tag}|" + hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]
    out = np.zeros(len(texts))
    with Cache(str(paths.cache_dir() / CACHE / "scores")) as cache:
        vals = [cache.get(k) for k in keys]
        todo = [i for i, v in enumerate(vals) if v is None]
        if todo:
            got = fn([texts[i] for i in todo])
            with cache.transact():
                for i, v in zip(todo, got):
                    cache.set(keys[i], float(v))
                    vals[i] = float(v)
    out[:] = vals
    return out
