"""The alert drill for real: llama-server (SmolLM2), the guard service and the LiteLLM gateway,
Prometheus with the bundle's rules at drill timing, Alertmanager delivering to the webhook
receiver. Every induced fault must fire its alert and the alert must resolve; nothing stays running
(tests/conftest.py checks the process table around the module)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llmarch_lab.system import bundle_files
from llmarch_lab.system.ops import drill, monitor

ROOT = Path(__file__).resolve().parents[1]


def test_drill_rules_are_the_bundles_rules_with_shorter_times():
    cfg = drill.DrillConfig(window_s=8, for_s=2)
    c = cfg.bundle("smollm2-135m-instruct")
    prod, short = bundle_files.alert_rules(c), bundle_files.alert_rules(c, cfg.timing())
    pr, sr = prod["groups"][0]["rules"], short["groups"][0]["rules"]
    assert prod["groups"][1]["rules"] == [{"record": bundle_files.INFLIGHT,
                                           "expr": "llamacpp:requests_processing + llamacpp:requests_deferred"}]
    assert [r["alert"] for r in pr] == [r["alert"] for r in sr]
    assert "GuardBlockRateAnomaly" in [r["alert"] for r in pr]
    for p, s in zip(pr, sr):
        assert p["expr"].replace("[5m]", "[8s]") == s["expr"]
        assert s["for"] == "2s" and p["for"] == bundle_files.PRODUCTION[p["alert"]]
    # A guard's block is not an error: the error rate leaves LiteLLM's ModifyResponseException out.
    err = next(r for r in pr if r["alert"] == "ErrorRateSLOBurn")["expr"]
    assert 'exception_class!="ModifyResponseException"' in err
    # No guard, no guard rule and no guard scrape job.
    c.guard = "none"
    assert "GuardBlockRateAnomaly" not in json.dumps(bundle_files.alert_rules(c))
    jobs = [j["job_name"] for j in bundle_files.prometheus_config(c, "e:1", "g:2")["scrape_configs"]]
    assert jobs == ["engine", "gateway"]


def test_monitoring_names_the_missing_program(monkeypatch, tmp_path):
    monkeypatch.setattr(monitor.sysdeps, "find", lambda name: None)
    with pytest.raises(Exception, match="make sys-alertmanager|make sys-prometheus"):
        with monitor.Monitoring(tmp_path, {"scrape_configs": []}, {"groups": []}):
            pass


def test_drill_fires_and_resolves_every_alert(store, tmp_path):
    out = tmp_path / "drill"
    r = subprocess.run([sys.executable, "-m", "llmarch_lab.cli", "system", "drill", "--out", str(out),
                        "--window-s", "8", "--for-s", "2", "--baseline-s", "6"], capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rows = list(__import__("csv").DictReader((out / "drill.csv").open()))
    fired = {(x["fault"], x["alert"]) for x in rows if x["fired"] == "True" and x["expected"] == "True"}
    assert fired == {("engine killed", "EngineDown"), ("engine killed", "ErrorRateSLOBurn"),
                     ("overload", "TTFTp99SLOBurn"), ("overload", "QueueBuildingUp"),
                     ("guard block wave", "GuardBlockRateAnomaly")}
    for x in rows:
        if x["fired"] == "True":
            assert float(x["to_fire_s"]) > 0 and x["to_resolve_s"] != "", x
    info = json.loads((out / "drill.json").read_text())
    assert info["baseline_alerts"] == []
    # The guard's counters and the gateway's cost counters reached Prometheus.
    assert info["counters"]["guard input blocks"] > 0
    assert info["counters"]["gateway spend (USD)"] > 0 and info["counters"]["gateway output tokens"] > 0
    # The HPA's recording rule ran in Prometheus: the overload put more requests in flight than slots.
    assert info["counters"]["HPA metric peak (in flight per replica)"] > 2
    # The drill's Prometheus really ran the rules it was given, with its alerting to Alertmanager.
    prom = yaml.safe_load((out / "monitoring" / "prometheus.yml").read_text())
    assert prom["alerting"]["alertmanagers"] and prom["global"]["scrape_interval"] == "1s"
    assert "drill: every expected alert fired and resolved" in r.stdout
    md = (out / "drill.md").read_text()
    assert "| engine killed" in md and "GuardBlockRateAnomaly" in md


def test_balance_failover_and_fallback_through_litellms_router(tmp_path):
    """Two llama-server replicas behind LiteLLM's Router: every strategy answers; a replica killed
    mid-run costs at most the requests in flight on it; with the primary down, LiteLLM's fallback
    answers every request with the second model (Qwen 0.5B)."""
    from llmarch_lab.system.ops import balance

    cfg = balance.BalanceConfig(requests=8, concurrency=2, strategies=("least-busy",), kill_after_s=2.0,
                                fallback_requests=3, max_tokens=8)
    t = balance.run(cfg, tmp_path, progress=False)["table"].set_index("scenario")
    assert t.loc["1 replica (through the proxy)", "failed"] == 0
    assert t.loc["2 replicas, least-busy", "failed"] == 0 and t.loc["2 replicas, least-busy", "req_per_s"] > 0
    fo = t.loc[[s for s in t.index if s.startswith("failover")][0]]
    assert fo.requests == 8 and fo.failed <= cfg.concurrency  # at most what was in flight on the killed one
    fb = t.loc["fallback (primary down)"]
    assert fb.failed == 0 and f"{cfg.fallback_model} x3" in fb.note
    # The router config really names both deployments and the strategy.
    cfg_json = json.loads((tmp_path / "router-least-busy.json").read_text())
    assert len(cfg_json["model_list"]) == 2 and cfg_json["router_settings"]["routing_strategy"] == "least-busy"


def test_balance_config_errors_name_the_field():
    from llmarch_lab.system.ops import balance

    with pytest.raises(Exception, match="replicas 1"):
        balance.BalanceConfig(replicas=1).check()
    with pytest.raises(Exception, match="round-robin"):
        balance.BalanceConfig(strategies=("round-robin",)).check()
