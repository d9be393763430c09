"""reporting.theme_labels: the discussion themes' stable codes with their words in each language, for BI tools
(a join on ``theme`` shows "Fraîcheur" where the tables say ``freshness``). Built from the gettext catalogs, so
the words are the digest's."""

import duckdb
import polars as pl

from usage_pipeline.data_dir import DataDir
from usage_pipeline.insights.language import reader
from usage_pipeline.insights.themes import THEMES
from usage_pipeline.models import PythonModel
from usage_pipeline.warehouse import Column, registered


def label_rows() -> pl.DataFrame:
    """One row per theme: its French and English label and description."""
    french, english = reader("fr"), reader("en")
    return pl.DataFrame(
        [
            {
                "theme": theme,
                "label_fr": french.theme(theme),
                "label_en": english.theme(theme),
                "description_fr": french.theme_hint(theme),
                "description_en": english.theme_hint(theme),
            }
            for theme in THEMES
        ]
    )


def build_theme_labels(conn: duckdb.DuckDBPyConnection, data_dir: DataDir) -> None:
    """reporting.theme_labels, inside the caller's transaction (``data_dir`` unused: the catalogs are shipped)."""
    with registered(conn, "labels_frame", label_rows()):
        conn.execute("CREATE OR REPLACE TABLE reporting.theme_labels AS SELECT * FROM labels_frame")


THEME_LABELS_TABLE = PythonModel(
    schema="reporting",
    name="theme_labels",
    description=(
        "The words of each discussion theme (the codes of reporting.discussions.theme and of the survey tables), "
        "in French and in English, as the weekly digest writes them."
    ),
    grain=("theme",),
    columns={
        "theme": Column("VARCHAR", f"The theme's code: {', '.join(THEMES)}."),
        "label_fr": Column("VARCHAR", "Its name in French."),
        "label_en": Column("VARCHAR", "Its name in English."),
        "description_fr": Column("VARCHAR", "What it covers, in French."),
        "description_en": Column("VARCHAR", "What it covers, in English."),
    },
    reads=frozenset(),
    build=build_theme_labels,
    source="usage_pipeline/insights/theme_labels.py",
)
