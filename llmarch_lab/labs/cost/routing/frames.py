"""Outcome frames: the columns a router and its evaluation need, checked; train/test split."""

from __future__ import annotations

import numpy as np
import pandas as pd

from llmarch_lab import LabError


# -------------------------------------------------------------------------------------------- frames
def need_columns(df, cols, who: str):
    if not isinstance(df, pd.DataFrame):
        raise LabError(f"{who}: expected a pandas DataFrame, got {type(df).__name__}")
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise LabError(f"{who}: the outcome frame has no column {', '.join(repr(c) for c in missing)} "
                       f"(has {', '.join(map(str, df.columns))})")
    if len(df) == 0:
        raise LabError(f"{who}: the outcome frame is empty")


def prompt_texts(df, who: str) -> list[str]:
    need_columns(df, ["prompt"], who)
    return df["prompt"].astype(str).tolist()


def outcome_arrays(df, who: str):
    need_columns(df, ["strong", "weak"], who)
    strong = df["strong"].to_numpy(dtype=float)
    weak = df["weak"].to_numpy(dtype=float)
    for name, v in (("strong", strong), ("weak", weak)):
        if np.isnan(v).any() or (v < 0).any() or (v > 1).any():
            raise LabError(f"{who}: column {name!r} must hold qualities in [0, 1] with no missing values")
    return strong, weak


def weak_ok(df) -> np.ndarray:
    """The label the classifiers learn: the small model's answer is at least as good as the large one's
    (weak >= strong). For correctness outcomes that is "both right, both wrong, or only weak right";
    for graded MT-Bench scores it is "the judge scored weak no lower"."""
    strong, weak = outcome_arrays(df, "weak_ok")
    return (weak >= strong).astype(int)


def split(df, test_fraction: float = 0.5, seed: int = 0, stratify_col: str | None = None):
    """(train, test), a seeded random split (sklearn's train_test_split), optionally stratified."""
    from sklearn.model_selection import train_test_split

    if not 0 < test_fraction < 1:
        raise LabError(f"split: test_fraction must be in (0, 1), got {test_fraction}")
    strat = None
    if stratify_col is not None:
        need_columns(df, [stratify_col], "split")
        strat = df[stratify_col]
    train, test = train_test_split(df, test_size=test_fraction, random_state=seed, stratify=strat)
    return train.reset_index(drop=True), test.reset_index(drop=True)
