"""CTranslate2 behind the adapter: Generator.generate_batch() with a per-token callback.

CTranslate2 has no continuous batching: a batch, once started, runs until its last sequence ends
(a sequence that is done early stops, but nothing joins). So the engine thread takes every
request that is waiting when the previous batch ends (at most `max_batch_size`, all with the same
`ignore_eos`) and hands them to one generate_batch() call: static batching, with the library's own
batched kernels. A request that arrives while a batch runs waits for it; its TTFT says so.

Per request: its own max_tokens (the callback stops its sequence there: returning True ends that
batch index), greedy at temperature 0 (sampling_topk=1) else sampling with its temperature and
top_p; ignore_eos as min_length = max_length (CTranslate2 then masks the end token). CTranslate2
takes one random seed per process (ctranslate2.set_random_seed), not per request: `seed` is
ignored. The tokenizer and chat template are the model's own (transformers, from the files the
converter copied beside the weights).
"""

from __future__ import annotations

import queue
import threading


class CT2Backend:
    prefix = "ctranslate2"

    def __init__(self, model: str, threads: int = 2, max_batch_size: int = 8, compute_type: str = ""):
        import ctranslate2
        from transformers import AutoTokenizer

        self.gen = ctranslate2.Generator(model, device="cpu", compute_type=compute_type or "int8",
                                         intra_threads=threads, inter_threads=1)
        self.tok = AutoTokenizer.from_pretrained(model)
        self.max_batch_size = max_batch_size
        self.inbox: queue.SimpleQueue = queue.SimpleQueue()
        self.held = None  # a request taken from the inbox that did not fit the batch being formed
        self.cancelled: set[int] = set()
        self.running = 0
        self._err = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ctranslate2-engine", daemon=True)
        self._thread.start()

    def chat_prompt(self, messages: list[dict]) -> list[int]:
        return list(self.tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                 return_dict=False))

    def decode(self, ids: list[int]) -> str:
        return self.tok.decode(ids, skip_special_tokens=True)

    def submit(self, rid: int, ids: list[int], p, emit) -> None:
        self.inbox.put((rid, ids, p, emit))

    def cancel(self, rid: int) -> None:
        self.cancelled.add(rid)

    def gauges(self) -> dict[str, float]:
        return {"num_requests_running": self.running, "num_requests_waiting": self.inbox.qsize() + (self.held is not None)}

    def error(self) -> str:
        return self._err

    def close(self) -> None:
        self._stop.set()

    def _batch(self) -> list:
        """The next batch: the first waiting request and every later one with the same ignore_eos."""
        first = self.held
        self.held = None
        if first is None:
            try:
                first = self.inbox.get(timeout=0.05)
            except queue.Empty:
                return []
        batch = [first]
        while len(batch) < self.max_batch_size:
            try:
                item = self.inbox.get_nowait()
            except queue.Empty:
                break
            if item[2].ignore_eos != first[2].ignore_eos:
                self.held = item
                break
            batch.append(item)
        return [b for b in batch if b[0] not in self.cancelled]

    def _generate(self, batch: list) -> None:
        p0 = batch[0][2]
        max_len = max(b[2].max_tokens for b in batch)
        counts = [0] * len(batch)
        sample = {"sampling_topk": 1} if p0.temperature == 0 else \
            {"sampling_topk": 0, "sampling_temperature": p0.temperature, "sampling_topp": p0.top_p}

        def on_token(step) -> bool:
            i = step.batch_id
            rid, _ids, p, emit = batch[i]
            counts[i] += 1
            end = step.is_last or counts[i] >= p.max_tokens or rid in self.cancelled
            emit([step.token_id], None if not end else ("length" if counts[i] >= p.max_tokens else "stop"))
            return end

        self.running = len(batch)
        try:
            self.gen.generate_batch([self.tok.convert_ids_to_tokens(b[1]) for b in batch], max_length=max_len,
                                    min_length=max_len if p0.ignore_eos else 0, include_prompt_in_result=False,
                                    callback=on_token, **sample)
        finally:
            self.running = 0
        for i, (rid, _ids, p, emit) in enumerate(batch):  # ended without a last token (the end token)
            emit([], "length" if counts[i] >= p.max_tokens else "stop")
            self.cancelled.discard(rid)

    def _run(self) -> None:
        batch: list = []
        try:
            while not self._stop.is_set():
                batch = self._batch()
                if batch:
                    self._generate(batch)
        except Exception as e:  # noqa: BLE001 - the engine died: every request ends, /health says why
            self._err = f"{type(e).__name__}: {e}"
            for b in batch:
                b[3]([], "error")
