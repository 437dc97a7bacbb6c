"""The RAG lab end to end on a small PubMedQA slice: real LanceDB, MiniLM, SmolLM2 answers, ragas
non-LLM scores, and an LLM judge that is a real HTTP server on 127.0.0.1 answering garbage, so
every judgement fails and must be counted, not averaged."""

import json
import math
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llmarch_lab.labs.rag import ragas_eval
from llmarch_lab.labs.rag.lab import RagParams, run


@pytest.fixture
def garbage_judge():
    """An 'OpenAI-compatible' endpoint whose every reply is HTTP 200 with a body that is not JSON."""
    calls = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            calls.append(json.loads(body).get("model"))
            reply = b"<html>definitely not a chat completion</html>"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1", calls
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.slow
def test_small_run_scores_retrieval_answers_and_counts_judge_failures(garbage_judge):
    url, calls = garbage_judge
    p = RagParams(corpus="pubmedqa", n_docs=60, n_queries=20, mode="hybrid", chunking="recursive",
                  n_generate=2, context_k=1, max_new_tokens=8,
                  judge_base_url=url, judge_model="judge-under-test", judge_timeout_s=5)
    res = run(p)
    m = res.metrics
    # retrieval: questions find their own abstracts among 60
    assert m["quality.ndcg_at_10"] > 0.8 and m["quality.recall_at_10"] > 0.9
    assert m["latency.query_ms_p50"] <= m["latency.query_ms_p95"] <= m["latency.query_ms_p99"]
    assert m["latency.index_build_s"] > 0 and m["memory.index_disk_mb"] > 0
    assert res.tags["query_encoder"] == "onnx" and m["latency.query_encoder_load_s"] > 0  # the CPU default
    q = res.tables["queries"]
    assert len(q) == 20 and q["quality.ndcg_at_10"].between(0, 1).all()
    assert int(res.tags["n_chunks"]) > 60  # recursive chunking split the abstracts
    # answers and non-LLM ragas scores
    answers = res.tables["answers"]
    assert len(answers) == 2 and answers.output_tokens.gt(0).all()
    for name in ragas_eval.NONLLM_METRICS:
        assert 0.0 <= m[f"quality.ragas.{name}"] <= 1.0, name
    # the judge: every judgement failed, was counted, and no judged metric was invented
    assert calls and set(calls) == {"judge-under-test"}
    assert m["count.judge_failures"] == m["count.judge_judgements"] == 2 * len(ragas_eval.JUDGE_METRICS)
    for name in ragas_eval.JUDGE_METRICS:
        assert f"quality.ragas.{name}" not in m
        assert answers[name].map(math.isnan).all()
        assert answers[f"{name}_error"].str.len().gt(0).all()
