"""`usage-pipeline refresh | backfill | demo | tables | show | train-themes`: run the daily job, look, retrain."""

import argparse
import asyncio
import datetime as dt
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import duckdb

from usage_pipeline.browse import BrowseError, print_table, print_tables
from usage_pipeline.checks.raw import PORTAL_PARTS_FETCHED
from usage_pipeline.data_dir import DataDir
from usage_pipeline.definitions import build_definitions
from usage_pipeline.ingest.assets import RAW_SNAPSHOT_KEY
from usage_pipeline.ingest.crawl import Discovery
from usage_pipeline.ingest.partitions import datasets_partitions, day_range_tags
from usage_pipeline.ingest.producer_csv import ProducerFileError
from usage_pipeline.ingest.schedules import DAILY_JOB_NAME
from usage_pipeline.ingest.sensors import discover_datasets
from usage_pipeline.own_portals.config import load_portals
from usage_pipeline.portal.client import PortalError
from usage_pipeline.portal.resource import UdataResource
from usage_pipeline.settings import Settings, SettingsError, absolute
from usage_pipeline.surveys.config import load_config

INSTANCE_CONFIG_MARKER = "# Written by usage-pipeline."
INSTANCE_CONFIG = f"""\
{INSTANCE_CONFIG_MARKER} One writer at a time on the DuckDB warehouse, whatever launches the runs.
# Dagster's SQLite event log, each database kept open (usage_pipeline/dagster_sqlite.py): the daily run stores an
# event per followed dataset, which Dagster's default writes each with a new connection and several fsyncs.
event_log_storage:
  module: usage_pipeline.dagster_sqlite
  class: KeptOpenSqliteEventLogStorage
  config:
    base_dir: {{history}}
# Pools are enforced per run: the run queue (under the daemon) starts a run only when no other run of the
# usage_warehouse pool is in progress, and a run never waits for a slot inside a step. `usage-pipeline refresh`
# waits for (or clears, when its process is gone) the runs in progress itself. Run monitoring fails a run whose
# worker died, or that runs longer than its dagster/max_runtime tag.
concurrency:
  pools:
    default_limit: 1
    granularity: run
run_monitoring:
  enabled: true
telemetry:
  enabled: false
"""
PLANNED_EVENTS_SWITCH = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"
PROCESS_TAG = "usage_pipeline/process"  # host:pid:start time of the process executing a run started by this CLI
ACTIVE_STATUSES = (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING)


class RefreshFailed(RuntimeError):
    """The run failed; the message names the step and the error."""


@dataclass
class RefreshOutcome:
    """What a refresh did, for the summary."""

    date: dt.date
    datasets: int
    new_datasets: int
    run_id: str
    tables: dict[str, int] = field(default_factory=dict)
    gone: list[str] = field(default_factory=list)
    entries_not_active: list[str] = field(default_factory=list)
    not_fetched: list[str] = field(default_factory=list)
    # what failed warning checks said: rows of the producer's files left out, lead sources that failed
    producer_file_problems: list[str] = field(default_factory=list)


def dagster_instance(settings: Settings) -> dg.DagsterInstance:
    """The persistent Dagster instance: $DAGSTER_HOME (made absolute), by default $USAGE_DATA_DIR/dagster_home."""
    # One "planned" event per asset for the day's run, not one per (dataset, date) partition: Dagster's documented
    # switch for single-run backfills (its cost: a failed run does not mark each partition failed in the UI).
    os.environ.setdefault(PLANNED_EVENTS_SWITCH, "1")
    home = absolute(os.environ.get("DAGSTER_HOME") or settings.paths.dagster_home)
    os.environ["DAGSTER_HOME"] = str(home)  # Dagster reads it from the environment, and requires it absolute
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() or config.read_text().startswith(INSTANCE_CONFIG_MARKER):
        # ours, kept current; a dagster.yaml written by someone else is left alone
        config.write_text(INSTANCE_CONFIG.format(history=home / "history" / "runs"))
    return dg.DagsterInstance.get()


def process_signature(pid: int) -> str | None:
    """``host:pid:start`` of a live process (its start time from /proc, where there is one), None when gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, another user's
    try:
        start = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        start = "?"
    return f"{socket.gethostname()}:{pid}:{start}"


def _is_gone(run: dg.DagsterRun) -> bool:
    """Whether the process that executed a run started by this CLI on this machine no longer exists."""
    host, _, rest = run.tags.get(PROCESS_TAG, "").partition(":")
    pid, _, _ = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # started elsewhere or by the daemon: Dagster's run monitoring watches those
    return process_signature(int(pid)) != run.tags[PROCESS_TAG]  # gone, or the pid now names another process


def _describe(record: dg.RunRecord) -> str:
    run = record.dagster_run
    since = dt.datetime.fromtimestamp(record.start_time or record.create_timestamp.timestamp())
    process = run.tags.get(PROCESS_TAG, "launched by the daemon")
    return f"run {run.run_id} ({run.job_name}, {process}, since {since:%H:%M:%S})"


def settle_earlier_runs(instance: dg.DagsterInstance, wait: float, log: Callable[[str], None]) -> None:
    """Before a run: mark failed the runs left started by a process that is gone (a crash, a kill, a reboot) and
    free their pool slots; wait for the ones still alive, at most ``wait`` seconds, saying which."""
    deadline, delay = time.monotonic() + wait, 1.0
    while True:
        alive = []
        for record in instance.get_run_records(filters=dg.RunsFilter(statuses=list(ACTIVE_STATUSES))):
            run = record.dagster_run
            if _is_gone(run):
                instance.report_run_failed(run, message=f"its process ({run.tags[PROCESS_TAG]}) is gone")
                instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
                log(f"run {run.run_id} was left {run.status.value.lower()} by a process that is gone "
                    f"({run.tags[PROCESS_TAG]}): marked failed, its pool slots freed")  # fmt: skip
            else:
                alive.append(record)
        if not alive:
            return
        running = "; ".join(_describe(record) for record in alive)
        if time.monotonic() + delay > deadline:
            raise RefreshFailed(
                f"another run is still in progress on this Dagster instance after {wait:g}s "
                f"(USAGE_WAREHOUSE_LOCK_WAIT): {running}. Let it finish, or cancel it in the Dagster UI."
            )
        log(f"waiting for {running} to finish (at most {wait:g}s)")
        time.sleep(delay)
        delay = min(30.0, delay * 2)


def register_datasets(
    settings: Settings, instance: dg.DagsterInstance, *, strict: bool = False
) -> tuple[list[str], int, Discovery]:
    """Discover the followed datasets and register the new ones; returns every registered key, the new count and
    the discovery. An entry that no longer resolves is reported and left out, or, with ``strict``, an error."""
    discovery = asyncio.run(discover_datasets(UdataResource.from_settings(settings), settings.paths))
    if strict and discovery.problems:
        raise SettingsError(
            "some entries of the settings do not resolve (--strict):\n  "
            + "\n  ".join(entry.describe() for entry in discovery.problems)
        )
    for entry in discovery.problems:
        print(f"warning: {entry.describe()}", file=sys.stderr)
    known = set(instance.get_dynamic_partitions(datasets_partitions.name))
    new = [key for key in discovery.keys if key not in known]
    if new:
        instance.add_dynamic_partitions(datasets_partitions.name, new)
    return instance.get_dynamic_partitions(datasets_partitions.name), len(new), discovery


def refresh(
    settings: Settings,
    date: dt.date,
    instance: dg.DagsterInstance,
    *,
    full_metrics_history: bool = False,
    strict: bool = False,
) -> RefreshOutcome:
    """Discover, then materialize every dataset partition of ``date``, the models and the publication in one run."""
    if not settings.start_date <= date <= dt.date.today():
        raise SettingsError(
            f"--date {date} is outside the partitions: {settings.start_date} (USAGE_START_DATE) to today"
        )
    keys, new, _ = register_datasets(settings, instance, strict=strict)
    if not keys:
        raise SettingsError("no dataset to follow: set USAGE_ORGANIZATIONS and/or USAGE_DATASETS")
    job = build_definitions(settings).resolve_job_def(DAILY_JOB_NAME)
    run_config = {
        "ops": {RAW_SNAPSHOT_KEY.to_python_identifier(): {"config": {"full_metrics_history": full_metrics_history}}},
        "loggers": {"console": {"config": {"log_level": os.environ.get("USAGE_LOG_LEVEL", "INFO")}}},
    }
    settle_earlier_runs(instance, settings.warehouse_lock_wait, lambda message: print(message, file=sys.stderr))
    tags = {**day_range_tags(keys, date), PROCESS_TAG: process_signature(os.getpid())}
    result = job.execute_in_process(instance=instance, tags=tags, run_config=run_config, raise_on_error=False)
    if not result.success:
        failures = [
            f"{event.step_key}: {_root_cause(event.step_failure_data.error)}"
            for event in result.all_events
            if event.is_step_failure
        ]
        failures += [
            _failed_check(evaluation)
            for evaluation in result.get_asset_check_evaluations()
            if not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
        ]
        raise RefreshFailed(
            f"run {result.run_id} failed for {date}; nothing was published:\n  "
            + "\n  ".join(failures or ["unknown error"])
        )
    outcome = RefreshOutcome(date=date, datasets=len(keys), new_datasets=new, run_id=result.run_id)
    for evaluation in result.get_asset_check_evaluations():
        said = evaluation.metadata.get("error") or evaluation.metadata.get("problems")
        if not evaluation.passed and said:
            text = said.value if isinstance(said.value, str) else json.dumps(said.value, ensure_ascii=False)
            outcome.producer_file_problems.append(f"{evaluation.check_name}:\n    " + text.replace("\n", "\n    "))
    with duckdb.connect(str(settings.paths.published_database), read_only=True) as published:
        for (table,) in published.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'reporting' ORDER BY 1"
        ).fetchall():
            outcome.tables[table] = published.execute(f"SELECT count(*) FROM reporting.{table}").fetchone()[0]
        outcome.gone = [
            row[0]
            for row in published.execute(
                "SELECT dataset_id FROM reporting.datasets WHERE status = 'gone' ORDER BY 1"
            ).fetchall()
        ]
        outcome.entries_not_active = [
            f"{kind} {configured!r}: {status}" + (f" ({detail})" if detail else "")
            for kind, configured, status, detail in published.execute(
                "SELECT kind, configured_as, status, detail FROM reporting.followed_entries "
                "WHERE status <> 'active' AND still_configured ORDER BY kind, configured_as"
            ).fetchall()
        ]
        outcome.not_fetched = [
            f"{row['part']} of {row['subject']}: {row['url']} ({row['http_status'] or 'no answer'})"
            for (observed,) in published.execute(
                "SELECT observed FROM reporting.quality_results WHERE run_id = ? AND check_name = ? "
                "AND dataset_id IS NOT NULL ORDER BY dataset_id",
                [result.run_id, PORTAL_PARTS_FETCHED],
            ).fetchall()
            for row in json.loads(observed)
        ]
    return outcome


def _root_cause(error: "dg.SerializableErrorInfo | None") -> str:
    """The innermost error message: the one that says what went wrong, not that a step failed."""
    while error is not None and error.cause is not None:
        error = error.cause
    return error.message.strip() if error else "unknown error"


def _failed_check(evaluation: dg.AssetCheckEvaluation) -> str:
    """A blocking check that failed: its name, the datasets, the expectations and a few offending rows."""
    metadata = {key: value.value for key, value in evaluation.metadata.items()}
    lines = [
        f"check {evaluation.check_name} on {evaluation.asset_key.to_user_string()} failed for datasets "
        f"{metadata.get('failing_datasets', [])}"
    ]
    for failure in metadata.get("failed_expectations", []):
        lines.append(
            f"    {failure['expectation']} {failure['kwargs']}: {failure['unexpected_count']} rows, "
            f"e.g. {failure['sample'][:3]}"
        )
    return "\n".join(lines)


def print_summary(outcome: RefreshOutcome, settings: Settings) -> None:
    print(f"refresh {outcome.date}: {outcome.datasets} datasets ({outcome.new_datasets} new), run {outcome.run_id}")
    if outcome.gone:
        print(f"  gone (404/410): {', '.join(outcome.gone)}")
    for entry in outcome.entries_not_active:
        print(f"  WARNING, a setting no longer resolves: {entry}")
    if outcome.not_fetched:
        print(f"  WARNING, {len(outcome.not_fetched)} parts of the portal did not answer after every retry; they keep "
              "their previous rows and are fetched again on the next run:")  # fmt: skip
        for part in outcome.not_fetched[:20]:
            print(f"    {part}")
    for problem in outcome.producer_file_problems:
        print(f"  WARNING, {problem}")
    print(f"  published to {settings.paths.published_database} and {settings.paths.parquet_dir}/:")
    for table, rows in outcome.tables.items():
        print(f"    reporting.{table}: {rows} rows")


def check_config(settings: Settings) -> int:
    """`usage-pipeline config check`: every setting readable, the producer's files well-formed, every entry of
    USAGE_ORGANIZATIONS and USAGE_DATASETS answering; prints what it found, returns 1 on any problem."""
    problems = []
    for name, load in (("portals.yaml", load_portals), ("surveys.yaml", load_config)):
        path = settings.paths.portals_file if name == "portals.yaml" else settings.paths.surveys_dir
        try:
            loaded = load(path)
            print(f"{name}: " + ("none" if not loaded else "ok"))
        except ValueError as error:
            problems.append(f"{name}: {error}")
    discovery = asyncio.run(discover_datasets(UdataResource.from_settings(settings), settings.paths))
    for entry in discovery.entries:
        print(f"{entry.setting} {entry.configured_as}: {entry.status}" + (f" ({entry.detail})" if entry.detail else ""))
    problems += [entry.describe() for entry in discovery.problems]
    if not discovery.keys:
        problems.append("no dataset to follow: set USAGE_ORGANIZATIONS and/or USAGE_DATASETS")
    print(f"{len(discovery.keys)} datasets followed on {settings.portal_url}")
    for problem in problems:
        print(f"problem: {problem}", file=sys.stderr)
    return 1 if problems else 0


def _date(value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date (YYYY-MM-DD)") from None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="usage-pipeline",
        description="Daily usage of an open-data producer's datasets, as DuckDB tables.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    refresh_cmd = commands.add_parser("refresh", help="snapshot every followed dataset for a date, rebuild, publish")
    refresh_cmd.add_argument("--date", type=_date, default=dt.date.today(), help="logical date (default: today)")
    refresh_cmd.add_argument(
        "--strict",
        action="store_true",
        help="fail before fetching when an entry of USAGE_ORGANIZATIONS or USAGE_DATASETS does not resolve "
        "(for setting up; the schedule never uses it)",
    )
    config_cmd = commands.add_parser("config", help="check the settings against the portal")
    config_cmd.add_argument("action", choices=["check"], help="check: settings, portals.yaml, surveys.yaml, entries")
    backfill_cmd = commands.add_parser(
        "backfill",
        help="fetch the whole monthly history again, rebuild every table, report the days of --start..--end "
        "without a counter snapshot",
    )
    backfill_cmd.add_argument("--start", type=_date, required=True)
    backfill_cmd.add_argument("--end", type=_date, default=dt.date.today())
    demo_cmd = commands.add_parser("demo", help="run a few days against a generated local portal (offline)")
    demo_cmd.add_argument("--days", type=int, default=3)
    demo_cmd.add_argument("--data-dir", type=Path, default=Path("demo-data"))
    data_dir_help = "the data folder (default: $USAGE_DATA_DIR, or ./data)"
    tables_cmd = commands.add_parser("tables", help="list the published tables, their rows and what they hold")
    tables_cmd.add_argument("--data-dir", type=Path, help=data_dir_help)
    show_cmd = commands.add_parser("show", help="print the first rows of a published table")
    show_cmd.add_argument("table", help="a table of `usage-pipeline tables`, e.g. discussions_awaiting_answer")
    show_cmd.add_argument("--limit", type=_positive, default=20, help="rows to print (default: 20)")
    show_cmd.add_argument("--data-dir", type=Path, help=data_dir_help)
    train_cmd = commands.add_parser(
        "train-themes",
        help="retrain the discussion-theme classifier with the corrections of theme_corrections.csv; keep it only "
        "if it cross-validates no worse",
    )
    train_cmd.add_argument("--data-dir", type=Path, help=data_dir_help)
    return parser.parse_args(argv)


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not a positive whole number")
    return int(value)


def backfill(settings: Settings, start: dt.date, end: dt.date, instance: dg.DagsterInstance) -> RefreshOutcome:
    """The whole monthly history fetched again (it covers ``start``..``end``), every table rebuilt from the
    stored raw JSON, and the dates of the range without a counter snapshot reported."""
    if end < start:
        raise SettingsError(f"--end {end} is before --start {start}")
    outcome = refresh(settings, dt.date.today(), instance, full_metrics_history=True)
    with duckdb.connect(str(settings.paths.published_database), read_only=True) as published:
        stored = {
            row[0]
            for row in published.execute(
                "SELECT DISTINCT date FROM reporting.dataset_usage_daily WHERE date BETWEEN ? AND ?",
                [start, end],
            ).fetchall()
        }
    missing = (end - start).days + 1 - len(stored)
    print(
        f"backfill {start}..{end}: whole monthly history fetched again; daily counters exist for "
        f"{len(stored)} dates of the range, {missing} dates have none (the portal keeps no daily history of "
        "its cumulative counters)"
    )
    return outcome


def train_themes_command(paths: DataDir) -> int:
    from usage_pipeline.insights.retrain_themes import TrainThemesError, train_themes  # scikit-learn: only here

    try:
        train_themes(paths)
    except TrainThemesError as error:
        print(f"usage-pipeline train-themes: {error}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "demo":
            from usage_pipeline.demo.run import run_demo

            run_demo(args.data_dir, days=args.days)
            return 0
        settings = Settings.from_env()
        if args.command == "config":
            return check_config(settings)
        if args.command in ("tables", "show", "train-themes"):
            paths = (Settings(data_dir=args.data_dir) if args.data_dir else settings).paths
            if args.command == "tables":
                print_tables(paths.published_database)
            elif args.command == "show":
                print_table(paths.published_database, args.table, args.limit)
            else:
                return train_themes_command(paths)
            return 0
        instance = dagster_instance(settings)
        if args.command == "refresh":
            outcome = refresh(settings, args.date, instance, strict=args.strict)
        else:
            outcome = backfill(settings, args.start, args.end, instance)
        print_summary(outcome, settings)
        return 0
    except (SettingsError, PortalError, RefreshFailed, BrowseError, ProducerFileError) as error:
        print(f"usage-pipeline {args.command}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
