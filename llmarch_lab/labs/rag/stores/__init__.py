"""Vector stores side by side on the corpus's vectors (issue 32, part 2): base.py (the adapter
interface, filters, the store registry), lance.py (LanceDB), qdrant.py (Qdrant's engine
in-process), pgvector.py (PostgreSQL + pgvector, a server started for the run), bench.py (ingest, index build, disk,
memory, the recall/latency ladder against exact search, filtered queries).

    from llmarch_lab.labs.rag.stores import bench
    rows = bench.run_store("lancedb", mat, payload, queries_dev, queries_test, workdir)
"""
