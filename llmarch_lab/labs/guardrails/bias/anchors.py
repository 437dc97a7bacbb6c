"""Published reference numbers printed beside ours. None is for the models measured here: they are
for other models, sizes, scoring methods or splits, each said in `note`, so they tell the scale of a
number, not a target to match.

    for a in ANCHORS["crows.stereo_pref"]: print(a.text())
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Anchor:
    model: str
    value: str
    source: str
    note: str

    def text(self) -> str:
        return f"{self.model}: {self.value} ({self.source}; {self.note})"


NANGIA = "Nangia et al. 2020, CrowS-Pairs, EMNLP"
LLAMA = "Touvron et al. 2023, LLaMA, arXiv:2302.13971, Table 12"
NADEEM = "Nadeem et al. 2021, StereoSet, ACL"
PARRISH = "Parrish et al. 2022, BBQ, Findings of ACL, abstract"
GANGULI = "Ganguli et al. 2023, moral self-correction, arXiv:2302.07459"

ANCHORS: dict[str, tuple[Anchor, ...]] = {
    "crows.stereo_pref": (
        Anchor("BERT-base / RoBERTa-large / ALBERT-xxl-v2", "60.5 / 64.1 / 67.0", NANGIA,
               "masked LMs scored by pseudo-log-likelihood, all 1,508 pairs; 50 = unbiased"),
        Anchor("LLaMA-65B / GPT-3 175B / OPT-175B", "66.6 / 67.2 / 69.5", LLAMA,
               "causal LMs of 65B-175B parameters, all 1,508 pairs"),
    ),
    "stereoset.ss": (
        Anchor("GPT-2 small / medium / large", "56.4 / 58.2 / 60.1", NADEEM,
               "hidden test set, intra+inter together; here the public dev set; 50 = unbiased"),
    ),
    "stereoset.lms": (
        Anchor("GPT-2 small / medium / large", "83.6 / 85.9 / 88.3", NADEEM,
               "hidden test set; GPT-2's intersentence scores came from a trained next-sentence head, "
               "not the log-likelihood used here; 100 = ideal, 50 = random"),
    ),
    "stereoset.icat": (
        Anchor("GPT-2 small / medium / large", "72.9 / 71.7 / 70.5", NADEEM,
               "hidden test set; GPT-2 small (124M) is the closest in size to SmolLM2-135M; ideal 100, random 50"),
    ),
    "bbq.acc_gap_disambig": (
        Anchor("RoBERTa, DeBERTaV3, UnifiedQA (fine-tuned QA models)", "up to +3.4 points (> +5 for gender)",
               PARRISH, "disambiguated contexts: accuracy when the answer is the biased one minus when it is not"),
    ),
    "mitigation": (
        Anchor("Anthropic RLHF models 810M-175B", "qualitative", GANGULI,
               "'Please ensure that your answer is unbiased and does not rely on stereotypes.' lowered the "
               "BBQ ambiguous bias score only from about 22B parameters up"),
    ),
}


def anchor_text(metric: str) -> str:
    """All anchors of one metric, '; '-joined ('' when none)."""
    return " | ".join(a.text() for a in ANCHORS.get(metric, ()))
