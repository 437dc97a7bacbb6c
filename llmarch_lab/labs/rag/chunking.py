"""Documents -> chunks. Every chunk keeps the id of the document it came from, so retrieval is
scored per document (chunk hits are aggregated to their document, best chunk wins).

    from llmarch_lab.labs.rag import chunking
    chunks = chunking.chunk_documents(docs, "recursive", chunk_size=128, chunk_overlap=32, tokenizer=tok)

Strategies (sizes are counted in the embedder's own tokens, so a chunk fits its context window):
    none       one chunk per document (MiniLM truncates past 256 word pieces: that is the point
               of comparing against the chunked strategies)
    fixed      windows of at most `chunk_size` tokens overlapping by about `chunk_overlap`, cut at
               word boundaries so the text keeps its casing (langchain CharacterTextSplitter on " ")
    recursive  splits at passage breaks first, then sentences, then words, merging pieces up to
               `chunk_size` tokens (langchain RecursiveCharacterTextSplitter)
The splitting itself is langchain-text-splitters' code; nothing here re-implements it.
"""

from __future__ import annotations

from llmarch_lab import LabError

STRATEGIES = ("none", "fixed", "recursive")
# Passage break, line break, sentence end, clause, word, character: the recursive splitter tries
# them in order, so a chunk ends at the coarsest boundary that keeps it under the size limit.
RECURSIVE_SEPARATORS = ["\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ", ""]


def splitter(strategy: str, chunk_size: int, chunk_overlap: int, tokenizer):
    """The langchain splitter for a strategy (None for `none`), measuring length in tokens."""
    if strategy not in STRATEGIES:
        raise LabError(f"chunking {strategy!r}: valid are {', '.join(STRATEGIES)}")
    if strategy == "none":
        return None
    if chunk_overlap >= chunk_size:
        raise LabError(f"chunk_overlap ({chunk_overlap}) must be smaller than chunk_size ({chunk_size})")
    if tokenizer is None:
        raise LabError(f"chunking {strategy!r} needs a tokenizer to count tokens")
    from langchain_text_splitters import CharacterTextSplitter, RecursiveCharacterTextSplitter

    def n_tokens(text: str) -> int:  # verbose=False: long texts are only measured, never fed to a model
        return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    if strategy == "fixed":
        return CharacterTextSplitter(separator=" ", chunk_size=chunk_size, chunk_overlap=chunk_overlap,
                                     length_function=n_tokens)
    return RecursiveCharacterTextSplitter(separators=RECURSIVE_SEPARATORS, chunk_size=chunk_size,
                                          chunk_overlap=chunk_overlap, length_function=n_tokens)


def chunk_documents(docs, strategy: str = "none", chunk_size: int = 128, chunk_overlap: int = 32,
                    tokenizer=None):
    """docs: DataFrame with `doc_id` and `text` -> DataFrame(chunk_id, doc_id, chunk_index, text).

    Empty documents yield no chunk; an empty result is a LabError (nothing to retrieve from).
    """
    import pandas as pd

    if docs is None or len(docs) == 0:
        raise LabError("corpus is empty: no documents to chunk")
    split = splitter(strategy, chunk_size, chunk_overlap, tokenizer)
    rows = []
    for doc_id, text in zip(docs["doc_id"].astype(str), docs["text"].astype(str)):
        pieces = [text] if split is None else split.split_text(text)
        pieces = [p.strip() for p in pieces if p and p.strip()]
        for i, piece in enumerate(pieces):
            rows.append({"chunk_id": f"{doc_id}#{i}", "doc_id": doc_id, "chunk_index": i, "text": piece})
    if not rows:
        raise LabError(f"corpus is empty: all {len(docs)} documents have empty text")
    return pd.DataFrame(rows)
