"""OpenVINO GenAI behind the adapter: its ContinuousBatchingPipeline schedules (no scheduler here).

The pipeline reads the GGUF directly (OpenVINO GenAI's GGUF reader: Q4_0, Q4_1, Q4_K_M, Q8_0,
FP16 for Llama / Qwen2 families) or an OpenVINO IR folder. SchedulerConfig sets how it batches:
`max_num_seqs` sequences at most, `max_num_batched_tokens` tokens per step with
dynamic_split_fuse (a long prompt is split over steps and fused with the decodes: chunked
prefill), `cache_size` GB of paged KV cache. One engine thread owns the pipeline: it adds the
requests that arrived, calls step() while any is unfinished, and hands every request's new
token ids to its Stream. The request is dropped from the pipeline when its client goes away.
"""

from __future__ import annotations

import queue
import threading


class OpenVINOBackend:
    prefix = "openvino"

    def __init__(self, model: str, threads: int = 2, max_num_seqs: int = 8, max_batched_tokens: int = 256,
                 cache_gb: float = 1.0, kv_precision: str = "", max_model_len: int = 2048):
        import openvino_genai as og

        self.og = og
        sc = og.SchedulerConfig()
        sc.max_num_seqs = max_num_seqs
        sc.max_num_batched_tokens = max_batched_tokens
        sc.dynamic_split_fuse = True
        sc.cache_size = max(1, int(round(cache_gb)))  # GB, whole numbers
        props = {"INFERENCE_NUM_THREADS": threads}
        if kv_precision:
            props["KV_CACHE_PRECISION"] = kv_precision
        self.pipe = og.ContinuousBatchingPipeline(model, sc, "CPU", props)
        self.tok = self.pipe.get_tokenizer()
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.live: dict[int, tuple] = {}
        self._err = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="openvino-engine", daemon=True)
        self._thread.start()

    # ---- called from the event loop
    def chat_prompt(self, messages: list[dict]) -> list[int]:
        text = self.tok.apply_chat_template(messages, add_generation_prompt=True)
        return [int(i) for i in self.tok.encode(text, add_special_tokens=False).input_ids.data[0]]

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True)

    def submit(self, rid: int, ids: list[int], p, emit) -> None:
        gc = self.og.GenerationConfig()
        gc.max_new_tokens = p.max_tokens
        gc.ignore_eos = p.ignore_eos
        if p.temperature > 0:
            gc.do_sample, gc.temperature, gc.top_p = True, p.temperature, p.top_p
            if p.seed is not None:
                gc.rng_seed = p.seed
        self.inbox.put(("add", rid, ids, gc, emit))

    def cancel(self, rid: int) -> None:
        self.inbox.put(("cancel", rid, None, None, None))

    def gauges(self) -> dict[str, float]:
        m = self.pipe.get_metrics()  # as of the last step(): none runs once nothing is live
        live = len(self.live)
        return {"num_requests_running": min(m.scheduled_requests, live),
                "num_requests_waiting": max(0, min(m.requests, live) - m.scheduled_requests) + self.inbox.qsize(),
                "kv_cache_usage_perc": m.cache_usage / 100.0}  # the pipeline reports percent

    def error(self) -> str:
        return self._err

    def close(self) -> None:
        self._stop.set()

    # ---- the engine thread
    def _take(self, block: bool) -> None:
        import numpy as np
        import openvino as ov

        try:
            item = self.inbox.get(timeout=0.05) if block else self.inbox.get_nowait()
        except queue.Empty:
            return
        while True:
            op, rid, ids, gc, emit = item
            if op == "add":
                h = self.pipe.add_request(rid, ov.Tensor(np.array([ids], dtype=np.int64)), gc)
                self.live[rid] = [h, emit, gc.max_new_tokens, 0]
            elif rid in self.live:
                self.live.pop(rid)[0].cancel()  # its client went away: the pipeline frees its blocks
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                return

    def _run(self) -> None:
        status = self.og.GenerationStatus
        try:
            while not self._stop.is_set():
                self._take(block=not self.live)
                if not self.live:
                    continue
                self.pipe.step()
                for rid, entry in list(self.live.items()):
                    h, emit, max_new, n = entry
                    new = []
                    if h.can_read():
                        for out in h.read().values():
                            new += list(out.generated_ids)
                    entry[3] = n = n + len(new)
                    st = h.get_status()
                    if st == status.RUNNING:
                        if new:
                            emit(new)
                        continue
                    ok = st in (status.FINISHED, status.STOP)
                    emit(new, ("length" if n >= max_new else "stop") if ok else "error")
                    del self.live[rid]
        except Exception as e:  # noqa: BLE001 - the engine died: every request ends, /health says why
            self._err = f"{type(e).__name__}: {e}"
            for entry in self.live.values():
                entry[1]([], "error")
