"""Each quality check fails on a crafted bad partition, naming the right dataset, and passes on real-shaped worlds.

Every test runs on the generated world and on the real data.gouv.fr sample (see conftest.py). The spoiled dataset
is picked by what it holds (`busy_dataset`: several resources, discussions and a reuse), never by its id.
"""

import copy
import datetime as dt
from collections.abc import Callable, Iterator

import dagster as dg
import duckdb
import pytest

from usage_pipeline.checks import raw as raw_checks_module
from usage_pipeline.checks.raw import freshness_check, raw_checks
from usage_pipeline.checks.reporting import SCHEMA_MATCHES, VALUES_VALID, reporting_checks
from usage_pipeline.checks.validation import Outcome, RunScope, Validator, record_outcomes, run_check
from usage_pipeline.demo.portal_server import World
from usage_pipeline.ingest.crawl import Crawl
from usage_pipeline.ingest.records import raw_rows
from usage_pipeline.model_catalog import all_models
from usage_pipeline.warehouse import RAW_TABLES, accept_incoming, create_warehouse_tables, stage_incoming
from usage_pipeline_tests.conftest import busy_dataset, most_viewed

RUN_DATE = dt.date(2026, 11, 20)
NOW = dt.datetime(2026, 11, 20, 9, 0, tzinfo=dt.UTC)
TOLERANCE = 2  # discussion_count_tolerance


def world_crawl(world: World) -> Crawl:
    """The world as the crawl returns it: API shapes rebuilt from its entries (copies: free to spoil).

    Metrics rows are the world's (the generated world has 24 months of them); a world without any (the sample)
    gets one row per dataset.
    """
    result = Crawl()
    for dataset_id, entry in copy.deepcopy(world.entries).items():
        organization = copy.deepcopy(world.organization_of(dataset_id))
        result.organizations[organization["id"]] = organization
        result.datasets[dataset_id] = entry["dataset"] | {
            "resources": entry["resources"],
            "organization": {"id": organization["id"], "name": organization["name"]},
            "created_at": entry["dataset"]["created_at_internal"],
        }
        result.discussions[dataset_id] = [
            discussion | {"subject": {"class": "Dataset", "id": dataset_id}} for discussion in entry["discussions"]
        ]
        if entry["reuses"]:
            result.reuses[dataset_id] = [reuse | {"datasets": [{"id": dataset_id}]} for reuse in entry["reuses"]]
        rows = [dict(row) for row in world.metrics_rows if row["dataset_id"] == dataset_id]
        result.metrics[dataset_id] = rows or [
            {"__id": 1, "dataset_id": dataset_id, "organization_id": organization["id"], "metric_month": "2026-10",
             "monthly_visit": 10, "monthly_download_resource": None}
        ]  # fmt: skip
    return result


@pytest.fixture
def crawl(world: World) -> Crawl:
    return world_crawl(world)


@pytest.fixture
def target(world: World) -> str:
    """The dataset the tests spoil."""
    return busy_dataset(world)


@pytest.fixture
def other(world: World, target: str) -> str:
    """Another dataset: the most viewed one besides the target."""
    return most_viewed(world, besides=[target])


@pytest.fixture
def conn() -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect() as connection:
        create_warehouse_tables(connection)
        yield connection


def scope_of(result: Crawl, run_id: str = "run-1") -> RunScope:
    return RunScope(run_id, RUN_DATE, tuple(result.datasets), now=NOW)


def evaluate(conn: duckdb.DuckDBPyConnection, result: Crawl, check_name: str, **rows_options: object) -> Outcome:
    """Stage the crawl as incoming rows and run one raw check on them."""
    frames = raw_rows(result, RUN_DATE, NOW)
    for table in RAW_TABLES:
        stage_incoming(conn, table, frames[table.name])
    (check,) = [check for check in raw_checks(discussion_count_tolerance=TOLERANCE) if check.name == check_name]
    return run_check(conn, Validator("test"), check, "raw/udata_snapshot", scope_of(result))


def land(
    conn: duckdb.DuckDBPyConnection,
    result: Crawl,
    date: dt.date,
    rejected: dict[str, list[str]] | None = None,
    run_id: str = "run-0",
) -> dict[str, int]:
    """Write a crawl into the raw tables as the raw asset does; returns the rows quarantined per table."""
    frames = raw_rows(result, date, NOW)
    quarantined = {}
    for table in RAW_TABLES:
        stage_incoming(conn, table, frames[table.name])
        keys = list(result.organizations) if table.name == "organizations" else list(result.datasets)
        quarantined[table.name] = accept_incoming(conn, table, {date: keys}, rejected or {}, run_id)[1]
    return quarantined


def failed_expectations(outcome: Outcome) -> set[str]:
    return {failure["expectation"] for failure in outcome.failures}


def test_hard_checks_pass_on_the_world(conn: duckdb.DuckDBPyConnection, crawl: Crawl) -> None:
    for check in raw_checks(discussion_count_tolerance=TOLERANCE):
        outcome = evaluate(conn, crawl, check.name)
        if check.blocking:
            assert outcome.passed, outcome.summary()
            assert outcome.rows_checked > 0


def negative_views(result: Crawl, target: str, other: str) -> None:
    result.datasets[target]["metrics"]["views"] = -5


def missing_counter(result: Crawl, target: str, other: str) -> None:
    del result.datasets[target]["metrics"]["followers"]


def text_counter(result: Crawl, target: str, other: str) -> None:
    result.datasets[target]["metrics"]["resources_downloads"] = "beaucoup"


def foreign_payload(result: Crawl, target: str, other: str) -> None:
    result.datasets[target]["id"] = other  # a proxy or parser mixed two answers up


def malformed_created(result: Crawl, target: str, other: str) -> None:
    result.datasets[target]["created_at"] = "06/01/2021"


def future_created(result: Crawl, target: str, other: str) -> None:
    result.datasets[target]["created_at"] = "2027-01-06T17:35:53+00:00"


def bad_status(result: Crawl, target: str, other: str) -> None:
    del result.datasets[target]
    result.gone[target] = 500


def negative_resource(result: Crawl, target: str, other: str) -> None:
    result.datasets[target]["resources"][-1]["metrics"] = {"views": -1}


def resource_without_id(result: Crawl, target: str, other: str) -> None:
    del result.datasets[target]["resources"][0]["id"]


def duplicate_resource(result: Crawl, target: str, other: str) -> None:
    resources = result.datasets[target]["resources"]
    resources.append(resources[0])


def discussion_elsewhere(result: Crawl, target: str, other: str) -> None:
    result.discussions[target][0]["subject"]["id"] = other


def discussion_of_unknown_dataset(result: Crawl, target: str, other: str) -> None:
    result.discussions[UNKNOWN] = [result.discussions[target][0] | {"subject": {"id": UNKNOWN}}]


def discussion_without_messages(result: Crawl, target: str, other: str) -> None:
    result.discussions[target][1]["discussion"] = []


def discussion_from_the_future(result: Crawl, target: str, other: str) -> None:
    result.discussions[target][0]["discussion"][-1]["posted_on"] = "2030-01-01T00:00:00+00:00"


def duplicate_discussion(result: Crawl, target: str, other: str) -> None:
    result.discussions[target].append(result.discussions[target][0])


def unknown_reuse_type(result: Crawl, target: str, other: str) -> None:
    result.reuses[target][0]["type"] = "spaceship"


def reuse_of_another_dataset(result: Crawl, target: str, other: str) -> None:
    result.reuses[target][0]["datasets"] = [{"id": other}]


def reuse_without_id(result: Crawl, target: str, other: str) -> None:
    result.reuses[target][0]["id"] = None


def bad_month(result: Crawl, target: str, other: str) -> None:
    result.metrics[target][0]["metric_month"] = "2026-13"


def future_month(result: Crawl, target: str, other: str) -> None:
    result.metrics[target][0]["metric_month"] = "2027-02"


def negative_visits(result: Crawl, target: str, other: str) -> None:
    result.metrics[target][0]["monthly_visit"] = -3


def duplicate_month(result: Crawl, target: str, other: str) -> None:
    result.metrics[target].append(dict(result.metrics[target][0]))


Spoil = Callable[[Crawl, str, str], None]
TARGET = "target"  # the failing dataset is the spoiled one
UNKNOWN = "0" * 24  # a dataset the run does not follow
HARD_CASES: list[tuple[str, Spoil, str, str]] = [
    ("dataset_snapshots_valid", negative_views, "expect_column_values_to_be_between", TARGET),
    ("dataset_snapshots_valid", missing_counter, "expect_column_values_to_not_be_null", TARGET),
    ("dataset_snapshots_valid", text_counter, "expect_column_values_to_not_be_null", TARGET),
    ("dataset_snapshots_valid", foreign_payload, "expect_column_pair_values_to_be_equal", TARGET),
    ("dataset_snapshots_valid", malformed_created, "expect_column_values_to_match_regex", TARGET),
    ("dataset_snapshots_valid", future_created, "expect_column_values_to_be_between", TARGET),
    ("dataset_snapshots_valid", bad_status, "expect_column_values_to_be_in_set", TARGET),
    ("resources_valid", negative_resource, "expect_column_values_to_be_between", TARGET),
    ("resources_valid", resource_without_id, "expect_column_values_to_not_be_null", TARGET),
    ("resources_valid", duplicate_resource, "expect_compound_columns_to_be_unique", TARGET),
    ("discussions_valid", discussion_elsewhere, "expect_column_pair_values_to_be_equal", TARGET),
    ("discussions_valid", discussion_of_unknown_dataset, "expect_column_values_to_be_in_set", UNKNOWN),
    ("discussions_valid", discussion_without_messages, "expect_column_values_to_be_between", TARGET),
    ("discussions_valid", discussion_from_the_future, "expect_column_values_to_be_between", TARGET),
    ("discussions_valid", duplicate_discussion, "expect_compound_columns_to_be_unique", TARGET),
    ("reuses_valid", unknown_reuse_type, "expect_column_values_to_be_in_set", TARGET),
    ("reuses_valid", reuse_of_another_dataset, "expect_column_values_to_be_in_set", TARGET),
    ("reuses_valid", reuse_without_id, "expect_column_values_to_not_be_null", TARGET),
    ("monthly_metrics_valid", bad_month, "expect_column_values_to_match_regex", TARGET),
    ("monthly_metrics_valid", future_month, "expect_column_values_to_be_between", TARGET),
    ("monthly_metrics_valid", negative_visits, "expect_column_values_to_be_between", TARGET),
    ("monthly_metrics_valid", duplicate_month, "expect_compound_columns_to_be_unique", TARGET),
]


@pytest.mark.parametrize(
    ("check_name", "spoil", "expectation", "failing"), HARD_CASES, ids=[case[1].__name__ for case in HARD_CASES]
)
def test_hard_check_fails_and_names_the_dataset(
    conn: duckdb.DuckDBPyConnection,
    crawl: Crawl,
    target: str,
    other: str,
    check_name: str,
    spoil: Spoil,
    expectation: str,
    failing: str,
) -> None:
    dataset_id = target if failing == TARGET else failing
    spoil(crawl, target, other)
    outcome = evaluate(conn, crawl, check_name)
    assert not outcome.passed and outcome.check.blocking
    assert outcome.failing_datasets == [dataset_id]
    assert expectation in failed_expectations(outcome)
    assert all(row["dataset_id"] == dataset_id for failure in outcome.failures for row in failure["sample"])


def test_failure_metadata_shows_the_offending_value(
    conn: duckdb.DuckDBPyConnection, crawl: Crawl, target: str, other: str
) -> None:
    negative_views(crawl, target, other)
    outcome = evaluate(conn, crawl, "dataset_snapshots_valid")
    (failure,) = outcome.failures
    assert failure["kwargs"] == {"column": "views", "min_value": 0.0}
    assert failure["unexpected_count"] == 1 and failure["sample"][0]["views"] == -5
    assert "views" in outcome.summary() and target in outcome.summary()
    result = outcome.result(dg.AssetKey(["raw", "udata_snapshot"]))
    assert result.severity == dg.AssetCheckSeverity.ERROR and not result.passed
    assert result.metadata["failing_datasets"].value == [target]


def test_rejected_dataset_keeps_its_previous_rows(
    conn: duckdb.DuckDBPyConnection, world: World, target: str, other: str
) -> None:
    """A dataset failing a blocking check is quarantined; the others land; raw keeps the old rows."""
    first = world_crawl(world)
    land(conn, first, RUN_DATE, run_id="run-1")
    rerun = world_crawl(world)
    negative_views(rerun, target, other)
    rerun.datasets[other]["metrics"]["views"] += 10
    quarantined = land(conn, rerun, RUN_DATE, {target: ["dataset_snapshots_valid"]}, "run-2")
    entry = world.entries[target]
    own_rows = {  # every row of the rejected dataset that the run brought, nothing else
        "dataset_snapshots": 1,
        "discussions": len(entry["discussions"]),
        "reuses": len(entry["reuses"]),
        "metrics_monthly": len(first.metrics[target]),
    }
    assert {table: rows for table, rows in quarantined.items() if rows} == own_rows
    views = dict(conn.execute("SELECT dataset_id, payload->>'$.metrics.views' FROM raw.dataset_snapshots").fetchall())
    assert views[target] == str(entry["dataset"]["metrics"]["views"])  # the previous, valid snapshot
    assert views[other] == str(world.entries[other]["dataset"]["metrics"]["views"] + 10)
    discussions = conn.execute("SELECT count(*) FROM raw.discussions WHERE dataset_id = ?", [target]).fetchone()
    assert discussions == (len(entry["discussions"]),)
    kept = conn.execute(
        "SELECT run_id, failed_checks, payload->>'$.metrics.views' FROM quarantine.dataset_snapshots"
    ).fetchall()
    assert kept == [("run-2", ["dataset_snapshots_valid"], "-5")]


def test_soft_checks_warn_and_name_the_dataset(
    conn: duckdb.DuckDBPyConnection, world: World, target: str, other: str
) -> None:
    land(conn, world_crawl(world), RUN_DATE - dt.timedelta(days=1))
    today = world_crawl(world)
    today.datasets[other]["metrics"]["views"] -= 1000  # a reset counter
    today.datasets[other]["metrics"]["discussions"] = len(today.discussions[other]) + TOLERANCE + 1
    outcome = evaluate(conn, today, raw_checks_module.COUNTERS_NEVER_DECREASE)
    assert not outcome.passed and not outcome.check.blocking
    assert outcome.check.severity == dg.AssetCheckSeverity.WARN
    assert outcome.failing_datasets == [other]
    views = world.entries[other]["dataset"]["metrics"]["views"]
    assert outcome.failures[0]["sample"] == [
        {"dataset_id": other, "counter": "views", "current": views - 1000, "previous": views}
    ]
    counts = evaluate(conn, today, raw_checks_module.DISCUSSION_COUNTS_AGREE)
    disagreeing = {
        key
        for key, dataset in today.datasets.items()
        if abs(dataset["metrics"]["discussions"] - len(today.discussions[key])) > TOLERANCE
    }  # the sample lists at most 20 discussions of a dataset: its big ones disagree
    assert not counts.passed and other in disagreeing and target not in disagreeing
    assert set(counts.failing_datasets) == disagreeing


def test_sudden_jump_warns(conn: duckdb.DuckDBPyConnection, world: World, target: str) -> None:
    """Ten days growing by 100 views a day, then 5,000 in a day: more than 10 times the median."""
    for offset in range(10, 0, -1):
        day = world_crawl(world)
        day.datasets[target]["metrics"]["views"] += 100 * (10 - offset)
        land(conn, day, RUN_DATE - dt.timedelta(days=offset))
    today = world_crawl(world)
    today.datasets[target]["metrics"]["views"] += 900 + 5000
    outcome = evaluate(conn, today, raw_checks_module.NO_SUDDEN_JUMPS)
    assert not outcome.passed and outcome.failing_datasets == [target]
    assert outcome.failures[0]["sample"][0]["ratio"] == pytest.approx(50.0)


def test_freshness_names_datasets_without_todays_snapshot(conn: duckdb.DuckDBPyConnection, crawl: Crawl) -> None:
    land(conn, crawl, RUN_DATE)
    late = "0" * 24
    scope = RunScope("run-2", RUN_DATE, (*crawl.datasets, late), now=NOW)
    outcome = run_check(conn, Validator("fresh"), freshness_check(12, "Europe/Paris"), "raw/udata_snapshot", scope)
    assert not outcome.passed and outcome.failing_datasets == [late]
    scope = RunScope("run-2", RUN_DATE, tuple(crawl.datasets), now=NOW)
    assert run_check(conn, Validator("fresh2"), freshness_check(12, "Europe/Paris"), "raw/udata_snapshot", scope).passed


def reporting_outcomes(conn: duckdb.DuckDBPyConnection, table: str, select: str) -> dict[str, Outcome]:
    (model,) = [model for model in all_models() if model.table == table]
    conn.execute("CREATE SCHEMA IF NOT EXISTS reporting")
    conn.execute(f"CREATE OR REPLACE TABLE {table} AS {select}")
    scope = RunScope("run-r", RUN_DATE, now=NOW)
    validator = Validator("reporting")
    return {
        check.name: run_check(conn, validator, check, f"reporting/{model.name}", scope)
        for check in reporting_checks(model)
    }


DAILY_ROW = (
    "SELECT '{id}'::VARCHAR AS dataset_id, 'org'::VARCHAR AS organization_id, DATE '2026-11-19' AS date, "
    "{views}::BIGINT AS views, 1::BIGINT AS downloads, 1::BIGINT AS followers, 0::BIGINT AS reuses, "
    "0::BIGINT AS discussions, NULL::BIGINT AS views_delta, NULL::BIGINT AS downloads_delta, "
    "NULL::BIGINT AS days_since_previous"
)


def test_reporting_checks_pass_then_catch_duplicates_and_negative_values(conn: duckdb.DuckDBPyConnection) -> None:
    good = " UNION ALL ".join(DAILY_ROW.format(id=key, views=10) for key in ("a", "b"))
    outcomes = reporting_outcomes(conn, "reporting.dataset_usage_daily", good)
    assert all(outcome.passed for outcome in outcomes.values())
    bad = " UNION ALL ".join(DAILY_ROW.format(id=key, views=views) for key, views in (("a", 10), ("a", 10), ("b", -1)))
    outcome = reporting_outcomes(conn, "reporting.dataset_usage_daily", bad)[VALUES_VALID]
    assert not outcome.passed and outcome.failing_datasets == ["a", "b"]
    assert failed_expectations(outcome) == {
        "expect_compound_columns_to_be_unique",
        "expect_column_values_to_be_between",
    }


def test_reporting_schema_check_catches_a_changed_type(conn: duckdb.DuckDBPyConnection) -> None:
    changed = DAILY_ROW.format(id="a", views=10).replace("10::BIGINT AS views", "'10'::VARCHAR AS views")
    outcome = reporting_outcomes(conn, "reporting.dataset_usage_daily", changed)[SCHEMA_MATCHES]
    assert not outcome.passed
    assert outcome.failures[0]["sample"] == [
        {"column_name": "views", "column_type": "VARCHAR", "declared_type": "BIGINT"}
    ]


def test_results_are_recorded_per_check_and_failing_dataset(
    conn: duckdb.DuckDBPyConnection, crawl: Crawl, target: str, other: str
) -> None:
    negative_views(crawl, target, other)
    outcome = evaluate(conn, crawl, "dataset_snapshots_valid")
    scope = scope_of(crawl)
    assert record_outcomes(conn, [outcome], scope) == 2
    assert record_outcomes(conn, [outcome], scope) == 2  # evaluated again in the same run: replaced, not added
    rows = conn.execute(
        "SELECT dataset_id, severity, passed, observed FROM quality.check_results ORDER BY dataset_id NULLS FIRST"
    ).fetchall()
    assert [(row[0], row[1], row[2]) for row in rows] == [(None, "ERROR", False), (target, "ERROR", False)]
    assert '"views": -5' in rows[1][3]
