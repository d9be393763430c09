"""Theme of a reuser's discussion thread ``(title, opener_messages)``, by a scikit-learn classifier.

One `Pipeline`: a `FeatureUnion` of word TF-IDF (Snowball French stems, accent-folded, 1-2 grams), ``char_wb`` 3-4
TF-IDF on the folded text (2-5 cross-validated 0.002 higher, inside the noise, and took twice as long) and the
lexicon's five scores (`themes.classify`, ``log1p * 0.3``), then a balanced `LogisticRegression` (C = 10).

Files in ``theme_model/``: ``themes.skops`` (the pipeline, loaded with the type list `TRUSTED`, no pickle),
``model.json`` (metadata, figures, confidence threshold) and ``training.npz``: the training threads' feature rows
(CSR arrays), labels, ids and groups, not their texts, which come from elsewhere and are never stored. `retrain`
adds new threads vectorized by the shipped featurizer (vocabulary fixed) and fits a fresh regression;
`cross_validate_matrix` scores it on rows, slightly optimistically since the vocabulary saw every row
(``bench/train_themes.py`` records the honest figure too: featurizer refitted per fold, on the texts).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import unicodedata
import warnings
import zipfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import skops.io
import snowballstemmer
from sklearn.base import clone
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support
from sklearn.model_selection import RepeatedStratifiedKFold, cross_val_predict
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.preprocessing import FunctionTransformer

from usage_pipeline.insights import themes
from usage_pipeline.insights.themes import THEMES

MODEL_DIR = Path(__file__).with_name("theme_model")
PIPELINE_FILE, TRAINING_FILE, METADATA_FILE = "themes.skops", "training.npz", "model.json"
LEXICON_WEIGHT = 0.3
C = 10.0
MAX_PART_CHARS = 4000  # a title or message is cut there: a pasted file says nothing more
# Types skops may build from themes.skops beyond its defaults (a test checks the list against the file).
TRUSTED = [
    "usage_pipeline.insights.theme_model.folded_text",
    "usage_pipeline.insights.theme_model.lexicon_scores",
    "usage_pipeline.insights.theme_model.stem_tokens",
    "usage_pipeline.insights.theme_model.thread_text",
]

Thread = tuple[str, Sequence[str]]  # (title, the opener's messages)

_WORD = re.compile(r"\w\w+")  # elided single letters (l', d') are dropped
_STEMMER = snowballstemmer.stemmer("french")


@dataclass(frozen=True)
class Prediction:
    theme: str  # one of THEMES
    confidence: float  # probability of `theme`


def _parts(thread: Thread) -> tuple[str, tuple[str, ...]]:
    title, messages = thread
    return (title or "")[:MAX_PART_CHARS], tuple((message or "")[:MAX_PART_CHARS] for message in messages or ())


def _fold(text: str) -> str:
    """Lower case without accents: ``Téléchargé`` -> ``telecharge``."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def thread_text(thread: Thread) -> str:
    """Title and messages, lower-cased, one per line (the word vectorizer's preprocessor)."""
    title, messages = _parts(thread)
    return "\n".join((title, *messages)).lower()


def folded_text(thread: Thread) -> str:
    """Title and messages, lower-cased and accent-folded (the character vectorizer's preprocessor)."""
    return _fold(thread_text(thread))


@lru_cache(maxsize=100_000)
def _word_key(word: str) -> str:
    if word.isdigit() and len(word) > 3:
        return "_year_" if len(word) == 4 and word[:2] in ("19", "20") else "_num_"
    return _fold(_STEMMER.stemWord(word))  # Snowball's French rules expect the accents: fold after


def stem_tokens(text: str) -> list[str]:
    """Accent-folded Snowball stems of the words (``téléchargements`` -> ``telecharg``); long numbers grouped."""
    return [_word_key(word) for word in _WORD.findall(text)]


@lru_cache(maxsize=50_000)
def _lexicon_verdict(title: str, messages: tuple[str, ...]) -> themes.ThemeVerdict:
    return themes.classify(title, messages)


def lexicon_verdict(thread: Thread) -> themes.ThemeVerdict:
    """The lexicon's verdict on the thread as the model sees it (cut parts), computed once for the features and
    for the evidence shown beside the model's theme."""
    return _lexicon_verdict(*_parts(thread))


def lexicon_scores(threads: Sequence[Thread]) -> np.ndarray:
    """The lexicon's five scores per thread, as ``log1p(score) * LEXICON_WEIGHT``."""
    rows = [[max(lexicon_verdict(thread).scores[theme], 0.0) for theme in THEMES] for thread in threads]
    return np.log1p(np.array(rows, dtype=np.float64).reshape(-1, len(THEMES))) * LEXICON_WEIGHT


def lexicon_fingerprint() -> str:
    """SHA-256 of the lexicon's terms and settings: the lexicon features depend on them."""
    names = "LEXICON NEUTRAL TITLE_WEIGHT OPENING_WEIGHT LATER_WEIGHT OTHER_PRIOR MAX_GAP FUZZY_MIN_LENGTH"
    settings = {name: getattr(themes, name) for name in [*names.split(), "FUZZY_LONG_WORD"]}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def build_classifier() -> LogisticRegression:
    return LogisticRegression(C=C, class_weight="balanced", max_iter=10_000)


def build_pipeline() -> Pipeline:
    """The untrained model: features of a list of threads, then the regression."""
    words = TfidfVectorizer(
        preprocessor=thread_text, tokenizer=stem_tokens, token_pattern=None, ngram_range=(1, 2), sublinear_tf=True
    )
    chars = TfidfVectorizer(preprocessor=folded_text, analyzer="char_wb", ngram_range=(3, 4), sublinear_tf=True)
    lexicon = FunctionTransformer(lexicon_scores)
    features = FeatureUnion([("words", words), ("chars", chars), ("lexicon", lexicon)])
    return Pipeline([("features", features), ("classifier", build_classifier())])


@dataclass(frozen=True)
class TrainingSet:
    """Feature rows of the training threads (no text), their labels, ids and groups (organization)."""

    X: sp.csr_matrix
    y: np.ndarray
    ids: np.ndarray
    groups: np.ndarray


@dataclass(frozen=True)
class ThemeModel:
    pipeline: Pipeline
    training: TrainingSet | None = None  # the rows it was trained on (needed to save and retrain)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def confidence_threshold(self) -> float:
        return float(self.metadata["confidence_threshold"])

    def probabilities(self, threads: Sequence[Thread]) -> np.ndarray:
        """Probability of each theme (columns in THEMES order) per thread."""
        if not threads:
            return np.zeros((0, len(THEMES)))
        columns = [list(self.pipeline.classes_).index(theme) for theme in THEMES]
        return self.pipeline.predict_proba(list(threads))[:, columns]

    def predict(self, threads: Sequence[Thread]) -> list[Prediction]:
        probabilities = self.probabilities(threads)
        return [Prediction(THEMES[row.argmax()], float(row.max())) for row in probabilities]


def save_model(model: ThemeModel, directory: Path) -> None:
    """Write ``themes.skops``, ``training.npz`` (feature values as float32) and ``model.json``."""
    shipped_training_set(model)  # raises without training rows
    directory.mkdir(parents=True, exist_ok=True)
    X, buffer = model.training.X.tocsr(), io.BytesIO()
    arrays = {"data": X.data.astype(np.float32), "indices": X.indices, "indptr": X.indptr, "shape": np.array(X.shape)}
    arrays |= {name: getattr(model.training, name).astype(str) for name in ("y", "ids", "groups")}
    np.savez_compressed(buffer, **arrays)
    metadata = {**model.metadata, "labels": list(THEMES), "lexicon_sha256": lexicon_fingerprint()}
    files = {
        PIPELINE_FILE: skops.io.dumps(model.pipeline, compression=zipfile.ZIP_DEFLATED),
        TRAINING_FILE: buffer.getvalue(),
        METADATA_FILE: (json.dumps(metadata, indent=2, ensure_ascii=False) + "\n").encode(),
    }
    for name, payload in files.items():
        (directory / f".{name}.tmp").write_bytes(payload)  # written aside, then moved in place
        os.replace(directory / f".{name}.tmp", directory / name)


def _read_training(directory: Path) -> TrainingSet:
    with np.load(directory / TRAINING_FILE, allow_pickle=False) as a:
        X = sp.csr_matrix((a["data"].astype(np.float64), a["indices"], a["indptr"]), shape=tuple(a["shape"]))
        return TrainingSet(X, a["y"], a["ids"], a["groups"])


def read_model(directory: Path) -> ThemeModel:
    """Read a model written by `save_model`: skops with the `TRUSTED` types, NumPy without pickle, JSON."""
    metadata = json.loads((directory / METADATA_FILE).read_text(encoding="utf-8"))
    pipeline = skops.io.load(directory / PIPELINE_FILE, trusted=TRUSTED)
    if metadata.get("lexicon_sha256") != lexicon_fingerprint():
        warnings.warn("the lexicon (themes.py) changed since the theme model was trained: retrain it", stacklevel=2)
    return ThemeModel(pipeline, _read_training(directory), metadata)


@cache
def load_shipped_model() -> ThemeModel:
    return read_model(MODEL_DIR)


def shipped_training_set(model_or_directory: ThemeModel | Path) -> tuple[sp.csr_matrix, np.ndarray]:
    """Feature rows and labels a model was trained on."""
    if isinstance(model_or_directory, ThemeModel):
        training = model_or_directory.training
    else:
        training = _read_training(Path(model_or_directory))
    if training is None:
        raise ValueError("this model carries no training rows")
    return training.X, training.y


def retrain(model: ThemeModel, threads: Sequence[Thread], labels: Sequence[str]) -> ThemeModel:
    """A fresh regression on the model's training rows plus these threads, vectorized by its fitted featurizer."""
    unknown = sorted(set(labels) - set(THEMES))
    if len(threads) != len(labels) or unknown:
        raise ValueError(f"{len(threads)} threads, {len(labels)} labels, unknown themes {unknown}")
    X, y = shipped_training_set(model)
    old, features, n = model.training, model.pipeline.named_steps["features"], len(threads)
    training = TrainingSet(
        sp.vstack([X, features.transform(list(threads))]).tocsr() if n else X,
        np.concatenate([y, np.asarray(labels, dtype=str)]),
        np.concatenate([old.ids, [f"added-{i}" for i in range(n)]]).astype(str),  # type: ignore[union-attr]
        np.concatenate([old.groups, ["added"] * n]).astype(str),  # type: ignore[union-attr]
    )
    pipeline = Pipeline([("features", features), ("classifier", build_classifier().fit(training.X, training.y))])
    added = {"added": n, "added_by_theme": {theme: list(labels).count(theme) for theme in THEMES}}
    return replace(model, pipeline=pipeline, training=training, metadata={**model.metadata, "retrained": added})


@dataclass(frozen=True)
class CrossValidation:
    """Figures of out-of-fold (or held-out) predictions; ``confidence`` and ``correct``: one row per repeat."""

    macro_f1: float
    ci95: tuple[float, float]
    accuracy: float
    per_theme: dict[str, dict[str, float]]
    confusion: list[list[int]]
    confidence: np.ndarray = field(repr=False)
    correct: np.ndarray = field(repr=False)

    def figures(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if key not in ("confidence", "correct")}


def evaluate(
    truth: Sequence[str], predicted: np.ndarray, confidence: np.ndarray, *, bootstrap: int = 2000, seed: int = 0
) -> CrossValidation:
    """Figures of predictions (repeats x n): per-theme P/R/F1, confusion and accuracy pooled over the repeats,
    macro-F1 (mean over repeats) with a bootstrap 95 % interval over threads (each keeps all its predictions)."""
    truth, predicted = np.asarray(truth, dtype=str), np.atleast_2d(np.asarray(predicted, dtype=str))
    labels = list(THEMES)
    pooled, flat = np.tile(truth, len(predicted)), predicted.ravel()
    scores = precision_recall_fscore_support(pooled, flat, labels=labels, zero_division=0)
    confusion = confusion_matrix(pooled, flat, labels=labels)
    macro = np.mean([f1_score(truth, row, labels=labels, average="macro", zero_division=0) for row in predicted])
    # Bootstrap resamples as multinomial weights, all at once: F1 = 2 TP / (true + predicted) per theme.
    weights = np.random.default_rng(seed).multinomial(len(truth), np.full(len(truth), 1 / len(truth)), bootstrap)
    samples, is_true = np.zeros(bootstrap), (truth[:, None] == labels).astype(float)
    for row in (row[:, None] == labels for row in predicted):
        hits, totals = weights @ (is_true * row), weights @ (is_true + row)
        samples += np.divide(2 * hits, totals, out=np.zeros_like(totals), where=totals > 0).mean(axis=1)
    low, high = np.percentile(samples / len(predicted), [2.5, 97.5])
    support = confusion.sum(axis=1) // len(predicted)
    per_theme = {
        theme: {"precision": _round(p), "recall": _round(r), "f1": _round(f), "support": int(n)}
        for theme, p, r, f, n in zip(THEMES, *scores[:3], support, strict=True)
    }
    accuracy, correct = np.trace(confusion) / confusion.sum(), predicted == truth
    figures = (_round(macro), (_round(low), _round(high)), _round(accuracy), per_theme, confusion.tolist())
    return CrossValidation(*figures, confidence, correct)


def _round(value: float) -> float:
    return round(float(value), 4)


def out_of_fold(
    estimator: Any,
    X: Any,
    y: Sequence[str],
    *,
    folds: int = 5,
    repeats: int = 3,
    seed: int = 0,
    bootstrap: int = 2000,
    sample_weight: np.ndarray | None = None,
) -> CrossValidation:
    """Repeated stratified k-fold, a fresh clone of ``estimator`` per fold (X: threads, or feature rows), fitted
    with ``sample_weight`` when given (a row of weight 0 is predicted but not learnt from)."""
    y = np.asarray(y, dtype=str)
    splits = list(RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed).split(y, y))
    classes, predicted, confidence = np.unique(y), [], []
    for repeat in range(repeats):
        cv = splits[repeat * folds : (repeat + 1) * folds]
        params = None if sample_weight is None else {"sample_weight": sample_weight}
        probabilities = cross_val_predict(clone(estimator), X, y, cv=cv, method="predict_proba", params=params)
        predicted.append(classes[probabilities.argmax(axis=1)])
        confidence.append(probabilities.max(axis=1))
    return evaluate(y, np.array(predicted), np.array(confidence), bootstrap=bootstrap, seed=seed)


def cross_validate_matrix(
    X: sp.spmatrix, y: Sequence[str], folds: int = 5, repeats: int = 3, seed: int = 0, bootstrap: int = 2000
) -> CrossValidation:
    """`out_of_fold` of the shipped regression settings on feature rows (their vocabulary saw every row)."""
    return out_of_fold(
        build_classifier(), sp.csr_matrix(X), y, folds=folds, repeats=repeats, seed=seed, bootstrap=bootstrap
    )


def compare_retraining(
    model: ThemeModel, threads: Sequence[Thread], labels: Sequence[str], repeats: int = 3, seed: int = 0
) -> tuple[CrossValidation, CrossValidation]:
    """Cross-validation on the same folds of the model's training rows plus ``threads``: the regression fitted
    without the new threads (before), then with them (after). Both are scored on every row, the new ones included."""
    X, y = shipped_training_set(model)
    added = model.pipeline.named_steps["features"].transform(list(threads))
    rows, truth = sp.vstack([X, added]).tocsr(), np.concatenate([y, np.asarray(labels, dtype=str)])
    without = np.concatenate([np.ones(len(y)), np.zeros(len(labels))])
    before = out_of_fold(build_classifier(), rows, truth, repeats=repeats, seed=seed, sample_weight=without)
    return before, out_of_fold(build_classifier(), rows, truth, repeats=repeats, seed=seed)
