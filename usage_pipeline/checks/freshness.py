"""The freshness check: a standalone check on the raw snapshot, scheduled on its own every day."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from usage_pipeline.checks.raw import SNAPSHOTS_FRESH, freshness_check, local_now
from usage_pipeline.checks.validation import RunScope, record_outcomes, run_check, validator_for
from usage_pipeline.ingest.assets import RAW_SNAPSHOT_KEY
from usage_pipeline.ingest.partitions import datasets_partitions
from usage_pipeline.warehouse import create_warehouse_tables

FRESHNESS_JOB_NAME = "freshness_check"


def build_freshness(expected_by_hour: int, timezone: str) -> tuple[dg.AssetChecksDefinition, dg.ScheduleDefinition]:
    """The check, and the schedule that evaluates it at ``expected_by_hour`` every day."""
    check = freshness_check(expected_by_hour, timezone)

    @dg.asset_check(asset=RAW_SNAPSHOT_KEY, name=SNAPSHOTS_FRESH, blocking=False, description=check.description)
    def snapshots_fresh(context: dg.AssetCheckExecutionContext, warehouse: DuckDBResource) -> dg.AssetCheckResult:
        now = local_now(timezone)
        if now.hour < expected_by_hour:
            return dg.AssetCheckResult(
                passed=True,
                severity=check.severity,
                metadata={"note": f"not evaluated before {expected_by_hour}:00 {timezone}"},
            )
        keys = tuple(context.instance.get_dynamic_partitions(datasets_partitions.name))
        scope = RunScope(context.run_id, now.date(), keys)
        with warehouse.get_connection() as conn:
            create_warehouse_tables(conn)
            outcome = run_check(conn, validator_for(context.run_id), check, RAW_SNAPSHOT_KEY.to_user_string(), scope)
            record_outcomes(conn, [outcome], scope)
        return outcome.result(RAW_SNAPSHOT_KEY)

    job = dg.define_asset_job(FRESHNESS_JOB_NAME, selection=dg.AssetSelection.checks(snapshots_fresh))
    schedule = dg.ScheduleDefinition(
        job=job,
        cron_schedule=f"0 {expected_by_hour} * * *",
        execution_timezone=timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Warn when followed datasets have no snapshot for today.",
    )
    return snapshots_fresh, schedule
