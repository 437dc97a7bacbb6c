"""Presidio analyzers built offline from a PiiConfig (cached per configuration)."""

from __future__ import annotations

import functools
from pathlib import Path

from llmarch_lab import LabError
from llmarch_lab.labs.guardrails.pii.config import LANGUAGE, PiiConfig
from llmarch_lab.labs.guardrails.pii.model import load_nlp
from llmarch_lab.labs.guardrails.pii.recognizers import extra_recognizers

# -------------------------------------------------------------------------------- the analyzer

def _offline_tldextract() -> None:
    """Presidio's EmailRecognizer validates domains with tldextract, whose default extractor fetches
    the Public Suffix List from the web on first use (and logs a traceback per failed URL when
    offline). This lab never reaches the network: point it at the snapshot bundled in its wheel."""
    import tldextract.tldextract as tld

    tld.TLD_EXTRACTOR.suffix_list_urls = ()


def _presidio_conf(name: str) -> dict:
    import presidio_analyzer
    import yaml

    return yaml.safe_load((Path(presidio_analyzer.__file__).parent / "conf" / name).read_text())


def _nlp_engine(cfg: PiiConfig):
    from presidio_analyzer.nlp_engine import NerModelConfiguration, NlpEngineProvider, SpacyNlpEngine

    if cfg.engine == "no_op":
        # Presidio's shipped no-op setup: no model, no NER, empty NlpArtifacts.
        return NlpEngineProvider(nlp_configuration=_presidio_conf("no_op.yaml")).create_engine()
    if cfg.engine != "spacy":
        raise LabError(f"PiiConfig.engine {cfg.engine!r}: valid are 'no_op', 'spacy'")
    # Presidio's own spaCy NER settings (entity mapping, ignored labels), with our model.
    ner = dict(_presidio_conf("spacy.yaml")["ner_model_configuration"])
    ner["low_score_entity_names"] = [x for x in ner.get("low_score_entity_names") or [] if x]  # yaml: [null]
    if cfg.ner_labels_to_ignore is not None:
        ner["labels_to_ignore"] = list(cfg.ner_labels_to_ignore)
    info, nlp = load_nlp(cfg.model_package)
    engine = SpacyNlpEngine(models=[{"lang_code": LANGUAGE, "model_name": str(info.path)}],
                            ner_model_configuration=NerModelConfiguration.from_dict(ner))
    # Handed over loaded: AnalyzerEngine only calls load() (and with it spacy.cli.download for a
    # model it cannot find) when is_loaded() is False.
    engine.nlp = {LANGUAGE: nlp}
    return engine


def _analyzer_key(cfg: PiiConfig) -> PiiConfig:
    """The configuration less what applies per call (name, threshold, post-processing)."""
    return PiiConfig(name="", engine=cfg.engine, disabled=cfg.disabled, extras=cfg.extras,
                     ner_labels_to_ignore=cfg.ner_labels_to_ignore, context_window=cfg.context_window,
                     model_package=cfg.model_package)


@functools.lru_cache(maxsize=16)
def analyzer_for(key: PiiConfig):
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.context_aware_enhancers import LemmaContextAwareEnhancer

    _offline_tldextract()
    engine = _nlp_engine(key)
    registry = RecognizerRegistry(supported_languages=[LANGUAGE])
    registry.load_predefined_recognizers(languages=[LANGUAGE], nlp_engine=engine)
    names = {r.name for r in registry.recognizers}
    unknown = [n for n in key.disabled if n not in names]
    if unknown:
        raise LabError(f"PiiConfig.disabled: no recognizer named {unknown} (loaded: {', '.join(sorted(names))})")
    for n in key.disabled:
        registry.remove_recognizer(n)
    extras = extra_recognizers()
    for n in key.extras:
        if n not in extras:
            raise LabError(f"PiiConfig.extras: unknown recognizer {n!r} (valid: {', '.join(sorted(extras))})")
        registry.add_recognizer(extras[n])
    prefix, suffix = key.context_window
    # no_op: no tokens, so no text context; None lets AnalyzerEngine build its default enhancer
    # (which then only uses context passed to analyze()) without warning about it.
    enhancer = None if key.engine == "no_op" else LemmaContextAwareEnhancer(context_prefix_count=prefix,
                                                                             context_suffix_count=suffix)
    return AnalyzerEngine(registry=registry, nlp_engine=engine, supported_languages=[LANGUAGE],
                          context_aware_enhancer=enhancer)


def analyzer(cfg: PiiConfig):
    """The Presidio AnalyzerEngine for a configuration, built once per process."""
    return analyzer_for(_analyzer_key(cfg))
