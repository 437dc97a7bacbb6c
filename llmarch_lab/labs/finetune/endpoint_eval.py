"""The fine-tuning lab's PubMedQA evaluation of a served model (vLLM, llama.cpp's server, any
OpenAI-compatible endpoint that returns completion log-probs): the same splits, prompts, label
scoring and dev-fitted calibration as a local run, so a tuned model exported and served can be
scored where it runs.

    python -m llmarch_lab.labs.finetune score-endpoint base_url=http://127.0.0.1:8000/v1 \
        served_model=smollm2 model=smollm2-135m-instruct test_items=100 dev_items=50

`model` names the tokenizer (chat template) of the served model; `served_model` the name the
endpoint knows it by. The run is logged as an interactive MLflow run (lab finetune).
"""

from __future__ import annotations

from llmarch_lab.assets import datasets, models
from llmarch_lab.labs.finetune import data as fd
from llmarch_lab.labs.finetune import scoring
from llmarch_lab.results import Result


def evaluate(endpoint, p, top_logprobs: int = 20) -> Result:
    """Score the endpoint on p.test_items test and p.dev_items dev questions (p: FinetuneParams
    for the data settings); raw and dev-calibrated accuracy / macro-F1 as quality.endpoint_*."""
    import pandas as pd

    endpoint.preflight()
    tok = models.load_tokenizer(p.model)
    splits = fd.split(datasets.pubmedqa(), p.dev_fraction, p.seed)
    test = fd.sample(splits.test, p.test_items, p.seed)
    dev = fd.sample(splits.dev, p.dev_items, p.seed)
    rows = {n: fd.to_rows(df, tok, p.context_tokens, p.long_answer, p.context_side) for n, df in (("dev", dev), ("test", test))}
    res = Result(tags={"model": p.model, "endpoint.base_url": endpoint.base_url, "endpoint.model": endpoint.model,
                       "n_test": str(len(rows["test"])), "n_dev": str(len(rows["dev"]))})
    scored = {n: scoring.score_endpoint(endpoint, tok, r, top_logprobs, f"endpoint {n}") for n, r in rows.items()}
    bias = scoring.fit_bias(scored["dev"])
    for kind, df in (("raw", scored["test"]), ("calibrated", scoring.apply_bias(scored["test"], bias))):
        for k, v in scoring.classification_metrics(df.gold, df.pred).items():
            res.add(f"quality.endpoint_{kind}_{k}", v)
    res.tables["predictions"] = scored["test"]
    res.tables["dev_predictions"] = scored["dev"]
    res.tables["calibration"] = pd.DataFrame([{f"bias_{w}": b for w, b in zip(fd.LABELS, bias)}])
    res.tags["bounded_labels"] = str(sum(int(b != "") for df in scored.values() for b in df.bounded))
    return res
