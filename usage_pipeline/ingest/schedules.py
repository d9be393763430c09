"""The daily schedule: one run that snapshots every followed dataset for today."""

import datetime as dt

import dagster as dg

from usage_pipeline.ingest.partitions import datasets_partitions, day_range_tags

DAILY_JOB_NAME = "daily_refresh"


def daily_run_request(instance: dg.DagsterInstance, date_key: str) -> dg.RunRequest | dg.SkipReason:
    """A single run over all registered datasets for ``date_key`` (YYYY-MM-DD)."""
    keys = instance.get_dynamic_partitions(datasets_partitions.name)
    if not keys:
        return dg.SkipReason("no dataset registered yet: the discovery sensor or `usage-pipeline refresh` adds them")
    return dg.RunRequest(run_key=f"daily-{date_key}", tags=day_range_tags(keys, dt.date.fromisoformat(date_key)))


def build_daily_schedule(timezone: str) -> dg.ScheduleDefinition:
    """Every morning at 07:30 in ``timezone`` (metrics reach data.gouv.fr's objects around 06:15 + udata's update)."""

    @dg.schedule(
        job_name=DAILY_JOB_NAME,
        cron_schedule="30 7 * * *",
        execution_timezone=timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        name="daily_refresh_schedule",
    )
    def daily_refresh_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        """Every morning, materialize every dataset partition of the day, the models and the publication."""
        return daily_run_request(context.instance, context.scheduled_execution_time.date().isoformat())

    return daily_refresh_schedule
