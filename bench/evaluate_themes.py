"""Evaluate the discussion-theme classifier against the hand-labelled set.

Labels: ``usage_pipeline_tests/data/discussion_themes.csv`` (``split`` is ``tune`` or ``heldout``). Texts: the
real data.gouv.fr sample (``--sample`` or ``$USAGE_SAMPLE_PATH``, read in place, never copied). A message is the
producer's when its author is a member of the dataset's organization; only the reusers' messages are classified.

Run (from the repository root)::

    .venv/bin/python bench/evaluate_themes.py            # tune and heldout tables, heldout confusion matrix
    .venv/bin/python bench/evaluate_themes.py --split tune

``evaluate(split)`` returns the figures as a dict (reused by ``usage_pipeline_tests/test_themes.py``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from collections import Counter
from pathlib import Path
from typing import Any

from usage_pipeline.insights.themes import THEMES, classify

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "usage_pipeline_tests" / "data" / "discussion_themes.csv"
SPLITS = ("tune", "heldout")


def load_discussions(fixture: Path) -> dict[str, tuple[str, list[str]]]:
    """Discussion id -> (title, the reusers' messages in thread order), producers' messages left out."""
    data = json.loads(fixture.read_text(encoding="utf-8"))
    discussions: dict[str, tuple[str, list[str]]] = {}
    for entry in data["datasets"]:
        members = {member["user"]["id"] for member in (entry.get("organization") or {}).get("members", [])}
        for discussion in entry.get("discussions") or []:
            messages = [
                message.get("content") or ""
                for message in discussion.get("discussion") or []
                if (message.get("posted_by") or {}).get("id") not in members
            ]
            discussions[discussion["id"]] = (discussion.get("title") or "", messages)
    return discussions


def load_labels(split: str, labels: Path = LABELS) -> list[dict[str, str]]:
    """The labelled rows of one split."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    with labels.open(encoding="utf-8", newline="") as handle:
        return [row for row in csv.DictReader(handle) if row["split"] == split]


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def evaluate(split: str, sample: Path) -> dict[str, Any]:
    """Classify every discussion of ``split`` and score it against the labels.

    Returns ``per_theme`` (theme -> precision, recall, f1, support), ``macro_f1`` (over the five themes),
    ``accuracy``, ``confusion`` ((true, predicted) -> count), ``n``, ``ms_per_discussion`` and ``predictions``
    (discussion id -> (true, predicted, evidence)).
    """
    discussions = load_discussions(sample)
    rows = load_labels(split)
    predictions: dict[str, tuple[str, str, tuple[str, ...]]] = {}
    started = time.perf_counter()
    for row in rows:
        title, messages = discussions[row["discussion_id"]]
        verdict = classify(title, messages)
        predictions[row["discussion_id"]] = (row["theme"], verdict.theme, verdict.evidence)
    elapsed = time.perf_counter() - started
    confusion = Counter((truth, predicted) for truth, predicted, _ in predictions.values())
    per_theme: dict[str, dict[str, float]] = {}
    for theme in THEMES:
        true_positives = confusion[(theme, theme)]
        predicted = sum(count for (_, guess), count in confusion.items() if guess == theme)
        support = sum(count for (truth, _), count in confusion.items() if truth == theme)
        precision = _ratio(true_positives, predicted)
        recall = _ratio(true_positives, support)
        per_theme[theme] = {
            "precision": precision,
            "recall": recall,
            "f1": _ratio(2 * precision * recall, precision + recall),
            "support": support,
        }
    correct = sum(confusion[(theme, theme)] for theme in THEMES)
    return {
        "split": split,
        "n": len(rows),
        "per_theme": per_theme,
        "macro_f1": sum(figures["f1"] for figures in per_theme.values()) / len(THEMES),
        "accuracy": _ratio(correct, len(rows)),
        "confusion": dict(confusion),
        "ms_per_discussion": _ratio(elapsed * 1000, len(rows)),
        "predictions": predictions,
    }


def metrics_table(result: dict[str, Any]) -> str:
    """Per-theme precision, recall, F1 and support, then macro-F1 and accuracy, as a Markdown table."""
    lines = ["| theme | precision | recall | F1 | support |", "|---|---:|---:|---:|---:|"]
    for theme, figures in result["per_theme"].items():
        lines.append(
            f"| {theme} | {figures['precision']:.2f} | {figures['recall']:.2f} | {figures['f1']:.2f} "
            f"| {figures['support']} |"
        )
    lines.append(f"| **macro-F1** | | | **{result['macro_f1']:.3f}** | {result['n']} |")
    lines.append(f"| **accuracy** | | | **{result['accuracy']:.3f}** | {result['n']} |")
    return "\n".join(lines)


def confusion_table(result: dict[str, Any]) -> str:
    """Confusion matrix as a Markdown table: rows are the labels, columns the predictions."""
    confusion = result["confusion"]
    lines = ["| true \\ predicted | " + " | ".join(THEMES) + " |", "|---|" + "---:|" * len(THEMES)]
    for truth in THEMES:
        cells = " | ".join(str(confusion.get((truth, predicted), 0)) for predicted in THEMES)
        lines.append(f"| {truth} | {cells} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=SPLITS, action="append", help="split(s) to report (default: both)")
    parser.add_argument("--errors", action="store_true", help="also list the misclassified discussions")
    parser.add_argument(
        "--sample",
        type=Path,
        default=os.environ.get("USAGE_SAMPLE_PATH"),
        help="the data.gouv.fr sample (udata's fixture file); default: $USAGE_SAMPLE_PATH",
    )
    args = parser.parse_args(argv)
    if not args.sample:
        parser.error("give the sample with --sample or USAGE_SAMPLE_PATH")
    for split in args.split or SPLITS:
        result = evaluate(split, args.sample)
        print(f"## {split} ({result['n']} discussions, {result['ms_per_discussion']:.3f} ms per discussion)\n")
        print(metrics_table(result), end="\n\n")
        if split == "heldout":
            print("### heldout confusion matrix\n")
            print(confusion_table(result), end="\n\n")
        if args.errors:
            for discussion_id, (truth, predicted, evidence) in result["predictions"].items():
                if truth != predicted:
                    print(f"- {discussion_id}: {truth} -> {predicted} {list(evidence)}")
            print()


if __name__ == "__main__":
    main()
