"""The train/test split, span-level scoring with presidio-evaluator, the verbatim leaks of redaction, threshold choice on train."""

from __future__ import annotations

import contextlib
import io
import json
import random
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from llmarch_lab import LabError
from llmarch_lab.labs.guardrails.pii.analyzer import analyzer
from llmarch_lab.labs.guardrails.pii.config import DEFAULT, ENTITY_MAPPING, PiiConfig
from llmarch_lab.labs.guardrails.pii.detect import detect
from llmarch_lab.labs.guardrails.pii.leak import leak_stats
from llmarch_lab.labs.guardrails.pii.model import load_spacy
from llmarch_lab.labs.guardrails.pii.redact import anonymize

# ------------------------------------------------------------------------------ split, scoring

def split(records: Sequence[dict], seed: int = 0, test_fraction: float = 0.3) -> tuple[list[dict], list[dict]]:
    """(train, test): a seeded shuffle of record indices, the first round(n * test_fraction) test."""
    if not 0 < test_fraction < 1:
        raise LabError(f"split: test_fraction must be in (0, 1), got {test_fraction}")
    idx = list(range(len(records)))
    random.Random(seed).shuffle(idx)
    n_test = round(len(records) * test_fraction)
    test_idx = set(idx[:n_test])
    train = [records[i] for i in range(len(records)) if i not in test_idx]
    test = [records[i] for i in range(len(records)) if i in test_idx]
    return train, test


@dataclass
class PiiEval:
    config: PiiConfig
    per_entity: Any          # DataFrame: entity, precision, recall, f2, support, predicted
    precision: float
    recall: float
    f2: float
    latencies_ms: list[float]
    predictions: Any         # DataFrame: one row per text (gold and predicted spans as JSON)
    # presidio-evaluator ModelErrors (per type). 0.2.5's SpanEvaluator fills them with annotation
    # and prediction swapped: an FN reads annotation "O", prediction <the missed type>.
    errors: list = field(default_factory=list, repr=False)
    # Verbatim leaks of the <TYPE> redaction (leak.leak_stats): gold values still in the redacted
    # text, and detected values still there (0 unless redaction is broken).
    gold_spans: int = 0
    gold_leaks: int = 0
    detected_leaks: int = 0

    @property
    def gold_leak_rate(self) -> float:
        return self.gold_leaks / self.gold_spans if self.gold_spans else 0.0

    def metrics(self) -> dict[str, float]:
        """Suggested MLflow names: quality.pii_f2/_precision/_recall, latency.pii_ms_pNN,
        errors.pii_gold_leak_rate/_gold_leaks/_detected_leaks, count.pii_gold_spans."""
        from llmarch_lab.common import stats

        out = {"quality.pii_f2": self.f2, "quality.pii_precision": self.precision, "quality.pii_recall": self.recall,
               "errors.pii_gold_leak_rate": self.gold_leak_rate, "errors.pii_gold_leaks": float(self.gold_leaks),
               "errors.pii_detected_leaks": float(self.detected_leaks), "count.pii_gold_spans": float(self.gold_spans)}
        out.update(stats.percentiles(self.latencies_ms, "latency.pii_ms"))
        return out


def _input_samples(records: Sequence[dict], nlp) -> list:
    """presidio-evaluator InputSamples, tokenized by the verified model's tokenizer.

    InputSample.from_json would tokenize with spacy.load("en_core_web_sm"), a name this wheel
    does not install, so tokens and IO tags are built here from the same pieces it uses."""
    from presidio_evaluator import InputSample, Span, span_to_tag

    out = []
    for i, r in enumerate(records):
        spans = [Span(entity_type=ENTITY_MAPPING.get(s["entity_type"], s["entity_type"]),
                      entity_value=s["entity_value"], start_position=s["start_position"],
                      end_position=s["end_position"]) for s in r["spans"]]
        doc = nlp.make_doc(r["full_text"])
        tags = span_to_tag(scheme="IO", text=r["full_text"], starts=[s.start_position for s in spans],
                           ends=[s.end_position for s in spans], tags=[s.entity_type for s in spans], tokens=doc)
        out.append(InputSample(full_text=r["full_text"], spans=spans, tokens=doc, tags=tags, sample_id=i,
                               template_id=r.get("template_id"), start_indices=[t.idx for t in doc]))
    return out


def _model_class():
    from presidio_evaluator import span_to_tag
    from presidio_evaluator.models import BaseModel

    class DetectModel(BaseModel):
        """detect() as a presidio-evaluator model: IO tags per token, plus each text's latency."""

        def __init__(self, config: PiiConfig, progress: bool):
            super().__init__(labeling_scheme="IO")
            self.config, self.progress = config, progress
            self.latencies_ms: list[float] = []
            self.spans: list[list[dict]] = []

        def predict(self, sample, **kwargs) -> list[str]:
            t0 = time.perf_counter()
            spans = detect(sample.full_text, self.config)
            self.latencies_ms.append((time.perf_counter() - t0) * 1000)
            self.spans.append(spans)
            return span_to_tag(scheme="IO", text=sample.full_text, starts=[s["start"] for s in spans],
                               ends=[s["end"] for s in spans], tags=[s["entity_type"] for s in spans],
                               scores=[s["score"] for s in spans], tokens=sample.tokens)

        def batch_predict(self, dataset, **kwargs) -> list[list[str]]:
            from tqdm.auto import tqdm

            name = f"pii {self.config.engine}/{self.config.name}@{self.config.threshold:g}"
            return [self.predict(s) for s in tqdm(dataset, desc=name, unit="text", disable=not self.progress)]

    return DetectModel


def evaluate(records: Sequence[dict], config: PiiConfig = DEFAULT, progress: bool = True,
             entities: Iterable[str] | None = None) -> PiiEval:
    """Span-level scores of detect(config) on records: presidio-evaluator's SpanEvaluator with its
    defaults (character IoU >= 0.9 after dropping its skip words, adjacent spans of one type
    merged), F2 as its calculate_score(beta=2) computes it.

    `entities` (Presidio types) restricts scoring to those types; None scores everything, so a
    prediction of a type the data never has (UK_NHS, CRYPTO...) counts as a false positive.

    Each text is also redacted (operator "replace", from the same spans): a gold value found verbatim
    in the redacted text (any whitespace between its words, not inside a longer word) is a leak."""
    import pandas as pd
    from presidio_evaluator.evaluation import SpanEvaluator, get_skip_words

    if not records:
        raise LabError("evaluate: no records")
    samples = _input_samples(records, load_spacy(config.model_package))
    model = _model_class()(config, progress)
    analyzer(config)  # build (and load spaCy) before the first timed text
    evaluator = SpanEvaluator(model=model, skip_words=get_skip_words())
    with contextlib.redirect_stdout(io.StringIO()):  # evaluate_all prints progress lines of its own
        results = evaluator.evaluate_all(samples)
    score = evaluator.calculate_score(results, entities=list(entities) if entities is not None else None, beta=2.0)
    rows = [{"entity": ent, "precision": m.precision, "recall": m.recall, "f2": m.f_beta,
             "support": m.num_annotated, "predicted": m.num_predicted} for ent, m in score.per_type.items()]
    per_entity = pd.DataFrame(rows, columns=["entity", "precision", "recall", "f2", "support", "predicted"])
    per_entity = per_entity.sort_values(["support", "entity"], ascending=[False, True]).reset_index(drop=True)
    texts = [s.full_text for s in samples]
    redacted = [anonymize(t, config, spans=p).text for t, p in zip(texts, model.spans)]
    leaked = leak_stats(texts, [[sp.entity_value for sp in s.spans] for s in samples], model.spans, redacted)
    preds = pd.DataFrame([{
        "idx": i, "template_id": s.template_id, "text": s.full_text,
        "gold": json.dumps([{"entity_type": sp.entity_type, "start": sp.start_position, "end": sp.end_position}
                            for sp in s.spans]),
        "predicted": json.dumps(p), "n_gold": len(s.spans), "n_predicted": len(p), "latency_ms": lat,
        "redacted": red, "gold_leaked": json.dumps(leaks),
    } for i, (s, p, lat, red, leaks) in enumerate(zip(samples, model.spans, model.latencies_ms, redacted,
                                                       leaked["per_text"]))])
    return PiiEval(config=config, per_entity=per_entity, precision=float(score.pii_precision),
                   recall=float(score.pii_recall), f2=float(score.pii_f), latencies_ms=list(model.latencies_ms),
                   predictions=preds, errors=list(score.model_errors or []), gold_spans=leaked["gold_spans"],
                   gold_leaks=leaked["gold_leaks"], detected_leaks=leaked["detected_leaks"])


def choose_threshold(train: Sequence[dict], config: PiiConfig, grid: Sequence[float] = (0.3, 0.4, 0.5, 0.6),
                     progress: bool = True) -> tuple[float, dict[float, float]]:
    """The threshold of `grid` with the best train F2 (ties: the higher threshold), and all F2s."""
    f2 = {t: evaluate(train, config.with_threshold(t), progress=progress).f2 for t in grid}
    best = max(grid, key=lambda t: (f2[t], t))
    return best, f2
