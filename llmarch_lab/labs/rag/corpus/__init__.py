"""The RAG lab's 500k-passage corpus with judged query sets (issue 32): sources.py (one reader per
source, pinned inputs), build.py (chunk, de-duplicate, split, write, slice), files.py (reproducible
gzip'd JSON lines, content hashes, the loader), vectors.py (each embedder's passage matrix),
evaluate.py (exact dense, BM25 and fused runs, the relevance table), rerank.py (cross-encoder and
LLM rerankers),
__main__.py (fetch | build | slice | show | embed).

    make rag-corpus                                   # fetch + build (+ Debian packages), ~35 s
    from llmarch_lab.labs.rag.corpus import files
    c = files.load("slice")                           # data/rag_corpus/: a few thousand passages
"""
