"""The producer's theme corrections: reading theme_corrections.csv, and who decides a discussion's theme."""

import json
from pathlib import Path

import pytest

from usage_pipeline.ingest.producer_csv import ProducerFileError
from usage_pipeline.ingest.theme_corrections import Correction, parse_corrections
from usage_pipeline.insights import theme_model
from usage_pipeline.insights.discussion_themes import theme_rows
from usage_pipeline.insights.theme_verdicts import CORRECTION, LEXICON, MODEL

THREADS = {
    "d1": ("Lien mort", ["Le lien de téléchargement renvoie une erreur 404."]),
    "d2": ("Mise à jour", ["Les données ne sont plus mises à jour depuis mars 2024."]),
    "d3": ("Merci", ["Merci pour ce jeu de données."]),
}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "theme_corrections.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_valid_rows_are_kept_and_bad_rows_named(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "discussion_id;Theme\nd1;Usability\nd2;weather\nzz;other\nd3;freshness\nd3;reliability\n",
    )
    corrections, problems = parse_corrections(path, set(THREADS))
    assert corrections == [Correction("d1", "usability", 2), Correction("d3", "reliability", 6)]
    assert problems == [
        f"{path}, row 3: theme 'weather' is not one of accessibility, freshness, reliability, usability, other",
        f"{path}, row 4: discussion 'zz' is not a known discussion",
        f"{path}, row 6: discussion 'd3' was already corrected in row 5; row 6 wins",
    ]


def test_a_file_without_the_columns_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ProducerFileError, match=r"missing column\(s\) \['theme'\]"):
        parse_corrections(write(tmp_path, "discussion_id,label\nd1,other\n"), set(THREADS))


def test_a_correction_wins_over_the_model_and_the_model_over_the_lexicon() -> None:
    model = theme_model.load_shipped_model()
    rows = {row["discussion_id"]: row for row in theme_rows(THREADS, {"d3": "usability"}, model).iter_rows(named=True)}
    probabilities = model.probabilities(list(THREADS.values()))
    for index, key in enumerate(("d1", "d2")):
        row = rows[key]
        assert (row["theme"], row["theme_source"]) == (theme_model.THEMES[probabilities[index].argmax()], MODEL)
        assert row["theme_confidence"] == pytest.approx(probabilities[index].max())
        assert row["needs_review"] == (row["theme_confidence"] < model.confidence_threshold)
        assert json.loads(row["probabilities"])[row["theme"]] == pytest.approx(row["theme_confidence"], abs=1e-4)
    assert (rows["d1"]["theme"], rows["d2"]["theme"]) == ("accessibility", "freshness")
    assert rows["d3"] | {"evidence": None} == {
        "discussion_id": "d3",
        "theme": "usability",
        "theme_confidence": None,
        "theme_source": CORRECTION,
        "needs_review": False,
        "evidence": None,
        "probabilities": rows["d3"]["probabilities"],
    }


def test_without_a_model_the_lexicon_decides() -> None:
    rows = theme_rows(THREADS, {}, None)
    assert rows["theme_source"].to_list() == [LEXICON] * 3
    assert rows["theme"].to_list() == ["accessibility", "freshness", "other"]
    assert rows["theme_confidence"].null_count() == 3
    assert rows["needs_review"].to_list() == [False] * 3
