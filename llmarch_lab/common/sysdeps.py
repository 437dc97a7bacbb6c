"""The programs outside Python that the lab looks up or starts, and the make target that provides each.

    python3 -m llmarch_lab.common.sysdeps ensure sys-graphviz dot      (what the Makefile's sys-* targets run)
    python3 -m llmarch_lab.common.sysdeps list                          (the table below)

A fresh machine has none of the Debian packages: each `sys-*` target installs its package with
apt-get when the program is missing and we are root; otherwise it prints one line naming the
package and the target, and exits 1. tests/test_delivery.py reads PROGRAMS and checks that every
program the package looks up (shutil.which) or starts (a subprocess's argv[0], an engine binary
under .engines/) is listed here, and that the listed make target exists and provides it.

This module uses the standard library only: the Makefile runs it with the system Python, before
the lab's virtual environment exists.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Program:
    """An external program: the Debian package that has it and the make target that provides it.
    package "" means the target builds it (an engine); target "" means every Debian system has it."""

    package: str
    target: str
    why: str
    file: str = ""  # a data file, not a program: found when this file exists


PROGRAMS: dict[str, Program] = {
    "dot": Program("graphviz", "sys-graphviz", "the system report's architecture diagram"),
    "promtool": Program("prometheus", "sys-prometheus", "checks the system bundle's scrape config and alert rules"),
    "prometheus": Program("prometheus", "sys-prometheus", "the system drill's monitoring server (scrapes, evaluates the alert rules)"),
    "prometheus-alertmanager": Program("prometheus-alertmanager", "sys-alertmanager", "the system drill's alert routing to a webhook"),
    "chromium": Program("chromium", "sys-chromium", "screenshots of the system report (--screenshot)"),
    "initdb": Program("postgresql", "sys-postgresql", "the shared tracking server's PostgreSQL (trackserver)"),
    "llama-server": Program("", "engine-llama-server", "llama.cpp's server, built from source"),
    "git": Program("git", "", "the git_sha / git_dirty tags (optional: without git they are blank)"),
    "apt-get": Program("apt", "", "what the sys-* targets install with, as root"),
    "runuser": Program("util-linux", "sys-postgresql", "runs PostgreSQL as `postgres` when the lab runs as root (Essential)"),
    # data files: the RAG corpus's distractor texts (llmarch_lab/labs/rag/corpus/sources.py)
    "wordnet-data": Program("wordnet-base", "sys-rag-texts", "WordNet 3.0 glosses (RAG corpus)",
                            "/usr/share/wordnet/data.noun"),
    "gcide-dict": Program("dict-gcide", "sys-rag-texts", "GCIDE dictionary entries (RAG corpus)",
                          "/usr/share/dictd/gcide.dict.dz"),
    "foldoc-dict": Program("dict-foldoc", "sys-rag-texts", "FOLDOC entries (RAG corpus)",
                           "/usr/share/dictd/foldoc.dict.dz"),
}


def find(program: str) -> str | None:
    """Where the program is, or None. initdb also lives in /usr/lib/postgresql/<v>/bin (Debian's layout)."""
    spec = PROGRAMS.get(program)
    if spec is not None and spec.file:
        return spec.file if os.path.isfile(spec.file) else None
    found = shutil.which(program)
    if program == "llama-server" and not found:  # built into the checkout's .engines/ (make engine-llama-server)
        built = os.path.join(os.path.dirname(__file__), "..", "..", ".engines", "llama-server", "bin", "llama-server")
        return os.path.realpath(built) if os.path.isfile(built) else None
    if found or program != "initdb":
        return found
    hits = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return hits[-1] if hits else None


def ensure(target: str, programs: list[str]) -> int:
    """Install the Debian packages of the missing programs (as root), or say in one line what to do."""
    unknown = [p for p in programs if p not in PROGRAMS]
    if unknown:
        print(f"make {target}: sysdeps does not know {', '.join(unknown)} (add it to llmarch_lab/common/sysdeps.py)")
        return 2
    missing = [p for p in programs if find(p) is None]
    if not missing:
        return 0
    pkgs = sorted({PROGRAMS[p].package for p in missing})
    names = ", ".join(f"`{p}`" for p in missing)
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        print(f"make {target}: {names} not found: install the Debian package(s) {' '.join(pkgs)} "
              f"(sudo apt-get install {' '.join(pkgs)}), then run make again")
        return 1
    print(f"make {target}: {names} not found: apt-get install {' '.join(pkgs)} ...", flush=True)
    t0 = time.monotonic()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Wait up to 5 min for another apt (a boot-time upgrade on a fresh machine, a second make in
    # parallel) to release the dpkg lock instead of failing at once (apt >= 1.9.11).
    lock = ["-o", "DPkg::Lock::Timeout=300"]
    for cmd in (["apt-get", *lock, "update", "-qq"], ["apt-get", *lock, "install", "-y", "-qq", *pkgs]):
        r = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
        if r.returncode != 0:
            tail = " | ".join(r.stdout.strip().splitlines()[-3:])
            print(f"make {target}: `{' '.join(cmd)}` exited {r.returncode}: {tail}")
            return 1
    still = [p for p in missing if find(p) is None]
    if still:
        print(f"make {target}: installed {' '.join(pkgs)} but {', '.join(still)} is still not found")
        return 1
    print(f"make {target}: installed {' '.join(pkgs)} in {time.monotonic() - t0:.0f} s")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "ensure":
        return ensure(argv[1], argv[2:])
    if argv == ["list"]:
        for name, p in PROGRAMS.items():
            print(f"{name:14} {p.package or '(built)':12} {('make ' + p.target) if p.target else '(base system)':26} "
                  f"{'found' if find(name) else 'missing':8} {p.why}")
        return 0
    print("usage: python3 -m llmarch_lab.common.sysdeps ensure TARGET PROGRAM... | list")
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
