"""Dagster on PostgreSQL (deploy/dagster.yaml) and the PostgreSQL copy for BI tools, on a throwaway server.

Skipped, with the reason, where PostgreSQL's server binaries are missing; `.ci/run` sets USAGE_REQUIRE_POSTGRES=1
so that CI fails instead of skipping.
"""

import datetime as dt
import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb
import psycopg2
import pytest
from dagster_postgres import PostgresRunStorage

from usage_pipeline import cli
from usage_pipeline.definitions import build_definitions
from usage_pipeline.demo.portal_server import PortalServer
from usage_pipeline.demo.postgres_server import PostgresServer, postgres_available
from usage_pipeline.demo.world import advance_day, generate_world
from usage_pipeline.ingest.schedules import DAILY_JOB_NAME
from usage_pipeline.publish_postgres import PostgresPublicationError, publish_to_postgres, redact
from usage_pipeline.settings import Settings
from usage_pipeline_tests.conftest import portal_environment
from usage_pipeline_tests.test_published_snapshot import DAYS, SNAPSHOT, WORLD_DAY, fingerprint

DEPLOY = Path(__file__).parents[1] / "deploy"
WHY_NOT = postgres_available()
if WHY_NOT and os.environ.get("USAGE_REQUIRE_POSTGRES") == "1":
    raise RuntimeError(f"USAGE_REQUIRE_POSTGRES=1 but no PostgreSQL server can start here: {WHY_NOT}")
pytestmark = pytest.mark.skipif(WHY_NOT is not None, reason=f"PostgreSQL tests: {WHY_NOT}")


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with PostgresServer() as pg:
        yield pg


def query(url: str, sql: str, args: tuple = ()) -> list[tuple]:
    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(sql, args)
        rows = cursor.fetchall()
    conn.close()
    return rows


def test_dagster_on_postgres_publishes_what_sqlite_publishes(
    server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """deploy/dagster.yaml copied into DAGSTER_HOME: day 1 by `usage-pipeline refresh`, day 2 by the daily
    schedule's tick, both on PostgreSQL; the published tables are those the SQLite instance published (the
    fingerprint test_published_snapshot.py recorded), and the BI copy in PostgreSQL holds the same rows."""
    server.create_database("dagster")
    bi = server.create_database("bi")
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    world = generate_world(3, 6, seed=5, today=WORLD_DAY)
    with PortalServer(world) as portal:
        slugs = [organization["slug"] for organization in world.organizations.values()]
        environment = portal_environment(portal.url, tmp_path / "data", slugs, ()) | {
            "DAGSTER_HOME": str(home),
            "DAGSTER_PG_HOST": server.host,
            "DAGSTER_PG_PORT": str(server.port),
            "DAGSTER_PG_USERNAME": "postgres",
            "DAGSTER_PG_PASSWORD": "unused (trust)",
            "DAGSTER_PG_DB": "dagster",
            "USAGE_PUBLISH_POSTGRES_URL": bi,
        }
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        assert cli.main(["refresh", "--date", DAYS[0].isoformat()]) == 0
        advance_day(world, seed=1)

        instance = dg.DagsterInstance.get()
        assert isinstance(instance.run_storage, PostgresRunStorage)
        definitions = build_definitions(Settings.from_env())
        tick_time = dt.datetime.combine(DAYS[1], dt.time(7, 30), ZoneInfo("Europe/Paris"))
        schedule = definitions.resolve_schedule_def("daily_refresh_schedule")
        tick = schedule.evaluate_tick(dg.build_schedule_context(instance=instance, scheduled_execution_time=tick_time))
        (request,) = tick.run_requests
        result = definitions.resolve_job_def(DAILY_JOB_NAME).execute_in_process(instance=instance, tags=request.tags)
        assert result.success
        tables = fingerprint(tmp_path / "data" / "published" / "usage.duckdb", portal.url)
    recorded = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    assert [name for name in tables if tables[name] != recorded.get(name)] == []
    runs = instance.get_runs()
    assert len(runs) == 2 and {run.status for run in runs} == {dg.DagsterRunStatus.SUCCESS}
    in_postgres = dict(query(bi, "SELECT relname, n_live_tup FROM pg_stat_user_tables WHERE schemaname = 'reporting'"))
    for name in tables:
        assert query(bi, f"SELECT count(*) FROM reporting.{name}") == [(tables[name]["rows"],)], name
    assert set(in_postgres) == set(tables) | {"quality_results"}


def _published(path: Path, rows: int) -> Path:
    """A published copy with one table of ``rows`` rows, of every column type the reporting tables use."""
    path.unlink(missing_ok=True)
    with duckdb.connect(str(path)) as conn:
        conn.execute("CREATE SCHEMA reporting")
        conn.execute(
            f"""CREATE TABLE reporting.usage AS SELECT i::BIGINT AS id, 'jeu «' || i || '», "quoted", a\\b' AS title,
            i % 2 = 0 AS even, DATE '2026-11-01' + i::INTEGER AS day, TIMESTAMPTZ '2026-11-01 08:00:00+00' AS at,
            i / 3 AS ratio, ['a', 'b"c', NULL][1:(i % 3)] AS tags, '{{"k": 1}}'::JSON AS payload,
            CASE WHEN i = 0 THEN NULL ELSE 'x' END AS maybe
            FROM range({rows}) AS r(i)"""
        )
        conn.execute("COMMENT ON TABLE reporting.usage IS 'One row per thing.'")
        conn.execute("COMMENT ON COLUMN reporting.usage.title IS 'Its title.'")
    return path


USAGE = SimpleNamespace(name="usage", grain=("id",))  # the model attributes the publication reads


def test_the_bi_copy_is_swapped_in_one_transaction_and_keeps_its_grants(server: PostgresServer, tmp_path: Path) -> None:
    url = server.create_database("swap")
    publish_to_postgres(_published(tmp_path / "usage.duckdb", 3), url, [USAGE])
    query(url, "CREATE ROLE bi_reader LOGIN; GRANT USAGE ON SCHEMA reporting TO bi_reader; "
               "GRANT SELECT ON reporting.usage TO bi_reader; SELECT 1")  # fmt: skip
    assert query(url, "SELECT id, title, even, day, tags, payload, maybe FROM reporting.usage ORDER BY id") == [
        (0, 'jeu «0», "quoted", a\\b', True, dt.date(2026, 11, 1), [], {"k": 1}, None),
        (1, 'jeu «1», "quoted", a\\b', False, dt.date(2026, 11, 2), ["a"], {"k": 1}, "x"),
        (2, 'jeu «2», "quoted", a\\b', True, dt.date(2026, 11, 3), ["a", 'b"c'], {"k": 1}, "x"),
    ]
    comments = "SELECT obj_description('reporting.usage'::regclass), col_description('reporting.usage'::regclass, 2)"
    assert query(url, comments) == [("One row per thing.", "Its title.")]
    key = (
        "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) "
        "WHERE i.indrelid = 'reporting.usage'::regclass AND i.indisprimary"
    )
    assert query(url, key) == [("id",)]

    # A reader polls while the next publication loads 20,000 rows: it sees 3 rows, then 20,000, never anything else.
    reader_url = server.url_of("swap", user="bi_reader")
    seen: list[int | str] = []
    done = threading.Event()

    def read() -> None:  # a BI tool's queries, each its own transaction
        conn = psycopg2.connect(reader_url)
        conn.autocommit = True
        with closing(conn), conn.cursor() as cursor:
            while not done.is_set():
                try:
                    cursor.execute("SELECT count(*) FROM reporting.usage")
                    seen.append(cursor.fetchone()[0])
                except psycopg2.Error as error:
                    seen.append(str(error))

    reader = threading.Thread(target=read)
    reader.start()
    time.sleep(0.2)
    publish_to_postgres(
        _published(tmp_path / "usage.duckdb", 20_000), url, [USAGE], before_swap=lambda: time.sleep(0.5)
    )
    time.sleep(0.2)
    done.set()
    reader.join()
    assert set(seen) == {3, 20_000} and seen.index(20_000) > seen.index(3)
    assert query(reader_url, "SELECT count(*) FROM reporting.usage") == [(20_000,)], "the reader's grant was kept"

    # A publication failing half-way leaves the previous tables as they were.
    def fail() -> None:
        raise psycopg2.OperationalError("the server went away")

    with pytest.raises(PostgresPublicationError, match="the server went away"):
        publish_to_postgres(_published(tmp_path / "usage.duckdb", 5), url, [USAGE], before_swap=fail)
    assert query(url, "SELECT count(*) FROM reporting.usage") == [(20_000,)]
    assert query(url, "SELECT count(*) FROM information_schema.schemata WHERE schema_name = 'reporting_next'") == [(0,)]
    assert redact("postgresql://bi:s3cret@db:5432/x") == "postgresql://bi@db:5432/x"
