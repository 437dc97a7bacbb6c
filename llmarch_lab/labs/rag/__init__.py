"""RAG evaluation lab: chunking x embeddings x dense/BM25/hybrid retrieval x rerank on LanceDB.

    llmarch-lab run experiments/rag.yaml          # the whole study (both corpora, all modes)
    # or interactively: notebooks/30_rag.ipynb

Modules, one role each (heavy libraries are imported inside the functions that need them):
    chunking.py    documents -> chunks that keep their source doc id (langchain-text-splitters)
    embeddings.py  sentence-transformers embeddings cached on disk by (model, chunk text hash)
    store.py       a real LanceDB table: vectors, full-text index, vector index choice
    retrieval.py   dense | bm25 (LanceDB FTS) | hybrid (RRF / linear) | cross-encoder rerank,
                   plus the independent BM25 peer from bm25s
    generate.py    answers from the top-k contexts with any causal LM spec
    ragas_eval.py  ragas 0.4 scores: non-LLM by default, LLM-judged with an OpenAI-compatible judge
    lab.py         RagParams and run(): the notebook's entry point
    report.py      the suite table, with each run's nDCG@10 gap to the best and its 95% interval

Shared pieces live outside the lab: corpora (llmarch_lab.assets.corpora), IR metrics (common.ir),
percentiles (common.stats), greedy generation and thread pinning (llm.local).
"""
