"""Publication to PostgreSQL for BI tools that talk to it natively (USAGE_PUBLISH_POSTGRES_URL).

After each successful publication, the published DuckDB copy's reporting tables are loaded into a staging schema
and moved into schema ``reporting`` in ONE transaction: a reader sees the previous tables or the new ones, never a
half-written one (a reader in the middle of a query keeps the old table until it is done; the move waits for it,
5 minutes at most),
and a failure rolls everything back, the previous tables untouched. Same tables, columns and comments as the
DuckDB copy, a primary key where the table's grain has one; the SELECT grants of each table are given again to
the new one, so a read-only role keeps reading (docs: "Deploying" in the README).
"""

import io
import re
from collections.abc import Callable
from contextlib import closing
from pathlib import Path
from urllib.parse import urlsplit

import dagster as dg
import duckdb
import psycopg2
from psycopg2 import sql

from usage_pipeline.data_dir import DataDir
from usage_pipeline.models import Model
from usage_pipeline.publish import PUBLISHED_KEY, PUBLISHED_SCHEMA

POSTGRES_KEY = dg.AssetKey(["published", "postgres"])
POSTGRES_PUBLISHED = "postgres_published"
STAGING_SCHEMA = "reporting_next"
LOCK_TIMEOUT = "5min"  # how long the swap waits for readers' transactions before giving up (tables kept)
_SCALARS = {
    "VARCHAR": "text",
    "BIGINT": "bigint",
    "INTEGER": "integer",
    "SMALLINT": "smallint",
    "HUGEINT": "numeric",
    "DOUBLE": "double precision",
    "FLOAT": "real",
    "BOOLEAN": "boolean",
    "DATE": "date",
    "TIMESTAMP": "timestamp",
    "TIMESTAMP WITH TIME ZONE": "timestamptz",
    "JSON": "jsonb",
}


class PostgresPublicationError(RuntimeError):
    """The PostgreSQL copy could not be written; the previous one is untouched."""


def postgres_type(duck_type: str) -> str:
    """The PostgreSQL type of a DuckDB column type (``VARCHAR[]`` → ``text[]``, ``DECIMAL(9,2)`` → ``numeric(9,2)``)."""
    if duck_type.endswith("[]"):
        return postgres_type(duck_type[:-2]) + "[]"
    if match := re.fullmatch(r"DECIMAL\((\d+),(\d+)\)", duck_type):
        return f"numeric({match[1]},{match[2]})"
    if duck_type not in _SCALARS:
        raise PostgresPublicationError(f"no PostgreSQL type for DuckDB's {duck_type}")
    return _SCALARS[duck_type]


def _csv_expression(column: str, duck_type: str) -> str:
    """The column as PostgreSQL's CSV input reads it: lists as array literals ``{"a","b"}``."""
    quoted = f'"{column}"'
    if not duck_type.endswith("[]"):
        return quoted
    element = "'\"' || replace(replace(x::VARCHAR, '\\', '\\\\'), '\"', '\\\"') || '\"'"
    array = f"'{{' || array_to_string(list_transform({quoted}, x -> {element}), ',') || '}}'"
    return f"CASE WHEN {quoted} IS NULL THEN NULL ELSE {array} END AS {quoted}"


def _catalog(duck: duckdb.DuckDBPyConnection, table: str) -> tuple[str | None, list[tuple[str, str, str | None]]]:
    """The table's comment and its columns (name, DuckDB type, comment), in order."""
    (comment,) = duck.execute(
        "SELECT comment FROM duckdb_tables() WHERE schema_name = ? AND table_name = ?", [PUBLISHED_SCHEMA, table]
    ).fetchone()
    columns = duck.execute(
        "SELECT column_name, data_type, comment FROM duckdb_columns() WHERE schema_name = ? AND table_name = ? "
        "ORDER BY column_index",
        [PUBLISHED_SCHEMA, table],
    ).fetchall()
    return comment, columns


def _load_table(duck: duckdb.DuckDBPyConnection, cursor: psycopg2.extensions.cursor, model: Model) -> int:
    """Create and fill ``reporting_next.<table>`` with its comments and primary key; returns its rows."""
    comment, columns = _catalog(duck, model.name)
    target = sql.Identifier(STAGING_SCHEMA, model.name)
    cursor.execute(
        sql.SQL("CREATE TABLE {} ({})").format(
            target,
            sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(postgres_type(kind))) for name, kind, _ in columns
            ),
        )
    )
    select = ", ".join(_csv_expression(name, kind) for name, kind, _ in columns)
    frame = duck.execute(f"SELECT {select} FROM {PUBLISHED_SCHEMA}.{model.name}").pl()
    buffer = io.BytesIO()
    frame.write_csv(buffer, include_header=False, null_value="", quote_style="non_numeric")
    buffer.seek(0)
    cursor.copy_expert(sql.SQL("COPY {} FROM STDIN WITH (FORMAT csv)").format(target).as_string(cursor), buffer)
    cursor.execute(sql.SQL("COMMENT ON TABLE {} IS %s").format(target), [comment])
    for name, _, column_comment in columns:
        cursor.execute(sql.SQL("COMMENT ON COLUMN {}.{} IS %s").format(target, sql.Identifier(name)), [column_comment])
    if model.grain:
        cursor.execute("SAVEPOINT primary_key")
        try:
            cursor.execute(
                sql.SQL("ALTER TABLE {} ADD PRIMARY KEY ({})").format(
                    target, sql.SQL(", ").join(map(sql.Identifier, model.grain))
                )
            )
        except psycopg2.Error:  # a grain column with nulls: no primary key, the table still lands
            cursor.execute("ROLLBACK TO SAVEPOINT primary_key")
    return len(frame)


def _swap(cursor: psycopg2.extensions.cursor, tables: list[str]) -> None:
    """Drop every table of schema reporting, move the staged ones in, give their SELECT grants again."""
    cursor.execute(
        "SELECT table_name, grantee, privilege_type FROM information_schema.role_table_grants "
        "WHERE table_schema = 'reporting' AND grantee <> current_user"
    )
    grants = cursor.fetchall()
    cursor.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = 'reporting'")
    for (table,) in cursor.fetchall():  # every previous table, those no longer published included
        cursor.execute(sql.SQL("DROP TABLE {} CASCADE").format(sql.Identifier("reporting", table)))
    for table in tables:
        cursor.execute(sql.SQL("ALTER TABLE {} SET SCHEMA reporting").format(sql.Identifier(STAGING_SCHEMA, table)))
    for table, grantee, privilege in grants:
        if table in tables:
            cursor.execute(
                sql.SQL("GRANT {} ON {} TO {}").format(
                    sql.SQL(privilege), sql.Identifier("reporting", table), sql.Identifier(grantee)
                )
            )
    cursor.execute(sql.SQL("DROP SCHEMA {}").format(sql.Identifier(STAGING_SCHEMA)))


def publish_to_postgres(
    published_db: Path, url: str, models: list[Model], before_swap: Callable[[], None] | None = None
) -> dict[str, int]:
    """Replace schema ``reporting`` of ``url`` with the published copy's tables in one transaction; returns rows
    per table. ``before_swap`` runs once every table is loaded, before the move (the tests interrupt there)."""
    rows: dict[str, int] = {}
    try:
        with (
            duckdb.connect(str(published_db), read_only=True) as duck,
            closing(psycopg2.connect(url)) as pg,
            pg,  # one transaction: committed if the block ends without error, else rolled back
            pg.cursor() as cursor,
        ):
            cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")  # a reader's endless transaction
            cursor.execute("CREATE SCHEMA IF NOT EXISTS reporting")
            cursor.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(STAGING_SCHEMA)))
            cursor.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(STAGING_SCHEMA)))
            for model in models:
                rows[model.name] = _load_table(duck, cursor, model)
            if before_swap is not None:
                before_swap()
            _swap(cursor, list(rows))
    except (psycopg2.Error, duckdb.Error) as error:
        raise PostgresPublicationError(f"{redact(url)}: {' '.join(str(error).split())}") from None
    return rows


def redact(url: str) -> str:
    """The URL without its password."""
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    if parts.port:
        netloc += f":{parts.port}"
    return parts._replace(netloc=netloc).geturl()


class PostgresPublication(dg.ConfigurableResource):
    """Where the reporting tables are published for PostgreSQL-speaking BI tools (USAGE_PUBLISH_POSTGRES_URL)."""

    url: str | None = None


def build_postgres_asset(models: list[Model]) -> dg.AssetsDefinition:
    """The asset copying the published tables to PostgreSQL; without a URL it does nothing."""
    reporting = [model for model in models if model.schema == PUBLISHED_SCHEMA]

    @dg.asset(
        key=POSTGRES_KEY,
        deps=[PUBLISHED_KEY],
        group_name="published",
        kinds={"postgres"},
        check_specs=[
            dg.AssetCheckSpec(
                POSTGRES_PUBLISHED, asset=POSTGRES_KEY, description="USAGE_PUBLISH_POSTGRES_URL's reporting is current"
            )
        ],
        description=(
            "The published reporting tables in PostgreSQL (USAGE_PUBLISH_POSTGRES_URL), schema reporting: the same "
            "tables, columns and comments as published/usage.duckdb, primary keys on the grains, replaced in one "
            "transaction. A failure leaves the previous tables and is a warning, never a failed run."
        ),
    )
    def published_postgres(context: dg.AssetExecutionContext, data_dir: DataDir, postgres: PostgresPublication):
        if not postgres.url:
            yield dg.MaterializeResult(metadata={"skipped": "no USAGE_PUBLISH_POSTGRES_URL"})
            yield dg.AssetCheckResult(check_name=POSTGRES_PUBLISHED, passed=True, metadata={"skipped": True})
            return
        try:
            rows = publish_to_postgres(data_dir.published_database, postgres.url, reporting)
        except PostgresPublicationError as error:
            context.log.warning(f"not published to PostgreSQL, the previous tables are kept: {error}")
            yield dg.MaterializeResult(metadata={"error": dg.MetadataValue.text(str(error))})
            yield dg.AssetCheckResult(
                check_name=POSTGRES_PUBLISHED, passed=False, severity=dg.AssetCheckSeverity.WARN,
                metadata={"error": dg.MetadataValue.text(str(error))},
            )  # fmt: skip
            return
        context.log.info(f"published {len(rows)} tables to {redact(postgres.url)}, schema reporting")
        yield dg.MaterializeResult(metadata={"rows": dg.MetadataValue.json(rows), "database": redact(postgres.url)})
        yield dg.AssetCheckResult(check_name=POSTGRES_PUBLISHED, passed=True)

    return published_postgres
