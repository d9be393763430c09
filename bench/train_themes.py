"""Evaluate and rebuild the discussion-theme model (``usage_pipeline/insights/theme_model.py``).

Data, read in place, never copied (only ids, labels and feature rows are shipped): ``--themes`` (default
``$USAGE_THEMES_PATH``, else ``../shared/themes/labelled-discussions.jsonl``), another producer's labelled threads
(title and first message), and ``--sample`` (``$USAGE_SAMPLE_PATH``, else ``../shared/fixtures/datagouv-sample.json``)
labelled in ``usage_pipeline_tests/data/discussion_themes.csv`` (title and the opener's messages).

Protocol, the held-out rule fixed before any tuning: (1) repeated stratified cross-validation (5 folds x 3, seed 0)
over every thread, the whole pipeline refitted per fold; its out-of-fold predictions give the review threshold:
the lowest confidence where an isotonic fit of correctness reaches 50 % (below it, the model was wrong more
often than right). (2) Held out: threads of organizations
without threads in the labelled file, and the labelled producer's threads outside `DEV_DATASETS`; a model trained on
the rest predicts them once, and the lexicon is scored on them (``lexicon_unseen``: those it was not tuned on).
(3) The shipped model, trained on everything, with its feature rows and metadata, including the matrix
cross-validation (`theme_model.cross_validate_matrix`) that retraining compares on.

Run from the repository root: ``.venv/bin/python bench/train_themes.py [--no-write] [--markdown]``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata as package_metadata
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.isotonic import IsotonicRegression

from usage_pipeline.insights import theme_model as tm
from usage_pipeline.insights.themes import THEMES, classify

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "usage_pipeline_tests" / "data" / "discussion_themes.csv"
DEFAULT_SAMPLE = ROOT.parent / "shared" / "fixtures" / "datagouv-sample.json"
DEFAULT_THEMES = ROOT.parent / "shared" / "themes" / "labelled-discussions.jsonl"
SEED, FOLDS, REPEATS, TIMING_THREADS = 0, 5, 3, 10_000  # bootstrap: 2000 resamples, seed 0 (`tm.evaluate`)
REVIEW_ACCURACY = 0.5  # below the threshold, out-of-fold predictions were wrong more often than right
# The labelled producer's four most-discussed datasets (>= 20 labelled threads each): the development part.
DEV_DATASETS = frozenset(
    {
        "5c4ae55a634f4117716d5656",  # Demandes de valeurs foncières (DVF)
        "58e5924b88ee3802ca255566",  # Plan Cadastral Informatisé (PCI)
        "58da72bbc751df38734d8658",  # Impôts locaux : fichier de recensement des éléments d'imposition (REI)
        "605d268f4661cf23272817c3",  # Fichiers des locaux et des parcelles des personnes morales
    }
)


@dataclass(frozen=True)
class LabelledThread:
    id: str
    dataset_id: str
    organization: str
    thread: tm.Thread
    theme: str
    source: str  # "labelled" (the other producer's file) or "sample"
    lexicon_split: str = ""  # the sample's "tune" / "heldout" split of the lexicon


def load_labelled(path: Path) -> list[LabelledThread]:
    """The other producer's threads: title and first message (the export does not say who wrote the later ones)."""
    threads = []
    for line in filter(str.strip, path.read_text(encoding="utf-8").splitlines()):
        row = json.loads(line)
        thread = (row.get("title") or "", [row["messages"][0].get("content") or ""] if row.get("messages") else [])
        where = (row.get("dataset_id") or "", row.get("organization") or "")
        threads.append(LabelledThread(row["id"], *where, thread, row["theme"], "labelled"))
    return threads


def load_sample(path: Path, labels_path: Path = LABELS) -> list[LabelledThread]:
    """The sample's labelled discussions: title and the messages posted by the discussion's author."""
    with labels_path.open(encoding="utf-8", newline="") as handle:
        labels = {row["discussion_id"]: row for row in csv.DictReader(handle)}
    threads = []
    for entry in json.loads(path.read_text(encoding="utf-8"))["datasets"]:
        for discussion in entry.get("discussions") or []:
            if (row := labels.get(discussion["id"])) is None:
                continue
            opener = (discussion.get("user") or {}).get("id")
            messages = [
                message.get("content") or ""
                for message in discussion.get("discussion") or []
                if opener and (message.get("posted_by") or {}).get("id") == opener
            ]
            organization = (entry.get("organization") or {}).get("name") or ""
            theme_split = (row["theme"], "sample", row["split"])
            thread = (discussion.get("title") or "", messages)
            dataset_id = (entry.get("dataset") or {}).get("id") or ""
            threads.append(LabelledThread(row["discussion_id"], dataset_id, organization, thread, *theme_split))
    if len(threads) != len(labels):
        raise ValueError(f"{len(labels) - len(threads)} labelled discussions are not in {path}")
    return threads


def corpus(themes_path: Path, sample_path: Path) -> tuple[list[LabelledThread], dict[str, str]]:
    """Every labelled thread (by id) and its part: ``dev``, ``other_organizations`` or ``other_datasets``."""
    threads = sorted(load_labelled(themes_path) + load_sample(sample_path), key=lambda thread: thread.id)
    if len({thread.id for thread in threads}) != len(threads):
        raise ValueError("a discussion is labelled twice")
    labelled_organizations = {thread.organization for thread in threads if thread.source == "labelled"}
    parts = {
        thread.id: "other_organizations"
        if thread.organization not in labelled_organizations
        else ("dev" if thread.dataset_id in DEV_DATASETS else "other_datasets")
        for thread in threads
    }
    return threads, parts


def fingerprint(pairs: Iterable[tuple[str, str]]) -> str:
    """SHA-256 of the lines ``id<TAB>theme`` sorted by id: which threads, with which labels (not their texts)."""
    return hashlib.sha256("".join(f"{i}\t{theme}\n" for i, theme in sorted(pairs)).encode()).hexdigest()


def counts(threads: list[LabelledThread]) -> dict[str, int]:
    return {theme: sum(thread.theme == theme for thread in threads) for theme in THEMES}


def heldout(threads: list[LabelledThread], parts: dict[str, str]) -> tuple[dict, dict]:
    """Figures of a model trained on the development part, and of the lexicon, on the held-out subsets."""
    dev = [thread for thread in threads if parts[thread.id] == "dev"]
    rest = [thread for thread in threads if parts[thread.id] != "dev"]
    subsets = {
        "heldout": rest,
        "other_organizations": [t for t in rest if parts[t.id] == "other_organizations"],
        "other_datasets": [t for t in rest if parts[t.id] == "other_datasets"],
        "lexicon_unseen": [t for t in rest if t.lexicon_split != "tune"],
    }
    pipeline = tm.build_pipeline().fit([t.thread for t in dev], [t.theme for t in dev])
    model = tm.ThemeModel(pipeline)
    said = dict(zip([t.id for t in rest], model.predict([t.thread for t in rest]), strict=True))
    by_lexicon = {t.id: classify(t.thread[0], t.thread[1]).theme for t in rest}
    figures: dict[str, dict[str, Any]] = {"model": {}, "lexicon": {}}
    for name, rows in subsets.items():
        truth = [t.theme for t in rows]
        confidence = np.array([[said[t.id].confidence for t in rows]])
        for who, says in (("model", {i: p.theme for i, p in said.items()}), ("lexicon", by_lexicon)):
            result = tm.evaluate(truth, np.array([[says[t.id] for t in rows]]), confidence)
            figures[who][name] = {"n": len(rows), **result.figures()}
    return figures["model"], figures["lexicon"]


def review_threshold(cv: tm.CrossValidation) -> tuple[float, dict[str, Any]]:
    """The review threshold (see the protocol) and what it does to the out-of-fold predictions."""
    confidence, correct = cv.confidence.ravel(), cv.correct.ravel()
    fitted = IsotonicRegression(out_of_bounds="clip").fit(confidence, correct.astype(float))
    grid = np.unique(confidence)
    reached = grid[fitted.predict(grid) >= REVIEW_ACCURACY]
    threshold = 1.0 if len(reached) == 0 else (round(float(reached[0]), 4) if reached[0] > grid[0] else 0.0)
    below = confidence < threshold
    return threshold, {
        "rule": f"lowest confidence where an isotonic fit of out-of-fold correctness reaches {REVIEW_ACCURACY}",
        "share_below": round(float(below.mean()), 4),
        "accuracy_below": round(float(correct[below].mean()), 4) if below.any() else None,
        "accuracy_above": round(float(correct[~below].mean()), 4),
    }


def timing(model: tm.ThemeModel, threads: list[LabelledThread]) -> float:
    """Seconds to classify TIMING_THREADS distinct threads (the labelled ones cycled, numbered against caches)."""
    cycled = [threads[i % len(threads)].thread for i in range(TIMING_THREADS)]
    batch = [(f"{title} #{i}", messages) for i, (title, messages) in enumerate(cycled)]
    started = time.perf_counter()
    model.predict(batch)
    return round(time.perf_counter() - started, 2)


def build(threads: list[LabelledThread], parts: dict[str, str]) -> tm.ThemeModel:
    """Every evaluation of the protocol, then the shipped model (trained on everything) with its metadata."""
    texts, labels = [t.thread for t in threads], [t.theme for t in threads]
    cv = tm.out_of_fold(tm.build_pipeline(), texts, labels, folds=FOLDS, repeats=REPEATS, seed=SEED)
    threshold, threshold_figures = review_threshold(cv)
    model_figures, lexicon_figures = heldout(threads, parts)
    pipeline = tm.build_pipeline().fit(texts, labels)
    # Rows as training.npz stores them (float32), so that the recorded matrix figure can be recomputed from it.
    X = pipeline.named_steps["features"].transform(texts).astype(np.float32).astype(np.float64)
    matrix_cv = tm.cross_validate_matrix(X, labels, FOLDS, REPEATS, SEED)
    ids, organizations = np.array([t.id for t in threads]), np.array([t.organization for t in threads])
    dev = [t for t in threads if parts[t.id] == "dev"]
    names = ("scikit-learn", "numpy", "scipy", "skops", "snowballstemmer")
    metadata = {
        "description": "Discussion themes: word and character TF-IDF + lexicon scores, logistic regression "
        "(bench/train_themes.py). No text is shipped: training.npz holds the feature rows.",
        "confidence_threshold": threshold,
        "versions": {name: package_metadata.version(name) for name in names},
        "training": {
            "n": len(threads),
            "sha256": fingerprint(zip(ids.tolist(), labels, strict=True)),
            "by_theme": counts(threads),
            "by_source": {s: sum(t.source == s for t in threads) for s in ("labelled", "sample")},
            "features": X.shape[1],
        },
        "evaluation": {
            **{"seed": SEED, "folds": FOLDS, "repeats": REPEATS, "bootstrap": 2000},
            "cross_validation": {"protocol": "featurizer refitted per fold, on the texts", **cv.figures()},
            "matrix_cross_validation": {"protocol": "cross_validate_matrix of training.npz", **matrix_cv.figures()},
            "threshold": threshold_figures,
            "development": {"n": len(dev), "sha256": fingerprint((t.id, t.theme) for t in dev)},
            "heldout_rule": "threads of organizations without threads in the labelled file, and the labelled "
            f"producer's threads outside the datasets {sorted(DEV_DATASETS)}",
            "heldout": model_figures,
            "lexicon_on_heldout": lexicon_figures,
        },
    }
    model = tm.ThemeModel(pipeline, tm.TrainingSet(X, np.array(labels), ids, organizations), metadata)
    metadata["evaluation"]["seconds_for_10000"] = timing(model, threads)
    return model


def metrics_table(figures: dict[str, Any]) -> str:
    lines = ["| theme | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for theme, row in figures["per_theme"].items():
        lines.append(f"| {theme} | {row['precision']:.2f} | {row['recall']:.2f} | {row['f1']:.2f} | {row['support']} |")
    low, high = figures["ci95"]
    lines.append(f"| **macro-F1** [95 % CI] | | | **{figures['macro_f1']:.3f}** [{low:.3f}, {high:.3f}] | |")
    return "\n".join([*lines, f"| **accuracy** | | | **{figures['accuracy']:.3f}** | |"])


def confusion_table(figures: dict[str, Any]) -> str:
    lines = ["| true \\ predicted | " + " | ".join(THEMES) + " |", "|---|" + "---:|" * len(THEMES)]
    rows = zip(THEMES, figures["confusion"], strict=True)
    return "\n".join([*lines, *(f"| {theme} | " + " | ".join(map(str, row)) + " |" for theme, row in rows)])


def summary(figures: dict[str, Any]) -> str:
    low, high = figures["ci95"]
    return f"{figures['macro_f1']:.3f} [{low:.3f}, {high:.3f}], accuracy {figures['accuracy']:.3f}"


def markdown(metadata: dict[str, Any]) -> str:
    """The README section: cross-validation, held-out part, lexicon, matrix cross-validation, threshold, speed."""
    evaluation = metadata["evaluation"]
    cv, model, lexicon = evaluation["cross_validation"], evaluation["heldout"], evaluation["lexicon_on_heldout"]
    threshold = evaluation["threshold"]
    return "\n".join(
        [
            f"Cross-validation ({FOLDS} folds x {REPEATS}, {metadata['training']['n']} threads, featurizer refitted in "
            f"each fold; confusion summed over the repeats):\n\n{metrics_table(cv)}\n\n{confusion_table(cv)}\n",
            f"Held out (model trained on the {evaluation['development']['n']} development threads):\n\n"
            f"{metrics_table(model['heldout'])}\n\n{confusion_table(model['heldout'])}\n",
            f"The lexicon on the same threads:\n\n{metrics_table(lexicon['heldout'])}\n",
            "| held-out subset | n | model macro-F1 | lexicon macro-F1 |\n|---|---:|---|---|",
            *(f"| {name} | {model[name]['n']} | {summary(model[name])} | {summary(lexicon[name])} |" for name in model),
            f"\nCross-validation on the shipped feature rows (vocabulary fitted on all threads, so slightly "
            f"optimistic; what retraining compares on): macro-F1 {summary(evaluation['matrix_cross_validation'])}.",
            f"Review threshold {metadata['confidence_threshold']}: {threshold['share_below']:.0%} of the out-of-fold "
            f"predictions fall below it (right {threshold['accuracy_below']:.0%} of the time, "
            f"{threshold['accuracy_above']:.0%} above). {TIMING_THREADS:,} threads classified in "
            f"{evaluation['seconds_for_10000']} s.",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample", type=Path, default=os.environ.get("USAGE_SAMPLE_PATH") or DEFAULT_SAMPLE)
    parser.add_argument("--themes", type=Path, default=os.environ.get("USAGE_THEMES_PATH") or DEFAULT_THEMES)
    parser.add_argument("--out", type=Path, default=tm.MODEL_DIR)
    parser.add_argument("--no-write", action="store_true", help="evaluate only")
    parser.add_argument("--markdown", action="store_true", help="print the README section only")
    args = parser.parse_args(argv)
    for path in (args.sample, args.themes):
        if not path.is_file():
            raise SystemExit(f"no file at {path}: give --sample / --themes, or USAGE_SAMPLE_PATH / USAGE_THEMES_PATH")
    threads, parts = corpus(args.themes, args.sample)
    log = sys.stderr if args.markdown else sys.stdout
    print(f"{len(threads)} threads, {counts(threads)}; parts {dict(sorted(Counter(parts.values()).items()))}", file=log)
    model = build(threads, parts)
    print(markdown(model.metadata))
    if not args.no_write:
        tm.save_model(model, args.out)
        sizes = {path.name: path.stat().st_size for path in sorted(args.out.iterdir())}
        print(f"\nwritten to {args.out}: {sizes}", file=log)


if __name__ == "__main__":
    main()
