"""The detectors' shared settings: names, the benign-FPR cap, the cache folder, the model format version."""

from __future__ import annotations

DETECTORS = ("rules", "minilm-lr", "nanoguard", "cascade", "ensemble", "ensemble-fast", "union-lr")
MAX_FPR = 0.05
CACHE = "guardrails"
MODEL_VERSION = 1  # bump when the fitted minilm-lr format or recipe changes (old caches are ignored)
