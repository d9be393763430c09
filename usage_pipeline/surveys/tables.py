"""The survey tables of the warehouse: one row per file version seen, one row per response ingested."""

import duckdb

from usage_pipeline.warehouse import Column, comment_table

SURVEY_FILES_TABLE = "raw.survey_files"
SURVEY_RESPONSES_TABLE = "raw.survey_responses"

SURVEY_FILES_DESCRIPTION = (
    "One row per survey file and content (SHA-256) the pipeline tried: ingested, or rejected with the rows and "
    "columns at fault. A file's current responses are those of its latest ingested content (the one in "
    "raw.survey_responses); a rejected content never replaced them."
)
SURVEY_FILES_COLUMNS = {
    "file": Column("VARCHAR", "The file's path in the surveys folder ($USAGE_DATA_DIR/surveys), '/'-separated."),
    "content_hash": Column("VARCHAR", "SHA-256 (hex) of the file's bytes: one version of the file."),
    "status": Column(
        "VARCHAR", "ingested (its responses replaced the file's previous ones) or rejected (malformed: kept nothing)."
    ),
    "responses": Column("INTEGER", "Responses ingested from this content (0 when rejected)."),
    "error": Column(
        "VARCHAR", "Why the content was rejected: the file, the rows (header = row 1) and columns at fault; else null."
    ),
    "seen_at": Column("TIMESTAMP WITH TIME ZONE", "When this content was last ingested or rejected."),
}

SURVEY_RESPONSES_DESCRIPTION = (
    "One row per answer to a producer's survey of its reusers, from the CSV/XLSX files of the surveys folder "
    "described by surveys.yaml: the dataset it is about, when, the satisfaction, the needs with their theme. "
    "Only the latest ingested content of each file; e-mails are pseudonymized (never stored)."
)
SURVEY_RESPONSES_COLUMNS = {
    "file": Column("VARCHAR", "The survey file the answer comes from (path in the surveys folder)."),
    "content_hash": Column("VARCHAR", "SHA-256 of the file content the answer was read from."),
    "row_number": Column("INTEGER", "The answer's row in the file, as in a spreadsheet (header = row 1)."),
    "dataset_id": Column("VARCHAR", "data.gouv.fr id of the followed dataset the answer is about."),
    "submitted_at": Column(
        "TIMESTAMP WITH TIME ZONE", "When the answer was submitted (times without offset read as Europe/Paris)."
    ),
    "satisfaction": Column("INTEGER", "Satisfaction from 1 to 5; null when not answered."),
    "needs": Column("VARCHAR", "What the reuser says is missing (free text; e-mail addresses masked); null if blank."),
    "needs_theme": Column(
        "VARCHAR", "Theme of the needs (accessibility, freshness, reliability, usability, other); null if blank."
    ),
    "needs_evidence": Column("VARCHAR[]", "The words of the needs that decided the theme."),
    "reuse_type": Column("VARCHAR", "The kind of use the reuser declares (as answered); null when not mapped."),
    "respondent_organization": Column("VARCHAR", "The respondent's organization (as answered)."),
    "respondent_hash": Column(
        "VARCHAR", "HMAC-SHA256 of the respondent's e-mail (salt USAGE_PSEUDONYM_SALT): links a respondent's answers."
    ),
    "ingested_at": Column("TIMESTAMP WITH TIME ZONE", "When the file content was ingested."),
}


def create_survey_tables(conn: duckdb.DuckDBPyConnection) -> None:
    """Create raw.survey_files and raw.survey_responses if missing, with their catalog comments."""
    conn.execute("CREATE SCHEMA IF NOT EXISTS raw")
    for table, description, columns in (
        (SURVEY_FILES_TABLE, SURVEY_FILES_DESCRIPTION, SURVEY_FILES_COLUMNS),
        (SURVEY_RESPONSES_TABLE, SURVEY_RESPONSES_DESCRIPTION, SURVEY_RESPONSES_COLUMNS),
    ):
        definition = ", ".join(f"{name} {column.type}" for name, column in columns.items())
        conn.execute(f"CREATE TABLE IF NOT EXISTS {table} ({definition})")
        comment_table(conn, table, description, columns)
