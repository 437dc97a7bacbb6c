"""Semantic cache (labs/cost/cache.py, trace.py): real MiniLM, real FAISS / LanceDB / GPTCache,
small slices of the QQP dev pairs."""

import gzip
import json

import pytest

from llmarch_lab import LabError
from llmarch_lab.labs.cost import cache as C
from llmarch_lab.labs.cost import trace as T


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


@pytest.fixture(scope="module")
def dev():
    return C.dev_pairs()


def test_exact_repeat_is_always_a_hit_even_under_a_strict_verifier():
    c = C.SemanticCache(C.CacheConfig(threshold=0.999, verifier="lr", verifier_threshold=1.0),
                        verifier=_FailVerifier())
    c.put("How do I learn Python?", "a1")
    h = c.get("How do I learn Python?")
    assert h is not None and h.answer == "a1" and h.similarity == 1.0
    assert c.get("Which is the tallest mountain?") is None


class _FailVerifier:  # scores nothing: an exact repeat must not need the verifier
    def predict_lists(self, *a, **k):
        raise AssertionError("verifier called on an exact repeat")


def test_ttl_expiry_and_lru_eviction_drop_entries_from_the_index():
    clk = Clock()
    c = C.SemanticCache(C.CacheConfig(threshold=0.8, ttl_s=10, max_entries=2), clock=clk)
    c.put("How do I learn Python?", 0)
    c.put("What is the capital of France?", 1)
    assert c.get("How do I learn Python?").answer == 0  # refreshes its LRU position
    c.put("Why is the sky blue?", 2)  # evicts the least recently used: France
    assert len(c) == 2 and c.stats.evicted == 1
    assert c.get("What is the capital of France?") is None
    assert c.get("What's the capital city of France?") is None  # gone from the vector index too
    assert c.get("How can I learn Python?").answer == 0
    clk.t = 11
    assert c.get("Why is the sky blue?") is None and len(c) == 0 and c.stats.expired == 2


def test_faiss_and_lancedb_serve_the_same_entries():
    keys = ["How do I learn Python?", "What is the capital of France?", "How do I bake bread at home?"]
    qs = ["How can I learn Python?", "capital city of France?", "bread baking at home"]
    out = []
    for kind in C.INDEXES:
        c = C.SemanticCache(C.CacheConfig(index=kind, threshold=0.5))
        c.put_many(keys, range(3))
        out.append([(h.key, round(h.similarity, 4)) for h in c.get_many(qs)])
    assert out[0] == out[1] and [k for k, _ in out[0]] == keys


def test_config_rejects_bad_values():
    with pytest.raises(LabError, match="CacheConfig.index"):
        C.CacheConfig(index="chroma")
    with pytest.raises(LabError, match="verifier_threshold"):
        C.CacheConfig(verifier_threshold=1.5)
    with pytest.raises(LabError, match="max_entries"):
        C.CacheConfig(max_entries=0)


def _disjoint(train, test):
    seen = set(train.text_a) | set(train.text_b)
    return test[~test.text_a.isin(seen) & ~test.text_b.isin(seen)].reset_index(drop=True)


def test_verifier_cuts_wrong_hits_on_a_held_out_slice(dev):
    train, test = dev.iloc[:1500], _disjoint(dev.iloc[:1500], dev.iloc[1500:1800])
    v = C.train_verifier(train, model="logreg", progress=False)
    plain = C.eval_pairs(test, C.CacheConfig(threshold=0.8), latency_sample=5)
    ver = C.eval_pairs(test, C.CacheConfig(threshold=0.8, verifier="lr", verifier_threshold=0.7), verifier=v,
                       latency_sample=5)
    assert plain["wrong_hit_rate_label_aware"] > 0.03  # plain cosine at 0.8 is unsafe on Quora near-misses
    assert ver["wrong_hit_rate_label_aware"] < 0.6 * plain["wrong_hit_rate_label_aware"]
    assert ver["hit_rate_label_aware"] > 0.1
    # the command's literal rates: own text_a only; an exact repeat of another entry is a wrong hit
    for r in (plain, ver):
        assert r["hit_rate"] <= r["hit_rate_label_aware"] and r["wrong_hit_rate"] >= r["wrong_hit_rate_label_aware"]
        assert r["wrong_hit_rate"] >= r["exact_collision_rate"]
    # the batch evaluation and the cache's own get_many follow one rule
    g = C.sweep(test, [0.7], C.CacheConfig(threshold=0.8, verifier="lr"), verifier=v).iloc[0]
    assert g["hit_rate"] == pytest.approx(ver["hit_rate_label_aware"])
    assert g["wrong_hit_rate"] == pytest.approx(ver["wrong_hit_rate_label_aware"])


def test_gptcache_peer_runs_offline_and_matches_cosine_equivalent(dev):
    part = dev.iloc[2000:2120].reset_index(drop=True)
    summary, sw = C.gptcache_eval(part, 0.9, thresholds=[0.9, 0.95], latency_sample=5, progress=False)
    ours = C.sweep(part, [0.8, 0.9], C.CacheConfig())
    # GPTCache's SearchDistanceEvaluation: hit iff 4 - squared L2 >= 4 t, i.e. cosine >= 2 t - 1
    assert sw["hit_rate"].tolist() == pytest.approx(ours["hit_rate"].tolist(), abs=0.02)
    assert summary["hit_rate"] == pytest.approx(sw["hit_rate"].iloc[0]) and summary["latency_ms_p50"] > 0


def _write(path, lines, gz=False):
    data = "\n".join(lines) + "\n"
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as f:
            f.write(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path


GOOD = json.dumps({"text_a": "How do I learn Python?", "text_b": "How can I learn Python?", "label": 1})


@pytest.mark.parametrize("line, msg", [
    ('{"text_a": "a", "label": 1}', r":2: missing field 'text_b'"),
    ("{not json", r":2: not valid JSON"),
    ('{"text_a": 3, "text_b": "b", "label": 0}', r":2: field 'text_a' must be a non-empty string"),
    ('{"text_a": "a", "text_b": "b", "label": "yes"}', r":2: field 'label' must be 0 or 1"),
    ("[1, 2]", r":2: expected a JSON object"),
])
def test_bad_pairs_files_name_file_line_and_field(tmp_path, line, msg):
    for gz in (False, True):
        p = _write(tmp_path / ("p.jsonl.gz" if gz else "p.jsonl"), [GOOD, line], gz)
        with pytest.raises(LabError, match=rf"p\.jsonl(\.gz)?{msg}"):
            C.eval_pairs_file(p, None, C.CacheConfig())


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(LabError, match="no pairs"):
        C.read_pairs(_write(tmp_path / "e.jsonl", [""]))
    with pytest.raises(LabError, match="no such file"):
        C.read_pairs(tmp_path / "missing.jsonl")


def test_eval_pairs_file_writes_out_atomically(tmp_path, dev):
    rows = dev.iloc[2200:2260]
    p = _write(tmp_path / "p.jsonl.gz", [json.dumps(r) for r in rows.to_dict("records")], gz=True)
    out = tmp_path / "out.json"
    res = C.eval_pairs_file(p, out, C.CacheConfig(threshold=0.9), latency_sample=10)
    assert json.loads(out.read_text()) == json.loads(json.dumps(res))
    assert res["n_pairs"] == 60 and res["n_duplicates"] == int(rows.label.sum())
    assert 0 <= res["wrong_hit_rate"] <= 1 and res["latency_ms_p95"] >= res["latency_ms_p50"] > 0
    assert res["config"]["threshold"] == 0.9 and [x.name for x in tmp_path.iterdir() if "tmp" in x.name] == []


def test_trace_is_seeded_and_references_earlier_requests():
    a = T.build_trace(300, repeat_rate=0.5, paraphrase_share=0.4, near_miss_share=0.2, zipf_s=1.2, seed=3)
    b = T.build_trace(300, repeat_rate=0.5, paraphrase_share=0.4, near_miss_share=0.2, zipf_s=1.2, seed=3)
    assert a.equals(b) and set(a.kind) == set(T.KINDS)
    dup = a[a.kind.isin(["repeat", "paraphrase"])]
    assert (dup.is_duplicate_of < dup.request_id).all()
    assert a[a.kind == "near_miss"].source_id.isna().all()
    with pytest.raises(LabError, match="paraphrase_share"):
        T.build_trace(10, paraphrase_share=0.8, near_miss_share=0.5)


def test_replay_serves_every_exact_repeat():
    t = T.build_trace(120, repeat_rate=0.5, paraphrase_share=0.3, near_miss_share=0.2, zipf_s=1.1, seed=1)
    r = T.replay(C.SemanticCache(C.CacheConfig(threshold=0.95)), t, progress=False)
    assert r.loc[r.kind == "repeat", "correct_hit"].all()
    s = T.summary(r)
    assert 0 < s["hit_rate"] <= 1 and s["large_calls_saved_share"] >= s["correct_saved_share"]
    assert "latency_hit_ms_p50" in s and "latency_miss_ms_p50" in s
