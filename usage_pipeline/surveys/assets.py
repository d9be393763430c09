"""The survey asset: ingest the new or changed survey files of the surveys folder into raw.survey_*."""

import os

import dagster as dg
from dagster_duckdb import DuckDBResource

from usage_pipeline.data_dir import DataDir
from usage_pipeline.ingest.assets import RAW_SNAPSHOT_KEY, WAREHOUSE_POOL
from usage_pipeline.insights.theme_verdicts import load_classifier
from usage_pipeline.surveys.config import CONFIG_FILE, SurveyConfigError
from usage_pipeline.surveys.ingest import ingest_surveys
from usage_pipeline.surveys.responses import SALT_ENV
from usage_pipeline.surveys.tables import (
    SURVEY_FILES_TABLE,
    SURVEY_RESPONSES_COLUMNS,
    SURVEY_RESPONSES_DESCRIPTION,
    SURVEY_RESPONSES_TABLE,
)
from usage_pipeline.warehouse import table_schema

__all__ = [
    "SURVEY_FILES_TABLE",
    "SURVEY_RESPONSES_KEY",
    "SURVEY_RESPONSES_TABLE",
    "SURVEY_TABLE_ASSETS",
    "SurveyIngestConfig",
    "survey_responses",
]

SURVEY_RESPONSES_KEY = dg.AssetKey(["raw", "survey_responses"])
SURVEY_TABLE_ASSETS = {SURVEY_RESPONSES_TABLE: SURVEY_RESPONSES_KEY, SURVEY_FILES_TABLE: SURVEY_RESPONSES_KEY}


class SurveyIngestConfig(dg.Config):
    """Run options of the survey ingestion."""

    force: bool = False
    """Ingest every file again, even those whose content was already ingested (after a change of mapping)."""


@dg.asset(
    key=SURVEY_RESPONSES_KEY,
    deps=[RAW_SNAPSHOT_KEY],  # answers name followed datasets: read them after the day's snapshot
    group_name="raw",
    pool=WAREHOUSE_POOL,
    kinds={"python", "duckdb"},
    description=(
        f"{SURVEY_RESPONSES_DESCRIPTION} Reads $USAGE_DATA_DIR/surveys/{CONFIG_FILE}; each new or changed file (by "
        "SHA-256) replaces that file's responses in one transaction. A malformed file is rejected whole "
        f"(warning, and its rows and columns at fault in {SURVEY_FILES_TABLE}) and keeps its previous "
        "responses; a malformed surveys.yaml fails the run."
    ),
    metadata={
        "tables": dg.MetadataValue.json([SURVEY_RESPONSES_TABLE, SURVEY_FILES_TABLE]),
        "dagster/column_schema": table_schema(SURVEY_RESPONSES_COLUMNS),
    },
)
def survey_responses(
    context: dg.AssetExecutionContext, config: SurveyIngestConfig, warehouse: DuckDBResource, data_dir: DataDir
) -> dg.MaterializeResult:
    """Ingest the pending survey files; rejected files are warnings, not failures."""
    surveys_dir = data_dir.surveys_dir
    salt = os.environ.get(SALT_ENV) or None
    with warehouse.get_connection() as conn:
        try:
            classifier = load_classifier(data_dir)
            run = ingest_surveys(conn, surveys_dir, salt, classifier=classifier, force=config.force)
        except SurveyConfigError as error:
            raise dg.Failure(description=str(error)) from None
        total = conn.execute(f"SELECT count(*) FROM {SURVEY_RESPONSES_TABLE}").fetchone()[0]
    if run.config is None:
        context.log.info(f"no {surveys_dir / CONFIG_FILE}: no survey to ingest")
    for outcome in run.outcomes:
        if outcome.status == "rejected":
            context.log.warning(outcome.error or outcome.file)
        elif outcome.status == "ingested":
            replaced = f", replacing content {outcome.replaced[:12]}" if outcome.replaced else ""
            context.log.info(f"{outcome.file}: {outcome.responses} responses ingested ({outcome.reading}{replaced})")
    counts = {status: run.count(status) for status in ("ingested", "rejected", "unchanged")}
    context.log.info(f"survey files: {counts}; {total} responses in {SURVEY_RESPONSES_TABLE}")
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": total,
            "files": dg.MetadataValue.json({o.file: o.as_metadata() for o in run.outcomes}),
            **{f"files_{status}": count for status, count in counts.items()},
            "responses_ingested": sum(o.responses for o in run.outcomes if o.status == "ingested"),
        }
    )
