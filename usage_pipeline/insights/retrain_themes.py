"""`usage-pipeline train-themes`: the theme classifier retrained on its training data plus the producer's corrections.

The corrected discussions' texts come from the warehouse (title and opener's messages, as the pipeline classifies
them); the shipped training data comes with the model as feature rows. Both models are cross-validated on the same
folds of the same rows; the retrained one is kept in $USAGE_DATA_DIR/theme_model/ only if it scores no worse.
"""

from collections.abc import Callable
from dataclasses import dataclass

import duckdb

from usage_pipeline.data_dir import DataDir
from usage_pipeline.ingest.theme_corrections import parse_corrections
from usage_pipeline.insights import theme_model
from usage_pipeline.insights.discussion_themes import thread_texts


class TrainThemesError(ValueError):
    """Nothing to train on; the message says what is missing."""


@dataclass(frozen=True)
class Retraining:
    before: theme_model.CrossValidation  # the shipped model's settings, trained without the corrections
    after: theme_model.CrossValidation  # trained with them
    kept: bool  # the retrained model was saved


def corrected_threads(paths: DataDir, log: Callable[[str], None]) -> tuple[list[theme_model.Thread], list[str]]:
    """The texts and corrected themes of the valid rows of theme_corrections.csv; bad rows are logged."""
    if not paths.theme_corrections_file.exists():
        raise TrainThemesError(f"{paths.theme_corrections_file}: no such file; write discussion_id,theme rows in it")
    if not paths.warehouse.exists():
        raise TrainThemesError(f"{paths.warehouse}: no warehouse yet; run `usage-pipeline refresh` first")
    with duckdb.connect(str(paths.warehouse), read_only=True) as conn:
        texts = thread_texts(conn)
    corrections, problems = parse_corrections(paths.theme_corrections_file, set(texts))
    for problem in problems:
        log(f"warning: {problem}")
    if not corrections:
        raise TrainThemesError(f"{paths.theme_corrections_file}: no valid correction to learn from")
    return [texts[c.discussion_id] for c in corrections], [c.theme for c in corrections]


def train_themes(paths: DataDir, log: Callable[[str], None] = print, repeats: int = 3) -> Retraining:
    """Retrain on the shipped rows plus the corrections; save the new model only if its cross-validation (5 folds,
    ``repeats`` times) is no worse."""
    threads, labels = corrected_threads(paths, log)
    shipped = theme_model.load_shipped_model()
    log(f"{len(threads)} corrected discussions added to {len(shipped.training.y)} training threads; "
        f"cross-validating with and without them (5 folds x {repeats}, about a minute)...")  # fmt: skip
    before, after = theme_model.compare_retraining(shipped, threads, labels, repeats=repeats)
    for name, figures in (("before", before), ("after", after)):
        low, high = figures.ci95
        log(f"{name}: cross-validated macro-F1 {figures.macro_f1:.3f} [{low:.3f}, {high:.3f}], "
            f"accuracy {figures.accuracy:.3f}")  # fmt: skip
    kept = after.macro_f1 >= before.macro_f1
    if kept:
        theme_model.save_model(theme_model.retrain(shipped, threads, labels), paths.theme_model_dir)
        log(f"retrained model saved in {paths.theme_model_dir}: the next run classifies with it")
    else:
        log("the retrained model scores lower: nothing written, the model in use stays")
    return Retraining(before, after, kept)
