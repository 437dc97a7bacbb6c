"""Per-key limits and abuse at the real gateway: llama-server (SmolLM2), the guard service and the
LiteLLM proxy with the keys file, on loopback. The excess gets 429 (never 5xx), an rpm and a tpm
limit cut in where they should, bad bodies get 4xx, a small fuzz gets no 5xx; nothing stays
running (tests/conftest.py checks the process table around the module)."""

from __future__ import annotations

import json

import pytest

from llmarch_lab.labs.guardrails.gateway import keys
from llmarch_lab.system.ops import ratelimit


def test_keys_file_holds_digests_and_refuses_unknown_fields(tmp_path):
    p = tmp_path / "keys.json"
    keys.write_keys(p, {"sk-secret-1": {"alias": "a", "rpm_limit": 5}})
    text = p.read_text()
    assert "sk-secret-1" not in text and keys.digest("sk-secret-1") in text
    assert json.loads(text)[keys.digest("sk-secret-1")] == {"alias": "a", "rpm_limit": 5, "tpm_limit": None,
                                                           "max_parallel_requests": None}
    with pytest.raises(ValueError, match="rpm"):
        keys.write_keys(p, {"sk-x": {"rpm": 5}})


def test_body_checks_name_the_field():
    schema = keys.chat_schema()
    ok = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    assert keys.body_problem(json.dumps(ok).encode(), schema) == ""
    assert keys.body_problem(json.dumps({**ok, "max_tokens": 0}).encode(), schema).startswith("field max_tokens:")
    assert keys.body_problem(json.dumps({**ok, "messages": [{"role": "x"}]}).encode(), schema).startswith(
        "field messages.0.role:")
    assert "JSON object" in keys.body_problem(b"[1]", schema)


def test_fuzz_is_repeatable_and_bounded():
    a, b = list(ratelimit.fuzz_bodies(40, "m", seed=3)), list(ratelimit.fuzz_bodies(40, "m", seed=3))
    assert a == b and len(a) == 40 and len(set(a)) > 20
    assert all(isinstance(json.loads(x), dict) for x in a)


def test_limits_and_abuse_at_the_gateway(tmp_path):
    cfg = ratelimit.RateLimitConfig(capacity_requests=4, overload_requests=16, rpm=3, tpm=150, fuzz_n=40)
    out = ratelimit.run(cfg, tmp_path, progress=False)
    lim = out["limits"].set_index("id")
    assert (lim["5xx"] == 0).all() and (lim["other"] == 0).all(), lim.to_string()
    assert lim.loc["overload_nolimit", "429"] == 0 and lim.loc["overload_nolimit", "admitted"] == 16
    mp = lim.loc["overload_maxparallel"]
    assert mp["429"] > 0 and mp["admitted"] > 0, lim.to_string()
    assert lim.loc["rpm", "admitted"] == 3 and lim.loc["rpm", "429"] == 3
    assert lim.loc["tpm", "429"] > 0 and lim.loc["tpm", "admitted"] >= 1
    bodies = out["bodies"]
    bad = set(bodies.loc[~bodies["4xx"], "case"])
    assert bad <= set(ratelimit.LITELLM_500), bodies.to_string()
    assert bodies.set_index("case").loc["body over 1 MB", "status"] == "413"
    assert out["fuzz"]["5xx_or_dropped"] == 0, out["fuzz"]
