"""Prometheus and Alertmanager for real, on loopback: the monitoring half of the system drill.

    with monitor.Monitoring(folder, prometheus_cfg, rules) as mon:   # both started, both ready
        mon.wait_up(["engine", "gateway"])       # every target scraped once
        mon.firing()                             # {alertname: "pending" | "firing"} from Prometheus
        mon.events                               # what Alertmanager's webhook delivered: Notice rows

Prometheus (Debian `prometheus`, make sys-prometheus) scrapes the given config and evaluates the
rules; its alerts go to Alertmanager (Debian `prometheus-alertmanager`, make sys-alertmanager),
which routes every alert, firing and resolved, to one webhook receiver: an HTTP server in this
process that records each notification with its arrival time. Both programs run in their own
process groups with their data under `folder` and are stopped on every exit path.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from llmarch_lab import LabError
from llmarch_lab.common import procs, sysdeps

# Alertmanager's route for a drill: no grouping delay, resolved alerts sent too.
ROUTE = {"receiver": "lab", "group_by": ["alertname"], "group_wait": "0s", "group_interval": "1s",
         "repeat_interval": "4h"}


@dataclass
class Notice:
    """One alert in one webhook notification: when it arrived (perf_counter s), its status."""

    t: float
    alertname: str
    status: str  # "firing" | "resolved"
    starts_at: str
    ends_at: str


class _Receiver(BaseHTTPRequestHandler):
    # The standard library's server: a webhook receiver needs one POST route and no dependency.
    def do_POST(self):  # noqa: N802 - http.server's name
        n = int(self.headers.get("Content-Length") or 0)
        t = time.perf_counter()
        try:
            body = json.loads(self.rfile.read(n) or b"{}")
        except ValueError:
            body = {}
        for a in body.get("alerts") or []:
            self.server.events.append(Notice(t, (a.get("labels") or {}).get("alertname", ""), a.get("status", ""),
                                             a.get("startsAt", ""), a.get("endsAt", "")))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):  # quiet: the drill reports what arrived
        pass


def program(name: str) -> str:
    path = sysdeps.find(name)
    if not path:
        prog = sysdeps.PROGRAMS[name]
        raise LabError(f"{name} not found: `make {prog.target}` installs it (Debian package {prog.package})")
    return path


class Monitoring:
    """Prometheus + Alertmanager + a webhook receiver; a context manager."""

    def __init__(self, folder, prometheus_cfg: dict, rules: dict, ready_timeout_s: float = 60.0):
        self.folder = Path(folder)
        self.prometheus_cfg, self.rules, self.ready_timeout_s = prometheus_cfg, rules, ready_timeout_s
        self.events: list[Notice] = []
        self.procs: dict = {}
        self.server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ start / stop

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self) -> None:
        prom_bin, am_bin = program("prometheus"), program("prometheus-alertmanager")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
        self.server.events = self.events
        threading.Thread(target=self.server.serve_forever, daemon=True, name="alert-webhook").start()
        hook = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        am_port, prom_port = procs.free_ports(2)
        self.am_url, self.prom_url = f"http://127.0.0.1:{am_port}", f"http://127.0.0.1:{prom_port}"
        am_cfg = {"route": ROUTE, "receivers": [{"name": "lab", "webhook_configs": [{"url": hook, "send_resolved": True}]}]}
        (self.folder / "alertmanager.yml").write_text(yaml.safe_dump(am_cfg, sort_keys=False))
        cfg = {**self.prometheus_cfg,
               "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}]}}
        (self.folder / "prometheus.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        (self.folder / "alerts.yml").write_text(yaml.safe_dump(self.rules, sort_keys=False))
        deadline = time.perf_counter() + self.ready_timeout_s
        self._spawn("alertmanager", [am_bin, f"--config.file={self.folder / 'alertmanager.yml'}",
                                     f"--storage.path={self.folder / 'am-data'}", f"--web.listen-address=127.0.0.1:{am_port}",
                                     "--cluster.listen-address="], self.am_url + "/-/ready", deadline)
        # resend-delay: how often Prometheus re-sends a still-firing alert (default 1m).
        self._spawn("prometheus", [prom_bin, f"--config.file={self.folder / 'prometheus.yml'}",
                                   f"--storage.tsdb.path={self.folder / 'prom-data'}",
                                   f"--web.listen-address=127.0.0.1:{prom_port}", "--rules.alert.resend-delay=1s"],
                    self.prom_url + "/-/ready", deadline)

    def _spawn(self, name: str, cmd: list[str], ready_url: str, deadline: float) -> None:
        log = self.folder / f"{name}.log"
        self.procs[name] = procs.spawn(cmd, log, dict(os.environ), mode="wb")
        procs.wait_healthy(name, self.procs[name], ready_url, deadline, [log], who="monitoring")

    def stop(self) -> None:
        procs.stop_all(self.procs, order=("prometheus", "alertmanager"), timeout=10.0)
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    # ------------------------------------------------------------------ queries

    def api(self, path: str, **params) -> dict:
        import httpx

        r = httpx.get(self.prom_url + path, params=params, timeout=10.0)
        r.raise_for_status()
        return r.json()["data"]

    def targets(self) -> dict[str, str]:
        """{job: health} of the scrape targets ("up", "down", "unknown")."""
        return {t["labels"]["job"]: t["health"] for t in self.api("/api/v1/targets")["activeTargets"]}

    def wait_up(self, jobs, timeout_s: float = 60.0) -> None:
        deadline = time.perf_counter() + timeout_s
        while True:
            health = self.targets()
            if all(health.get(j) == "up" for j in jobs):
                return
            if time.perf_counter() > deadline:
                raise LabError(f"monitoring: targets not up in {timeout_s:g} s: {health} "
                               f"(Prometheus log: {self.folder / 'prometheus.log'})")
            time.sleep(0.5)

    def firing(self) -> dict[str, str]:
        """{alertname: state} of the alerts Prometheus holds now (pending or firing)."""
        return {a["labels"]["alertname"]: a["state"] for a in self.api("/api/v1/alerts")["alerts"]}

    def query(self, expr: str) -> float | None:
        """An instant query's first value, or None when the result is empty."""
        res = self.api("/api/v1/query", query=expr)["result"]
        return float(res[0]["value"][1]) if res else None

    def notices(self, alertname: str, status: str, after: float) -> list[Notice]:
        return [e for e in list(self.events) if e.alertname == alertname and e.status == status and e.t >= after]
