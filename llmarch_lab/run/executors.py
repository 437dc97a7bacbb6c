"""Where a suite's runs execute: local threads, a Ray cluster, or Slurm through submitit.

    llmarch-lab run SUITE --executor local|ray|slurm [--address RAY_ADDRESS] [--workers N]

Every executor runs the same worker, `runner.execute_identity(task)`: claim, MLflow run, papermill,
artifacts, lease. They differ only in where that function runs and how its death is seen:

- `local`: N threads of this process (today's runner). A run's notebook is a child bound to it.
- `ray`: one Ray task per run (`max_retries=0`: a retry is a new claim by a later invocation,
  never a silent second execution), with `num_cpus` / `num_gpus` / `memory` from the suite's
  `executor:` block, else from the run's parameters (`threads`, `device`). `--address` joins a
  running cluster (`ray start --head` on one machine, `ray start --address` on the others);
  without it a local cluster of N CPUs is started and stopped with the invocation.
- `slurm`: one submitit job per run: sbatch on a Slurm cluster; submitit's local executor
  (subprocesses of this machine) where there is no `sbatch` or with `slurm_cluster: local`.

`--workers N` caps the runs in flight on every executor. Workers on other machines need the
same repo and environment there (a shared filesystem or the same checkout), and a tracking URI
they can reach (`make tracking-server`, not a local sqlite file).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable

from llmarch_lab import LabError, paths
from llmarch_lab.common import env
from llmarch_lab.run import stopping

KINDS = ("local", "ray", "slurm")


class WorkerLost(Exception):
    """The process executing a run died under the executor (a Ray node, a Slurm job)."""


def resources_for(spec, options: dict[str, Any]) -> dict[str, float]:
    """CPUs, GPUs and memory one run asks for: the suite's executor block, else its parameters."""
    params = spec.params
    threads = getattr(params, "threads", 0) or 0
    device = str(getattr(params, "device", "cpu"))
    return {"num_cpus": float(options.get("num_cpus") or (threads if threads > 0 else 1)),
            "num_gpus": float(options.get("num_gpus") if options.get("num_gpus") is not None
                              else (1 if device.startswith("cuda") else 0)),
            "memory_gb": float(options.get("memory_gb") or 0)}


class LocalExecutor:
    name = "local"

    def __init__(self, workers: int = 1, **_):
        self.workers = max(1, workers)

    def run(self, fn: Callable, tasks: list, done: Callable[[int, Any], None]) -> None:
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            futures = {pool.submit(fn, t): k for k, t in enumerate(tasks)}
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for f in finished:
                    try:
                        done(futures[f], f.result())
                    except Exception as e:  # a runner-side failure for one run never stops the others
                        done(futures[f], e)

    def close(self) -> None:
        pass


class ClusterExecutor:
    """What the Ray and Slurm executors share: their optional package, width, options, and each
    run's resources (from its spec and the suite's executor block)."""

    name = package = ""

    def setup(self, workers: int, options: dict | None, suite):
        import importlib

        try:
            mod = importlib.import_module(self.package)
        except ImportError:
            raise LabError(f"executor {self.name}: the `{self.package}` package is not installed "
                           "(pip install 'llmarch-lab[scale]')") from None
        self.workers = max(1, workers)
        self.options = options or {}
        self.specs = {s.name: s for s in suite.runs} if suite is not None else {}
        return mod

    def resources(self, task) -> dict:
        return resources_for(self.specs[task.run_name], self.options) if task.run_name in self.specs else {}

    def run(self, fn: Callable, tasks: list, done: Callable[[int, Any], None]) -> None:
        """At most `workers` runs in flight: submit one as another finishes, each result to done()."""
        queue = list(enumerate(tasks))
        inflight: dict[Any, int] = {}
        while queue or inflight:
            if stopping.requested():  # Ctrl-C: submit nothing more, cancel what runs (its runs: KILLED by the runner)
                for handle, k in inflight.items():
                    self.cancel(handle)
                    done(k, {"status": "KILLED", "run_id": "", "wall_s": 0.0, "error": stopping.INTERRUPTED_WHY})
                return
            while queue and len(inflight) < self.workers:
                k, t = queue.pop(0)
                inflight[self.submit(fn, t, self.resources(t))] = k
            for handle in self.finished(list(inflight)):
                k = inflight.pop(handle)
                done(k, self.result(handle))

    def cancel(self, handle) -> None:
        """Stop one submitted run now (its worker process dies, and with it the notebook child)."""


class RayExecutor(ClusterExecutor):
    name = package = "ray"

    def __init__(self, workers: int = 1, address: str | None = None, options: dict | None = None, suite=None):
        self.ray = ray = self.setup(workers, options, suite)
        address = address or self.options.get("address") or os.environ.get("RAY_ADDRESS") or None
        self.owns = not ray.is_initialized()
        if self.owns:
            kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "logging_level": logging.WARNING, "configure_logging": True}
            if address is None:  # a local cluster for this invocation, as wide as --workers
                kw.update(num_cpus=self.workers)
            try:
                ray.init(address=address, **kw)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise LabError(f"executor ray: cannot join the Ray cluster at {address or '(local)'}: "
                               f"{str(e).splitlines()[0][:200]}") from None
        self.address = address or "(local cluster)"

    def submit(self, fn: Callable, task, res: dict):
        opts: dict[str, Any] = {"max_retries": 0, "num_cpus": res.get("num_cpus", 1), "num_gpus": res.get("num_gpus", 0)}
        if res.get("memory_gb"):
            opts["memory"] = int(res["memory_gb"] * 2**30)
        return self.ray.remote(fn).options(**opts).remote(task)

    def finished(self, handles: list) -> list:
        return self.ray.wait(handles, num_returns=1, timeout=5.0)[0]

    def result(self, ref):
        """The task's result; a dead worker or node as WorkerLost; a raising task as its exception."""
        ray = self.ray
        try:
            return ray.get(ref)
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                ray.exceptions.LocalRayletDiedError, ray.exceptions.ObjectLostError,
                ray.exceptions.TaskCancelledError) as e:
            return WorkerLost(f"ray: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
        except ray.exceptions.RayTaskError as e:
            return e.as_instanceof_cause() if hasattr(e, "as_instanceof_cause") else e
        except ray.exceptions.RayError as e:
            return WorkerLost(f"ray: {type(e).__name__}: {str(e).splitlines()[0][:200]}")

    def cancel(self, ref) -> None:
        with contextlib.suppress(Exception):  # already finished or gone: nothing to stop
            self.ray.cancel(ref, force=True)

    def close(self) -> None:
        if self.owns and self.ray.is_initialized():
            self.ray.shutdown()


class SlurmExecutor(ClusterExecutor):
    name, package = "slurm", "submitit"

    def __init__(self, workers: int = 1, address: str | None = None, options: dict | None = None, suite=None):
        self.submitit = submitit = self.setup(workers, options, suite)
        name = suite.name if suite is not None else "suite"
        self.folder = Path(self.options.get("folder") or paths.home() / ".submitit" / name)
        cluster = self.options.get("slurm_cluster") or env.get("LLMARCH_SLURM_CLUSTER") or None
        self.ex = submitit.AutoExecutor(folder=self.folder / "%j", cluster=cluster)
        self.cluster = self.ex.cluster

    def _params(self, res: dict[str, float]) -> dict[str, Any]:
        p: dict[str, Any] = {"timeout_min": int(self.options.get("slurm_timeout_min", 240)),
                             "name": "llmarch-run"}
        if self.cluster == "slurm":
            p.update(cpus_per_task=max(1, int(res.get("num_cpus", 1))), slurm_array_parallelism=self.workers)
            if res.get("num_gpus"):
                p["gpus_per_node"] = int(res["num_gpus"])
            if res.get("memory_gb"):
                p["mem_gb"] = res["memory_gb"]
            if self.options.get("slurm_partition"):
                p["slurm_partition"] = self.options["slurm_partition"]
            if self.options.get("slurm_additional"):
                p["slurm_additional_parameters"] = dict(self.options["slurm_additional"])
        return p

    def submit(self, fn: Callable, task, res: dict):
        self.ex.update_parameters(**self._params(res))
        if self.cluster != "local":
            return self.ex.submit(fn, task)
        # A local job's controller inherits an ignored SIGINT, so a terminal's Ctrl-C (sent to the
        # whole foreground group) reaches only the runner, which stops the jobs itself (cancel).
        with stopping.sigint_ignored():
            return self.ex.submit(fn, task)

    def finished(self, handles: list) -> list:
        ready = [j for j in handles if j.done()]
        if len(ready) < len(handles):
            time.sleep(0.5)
        return ready

    def cancel(self, job) -> None:
        with contextlib.suppress(Exception):  # already finished or gone: nothing to stop
            if self.cluster == "local":  # submitit's cancel sends SIGINT, ignored here (submit)
                job._process.send_signal(signal.SIGTERM)  # noqa: SLF001 - its controller forwards it to the task
            else:
                job.cancel(check=False)  # scancel

    def result(self, job):
        """The job's result; a job that died or failed as WorkerLost; a raising function as its exception."""
        try:
            return job.result()
        except self.submitit.core.utils.UncompletedJobError as e:
            return WorkerLost(f"submitit job {job.job_id}: {str(e).splitlines()[0][:200]}")
        except self.submitit.core.utils.FailedJobError as e:
            return WorkerLost(f"submitit job {job.job_id} failed: {str(e).strip().splitlines()[-1][:200]}")
        except Exception as e:  # noqa: BLE001 - the worker function raised: that run failed
            return e

    def close(self) -> None:
        pass


def check_ray_address(address: str | None, timeout_s: float = 3.0) -> None:
    """What --dry-run checks of a Ray address without joining: its form (host:port, ray://host:port,
    auto, local) and that something answers on that port within timeout_s. A LabError otherwise."""
    import socket

    if address in (None, "", "auto", "local"):
        return
    hostport = address[len("ray://"):] if address.startswith("ray://") else address
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535 or not host.isprintable():
        raise LabError(f"--address {address!r}: expected host:port (e.g. 10.0.0.5:6379) or ray://host:port")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise LabError(f"--address {address}: nothing answers there within {timeout_s:g} s "
                       f"({e.strerror or e}); is the Ray head running?") from None


def make(kind: str, workers: int = 1, address: str | None = None, options: dict | None = None, suite=None):
    if kind not in KINDS:
        raise LabError(f"--executor {kind}: unknown executor (valid: {', '.join(KINDS)})")
    if address and kind != "ray":
        raise LabError(f"--address {address}: only the ray executor joins a cluster (got --executor {kind})")
    cls = {"local": LocalExecutor, "ray": RayExecutor, "slurm": SlurmExecutor}[kind]
    return cls(workers=workers, address=address, options=options or {}, suite=suite)
