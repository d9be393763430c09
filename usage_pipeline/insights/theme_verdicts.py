"""The theme of texts by the classifier in use: the producer's retrained model, else the shipped one, else the lexicon.

Discussions (`discussion_themes.py`) and survey answers (`surveys/responses.py`) go through `verdicts`, so both
are classified the same way. scikit-learn is imported only when a model is loaded.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg

from usage_pipeline.data_dir import DataDir
from usage_pipeline.insights.themes import THEMES, classify

if TYPE_CHECKING:
    from usage_pipeline.insights.theme_model import ThemeModel

MODEL, LEXICON, CORRECTION = "model", "lexicon", "correction"
Thread = tuple[str, Sequence[str]]  # title, the opener's messages (a survey answer: no title, one message)


@dataclass(frozen=True)
class Verdict:
    theme: str
    source: str  # MODEL or LEXICON
    confidence: float | None  # the model's probability of `theme`
    needs_review: bool  # the model's confidence is below its threshold
    evidence: tuple[str, ...]  # words the lexicon ties to `theme` (empty when it sees none)
    probabilities: dict[str, float] | None  # the model's probability of each theme


def load_classifier(data_dir: DataDir) -> "ThemeModel | None":
    """The producer's retrained model when there is one, else the shipped one; None when neither can be read."""
    from usage_pipeline.insights import theme_model

    log = dg.get_dagster_logger()
    if data_dir.theme_model_dir.exists():
        try:
            return theme_model.read_model(data_dir.theme_model_dir)
        except Exception as error:
            log.warning(f"{data_dir.theme_model_dir}: the retrained theme model cannot be read ({error}); "
                        "using the shipped model")  # fmt: skip
    try:
        return theme_model.load_shipped_model()
    except Exception as error:
        log.warning(f"the shipped theme model cannot be read ({error}); themes come from the lexicon this run")
        return None


def verdicts(threads: Sequence[Thread], classifier: "ThemeModel | None") -> list[Verdict]:
    """The classifier's verdict on each thread, or the lexicon's without a classifier."""
    if classifier is None or not threads:
        lexicon = [classify(title, list(messages)) for title, messages in threads]
        return [Verdict(v.theme, LEXICON, None, False, tuple(v.evidence), None) for v in lexicon]
    from usage_pipeline.insights.theme_model import lexicon_verdict  # the model's features computed them: cached

    result = []
    for thread, probabilities in zip(threads, classifier.probabilities(threads), strict=True):
        word_verdict = lexicon_verdict(thread)
        theme, confidence = THEMES[int(probabilities.argmax())], float(probabilities.max())
        by_theme = {name: round(float(p), 4) for name, p in zip(THEMES, probabilities, strict=True)}
        evidence = tuple(word_verdict.evidence) if word_verdict.theme == theme else ()
        result.append(
            Verdict(theme, MODEL, confidence, confidence < classifier.confidence_threshold, evidence, by_theme)
        )
    return result
