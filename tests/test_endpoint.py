"""The one OpenAI-compatible client (llm/endpoint/) against real HTTP servers on 127.0.0.1: the
loopback server (its own process), a stdlib server answering things that are not OpenAI, and,
marked slow, llama.cpp's server checked against the local transformers model."""

import asyncio
import json
import math
import statistics
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from llmarch_lab import LabError
from llmarch_lab.assets import models
from llmarch_lab.llm import loopback
from llmarch_lab.llm.endpoint import Endpoint

KEY = "sk-endpoint-test-secret-42"
MSGS = [{"role": "user", "content": "hi"}]


@pytest.fixture
def odd_server():
    """A stdlib HTTP server answering every GET and POST with HTTP 200 and the body in `answer`."""
    answer = {"body": b""}

    class Handler(BaseHTTPRequestHandler):
        def _reply(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer["body"])))
            self.end_headers()
            self.wfile.write(answer["body"])

        do_GET = do_POST = _reply

        def log_message(self, *args):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_port}/v1", answer
    finally:
        srv.shutdown()
        srv.server_close()


# ------------------------------------------------------------------ preflight

def test_preflight_lists_the_served_model(server):
    assert Endpoint(server, "loopback").preflight() == ["loopback"]


def test_unreachable_port_fails_fast_naming_the_url():
    port = loopback.free_port()
    t0 = time.perf_counter()
    with pytest.raises(LabError, match=f"127.0.0.1:{port}/v1 unreachable"):
        Endpoint(f"http://127.0.0.1:{port}/v1", "m").preflight()
    assert time.perf_counter() - t0 < 6


def test_wrong_scheme_wrong_path_and_wrong_model(server):
    with pytest.raises(LabError, match="must start with http:// or https://"):
        Endpoint(server.replace("http://", "ftp://"), "loopback").preflight()
    with pytest.raises(LabError, match="HTTP 404.*ending in /v1"):
        Endpoint(server.removesuffix("/v1"), "loopback").preflight()
    with pytest.raises(LabError, match=r"does not serve model 'gpt-x'; it serves \['loopback'\]"):
        Endpoint(server, "gpt-x").preflight()


def test_non_openai_answers_are_named(odd_server):
    url, answer = odd_server
    answer["body"] = b"<html>a web page</html>"
    with pytest.raises(LabError, match="not an OpenAI JSON object.*a web page"):
        Endpoint(url, "m").preflight()
    answer["body"] = b'{"models": ["m"]}'
    with pytest.raises(LabError, match="not an OpenAI model list"):
        Endpoint(url, "m").preflight()
    answer["body"] = json.dumps({"choices": [{"text": "x", "logprobs": None}]}).encode()
    with pytest.raises(LabError, match="does not return completion log-probs"):
        Endpoint(url, "m").completion_logprobs("p")


@pytest.mark.parametrize("server", [{"api_key": KEY}], indirect=True)
def test_401_names_the_variable_and_whether_it_is_set(server, monkeypatch):
    ep = Endpoint(server, "loopback", api_key_env="LLMARCH_TEST_KEY")
    monkeypatch.delenv("LLMARCH_TEST_KEY", raising=False)
    with pytest.raises(LabError, match="HTTP 401.*LLMARCH_TEST_KEY, which is NOT set"):
        ep.preflight()
    monkeypatch.setenv("LLMARCH_TEST_KEY", "sk-wrong")
    with pytest.raises(LabError, match="HTTP 401.*LLMARCH_TEST_KEY, which is set") as e:
        ep.chat(MSGS, 2)
    assert "sk-wrong" not in str(e.value)
    monkeypatch.setenv("LLMARCH_TEST_KEY", KEY)  # read at call time: the same object now works
    assert ep.preflight() == ["loopback"] and ep.chat(MSGS, 2).text == " t0 t1"
    assert KEY not in repr(ep)


def test_unset_required_key_is_named_before_any_request(monkeypatch):
    monkeypatch.delenv("LLMARCH_TEST_UNSET_KEY", raising=False)
    port = loopback.free_port()  # nothing listens: the error must come before the network
    ep = Endpoint(f"http://127.0.0.1:{port}/v1", "m", api_key_env="LLMARCH_TEST_UNSET_KEY", key_required=True)
    with pytest.raises(LabError, match="environment variable LLMARCH_TEST_UNSET_KEY is not set"):
        ep.preflight()
    with pytest.raises(LabError, match="LLMARCH_TEST_UNSET_KEY is not set"):
        ep.headers()


def test_a_key_where_its_variable_name_belongs_is_refused_without_echoing_it():
    with pytest.raises(LabError, match="name of an environment variable") as e:
        Endpoint("http://127.0.0.1:1/v1", "m", "sk-live-abc-123")
    assert "sk-live-abc-123" not in str(e.value)


# ------------------------------------------------------------------ chat

@pytest.mark.parametrize("server", [{"tokens": 16}], indirect=True)
def test_chat_returns_text_and_usage(server):
    r = Endpoint(server, "loopback").chat("hello", max_tokens=5)
    assert r.text == " t0 t1 t2 t3 t4"
    assert (r.output_tokens, r.prompt_tokens, r.finish_reason) == (5, 8, "length")
    assert 0 < r.seconds < 5


@pytest.mark.parametrize("server", [{"chunk_delay_ms": 25}], indirect=True)
def test_streaming_chat_counts_and_times_every_chunk(server):
    st = asyncio.run(Endpoint(server, "loopback").astream_chat(MSGS, 8))
    assert st.error == "" and st.text == "".join(f" t{i}" for i in range(8))
    assert st.chunks == 8 and st.output_tokens == 8 and st.prompt_tokens == 8 and st.malformed_chunks == 0
    assert len(st.itl_ms) == 7
    # The server waits 25 ms between chunks. One late read shortens the next gap, so check the
    # median gap, and that the last chunk came at least 7 x 25 ms after the request was sent.
    assert 15 <= statistics.median(st.itl_ms) <= 60, st.itl_ms
    assert 175 <= st.ttft_ms + sum(st.itl_ms) <= st.e2e_ms
    assert st.ttft_ms < st.e2e_ms / 2  # the first chunk is sent at once


@pytest.mark.parametrize("server", [{"tokens": 10, "malformed_every": 4}], indirect=True)
def test_streaming_counts_malformed_chunks_and_shares_a_session(server):
    ep = Endpoint(server, "loopback")

    async def two():
        async with ep.session() as s:
            return await asyncio.gather(ep.astream_chat(MSGS, 10, session=s), ep.astream_chat(MSGS, 10, session=s))

    for st in asyncio.run(two()):
        assert st.error == "" and st.chunks == 10 and st.malformed_chunks == 2  # before chunks 4 and 8


@pytest.mark.parametrize("server", [{"chunk_delay_ms": 400, "tokens": 5}], indirect=True)
def test_streaming_timeout_and_http_errors_become_the_error_field(server):
    t0 = time.perf_counter()
    st = asyncio.run(Endpoint(server, "loopback", timeout_s=0.5).astream_chat(MSGS, 5))
    assert st.error == "timeout after 0.5 s" and st.e2e_ms is None and time.perf_counter() - t0 < 3
    bad = asyncio.run(Endpoint(server.removesuffix("/v1") + "/nope", "loopback").astream_chat(MSGS, 5))
    assert bad.error.startswith("RuntimeError: HTTP 404") and bad.chunks == 0


# ------------------------------------------------------------------ log-probs

def _expected(text):
    """The loopback rule, written out again: logit = occurrences of the token string so far."""
    logits = {t: text.count(t) for t in loopback.VOCAB}
    z = math.log(sum(math.exp(v) for v in logits.values()))
    return {t: v - z for t, v in logits.items()}


def test_completion_logprobs_parse_the_openai_format(server):
    prompt = "yes yes no"  # counts: yes 2, no 1, ' yes' 1, ' no' 1, the rest 0
    lp = Endpoint(server, "loopback").completion_logprobs(prompt, max_tokens=2, top_logprobs=3)
    assert lp.tokens == ["yes", "yes"] and lp.text == "yesyes"
    exp0, exp1 = _expected(prompt), _expected(prompt + "yes")
    assert lp.token_logprobs == pytest.approx([exp0["yes"], exp1["yes"]])
    assert list(lp.top_logprobs[0]) == ["yes", "no", " yes"]  # ties in VOCAB order
    assert lp.top_logprobs[0] == pytest.approx({t: exp0[t] for t in ("yes", "no", " yes")})
    assert math.isclose(sum(math.exp(v) for v in _expected(prompt).values()), 1.0)


def test_label_logprobs_first_tokens_missing_labels_and_strict(server):
    ep = Endpoint(server, "loopback")
    prompt = "maybe maybe yes no no no"
    exp = _expected(prompt)
    got = ep.label_logprobs(prompt, ["yes", "no", "maybe"], top_logprobs=8)
    assert got == pytest.approx({k: exp[k] for k in ("yes", "no", "maybe")})
    assert ep.label_logprobs(prompt, ["Y", "N"], first_tokens=["yes", " no"], top_logprobs=8) == \
        pytest.approx({"Y": exp["yes"], "N": exp[" no"]})
    top2 = ep.label_logprobs(prompt, ["yes", "no", "maybe"], top_logprobs=2)  # no 3, then ' no' 3 (VOCAB order)
    assert top2["no"] == pytest.approx(exp["no"]) and top2["yes"] is None and top2["maybe"] is None
    with pytest.raises(LabError, match=r"label\(s\) \['yes', 'maybe'\] not among the top 2"):
        ep.label_logprobs(prompt, ["yes", "no", "maybe"], top_logprobs=2, strict=True)


# ------------------------------------------------------------------ embeddings, openai client

def test_embeddings_come_back_in_input_order(server):
    ep = Endpoint(server, "loopback")
    vecs = ep.embeddings(["abc", "Banana", "zz"])  # the server answers in reverse order
    assert [len(v) for v in vecs] == [26, 26, 26]
    assert vecs[0][:4] == [1, 1, 1, 0] and (vecs[1][0], vecs[1][1], vecs[1][13]) == (3, 1, 2) and vecs[2][25] == 2
    assert ep.embeddings("abc") == [vecs[0]]


@pytest.mark.parametrize("server", [{"api_key": KEY}], indirect=True)
def test_openai_clients_use_the_same_url_key_and_timeout(server, monkeypatch):
    monkeypatch.setenv("LLMARCH_TEST_KEY", KEY)
    ep = Endpoint(server, "loopback", api_key_env="LLMARCH_TEST_KEY", timeout_s=7)
    client = ep.openai_client()

    async def ask():
        r = await client.chat.completions.create(model="loopback", messages=MSGS, max_tokens=3)
        return r.choices[0].message.content

    assert asyncio.run(ask()) == " t0 t1 t2"
    assert client.timeout == 7 and client.max_retries == 0
    sync = ep.openai_client(async_=False)
    assert [m.id for m in sync.models.list()] == ["loopback"]
    assert sync.embeddings.create(model="loopback", input=["ab"]).data[0].embedding[:3] == [1, 1, 0]


# ------------------------------------------------------------------ the real llama.cpp server

QUESTIONS = ["Is the sky blue?", "Is water dry?", "Do cats bark?", "Is Paris in France?", "Is 2+2 equal to 5?",
             "Can fish fly?", "Is the sun hot?", "Does aspirin reduce fever?", "Is ice cold?", "Do humans need oxygen?"]


@pytest.mark.slow
def test_llamacpp_label_logprobs_agree_with_the_local_model(tmp_path):
    """llama.cpp serves the SmolLM2 Q4_1 GGUF; the local model is the fp32 conversion of the same
    file, so the weights agree exactly and only the arithmetic differs (llama.cpp quantizes the
    activations for its Q4_1 matmuls). Tolerance: every label log-prob within 0.5 nats, the mean
    difference under 0.25 (measured: max 0.23, mean 0.12), and the yes-vs-no call the same
    wherever the local model's margin exceeds 0.3 nats."""
    from llmarch_lab.llm import engines, local

    tok = models.load_tokenizer(models.SMOLLM2)
    prompts = [tok.apply_chat_template([{"role": "user", "content": q + " Answer yes or no."}],
                                       add_generation_prompt=True, tokenize=False) for q in QUESTIONS]
    firsts = [tok.decode([i]) for i in local.label_token_ids(tok, ["yes", "no"])]
    with engines.launch("llamacpp", models.SMOLLM2, log_path=tmp_path / "llamacpp.log") as eng:
        ep = eng.endpoint(timeout_s=60)
        assert ep.preflight() == [eng.model_name]
        served = [ep.label_logprobs(p, ["yes", "no"], first_tokens=firsts, top_logprobs=100, strict=True)
                  for p in prompts]
    model, tok = models.load_causal_lm(models.SMOLLM2)
    ref = local.label_logprobs(model, tok, prompts, ["yes", "no"]).tolist()
    diffs = [abs(s[k] - r[j]) for s, r in zip(served, ref) for j, k in enumerate(("yes", "no"))]
    assert max(diffs) < 0.5 and sum(diffs) / len(diffs) < 0.25, diffs
    for s, r in zip(served, ref):
        if abs(r[0] - r[1]) > 0.3:
            assert (s["yes"] > s["no"]) == (r[0] > r[1]), (s, r)
    assert sum(abs(r[0] - r[1]) > 0.3 for r in ref) >= 3  # the margin check compared something


def test_chat_logprobs_missing_raise_unless_not_required(server):
    """A guard in front may answer with a canned text and no log-probs (the system's stack quality)."""
    ep = Endpoint(server, "loopback")
    with pytest.raises(LabError, match="gave no logprobs.content"):
        ep.chat_logprobs(MSGS, 2, top_logprobs=5)
    reply, lp = ep.chat_logprobs(MSGS, 2, top_logprobs=5, required=False)
    assert reply.text == " t0 t1" and lp.top_logprobs == [] and lp.tokens == []
