"""Memory measurements shared by labs: the bytes a model's weights take, and a process's peak RSS.

    from llmarch_lab.common.memory import PeakRSS, weights_mb
    weights_mb(model)                  # MiB of parameters + buffers, quantized formats counted as stored
    with PeakRSS() as rss:
        evaluate(model)
    rss.mb                             # highest resident set size seen while the block ran
"""

from __future__ import annotations

import threading


def weights_mb(model) -> float:
    """Bytes of parameters and buffers, in MiB. Same as transformers' get_memory_footprint() for
    plain tensors; it also counts bnb quantization constants (absmax, per-row scales), which
    get_memory_footprint leaves out, and torchao tensor subclasses by their inner tensors (they
    report their logical dtype's element size, which would count int8 weights as fp32)."""
    import itertools

    seen, total = set(), 0
    for t in itertools.chain(model.parameters(), model.buffers()):
        if id(t) not in seen:
            seen.add(id(t))
            total += _nbytes(t)
    return total / 2**20


def _nbytes(t) -> int:
    import torch

    inner = getattr(t, "tensor_data_names", None)  # torchao TorchAOBaseTensor
    if inner:
        parts = [getattr(t, n) for n in inner] + [getattr(t, n, None) for n in getattr(t, "optional_tensor_data_names", [])]
        return sum(_nbytes(x) for x in parts if isinstance(x, torch.Tensor))
    n = t.nelement() * t.element_size()
    qs = getattr(t, "quant_state", None)  # bnb Params4bit
    if qs is not None:
        n += sum(v.nelement() * v.element_size() for v in qs.as_dict().values() if isinstance(v, torch.Tensor))
    scb = getattr(t, "SCB", None)  # bnb Int8Params: one fp32 scale per row
    if isinstance(scb, torch.Tensor):
        n += scb.nelement() * scb.element_size()
    return n


class PeakRSS:
    """Max resident set size of this process while the block runs, sampled every 20 ms.
    Hand-written because ru_maxrss only gives the peak since process start (the load included)."""

    def __init__(self, interval_s: float = 0.02):
        import psutil

        self.proc, self.interval, self.peak = psutil.Process(), interval_s, 0
        self._stop = threading.Event()

    def _sample(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            self._stop.wait(self.interval)

    def __enter__(self):
        self.peak = self.proc.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)

    @property
    def mb(self) -> float:
        return self.peak / 2**20
