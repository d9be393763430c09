"""Benchmark: load a generated portal's usage data three ways and compare time, requests and memory.

For each size (``--datasets 500,1000,10000``) a world of several organizations with a realistic activity mix
(discussions on ~75% of the datasets, 1-3 each; reuses on ~65%, 1-2 each; three months of metrics) is served on
127.0.0.1 with a fixed latency per request, and each approach runs in a child process against it:

* ``pipeline``: the real ``usage-pipeline refresh`` (Dagster, persistent SQLite instance, DuckDB), first run;
* ``pipeline-next-day``: the same data folder the next day (monthly history stored);
* ``naive``: a sequential crawl with a sync ``httpx.Client``, one request at a time, JSON stored in DuckDB;
* ``dlt``: dlt's ``rest_api`` source into DuckDB, per-dataset child resources ``parallelized``.

The pipeline's wall time is split into phases from its Dagster event log and the portal's request times:
startup (process start to the crawl), crawl (to the last request answered), raw landing (the checks and the
write of the day's rows), models, checks (raw and reporting validations), publication (the published copy and
the digests), and Dagster's bookkeeping (everything else: run planning, one materialization event per
(dataset, date) partition, step events, process exit). After the runs of each size, ``dagster-webserver`` is
started on their instance and the asset page's partition queries are timed (``--no-ui`` skips it), with the size
of Dagster's cached list of materialized partitions. ``--write-readme`` puts the tables into README.md between
the benchmark markers.

Run (from the repository root)::

    .venv/bin/python bench/benchmark.py --datasets 500,1000 --latency 0.1
    .venv/bin/python bench/benchmark.py --datasets 500,1000,10000 --only pipeline,pipeline-next-day,dlt --write-readme

The ``child-naive`` and ``child-dlt`` subcommands are the children's entry points: they import neither
usage_pipeline nor this process's state, so the dlt child can run in another venv (``--dlt-python``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

APPROACHES = ("pipeline", "pipeline-next-day", "pipeline-postgres", "pipeline-postgres-next-day", "naive", "dlt")
DEFAULT_APPROACHES = ("pipeline", "pipeline-next-day", "naive", "dlt")
LABELS = {
    "pipeline": "`usage-pipeline refresh`, first run",
    "pipeline-next-day": "`usage-pipeline refresh`, next day",
    "pipeline-postgres": "`usage-pipeline refresh`, first run, Dagster on PostgreSQL",
    "pipeline-postgres-next-day": "`usage-pipeline refresh`, next day, Dagster on PostgreSQL",
    "naive": "naive sequential crawl",
    "dlt": "dlt `rest_api` (parallelized)",
}
README_MARKERS = "<!-- {block}:start (written by bench/benchmark.py --write-readme{option}) -->", "<!-- {block}:end -->"
HERE = Path(__file__).resolve()
DEFAULT_BENCH_VENV = HERE.parent.parent / ".venv-bench"
MAX_PAGES = 10_000  # bound on any paginated listing followed by a child
LOCAL_HOSTS = ("127.0.0.1", "localhost")


# --------------------------------------------------------------------------------------------------
# Children
# --------------------------------------------------------------------------------------------------


def _check_local(url: str, base_url: str) -> str:
    """Refuse to follow a link that leaves the local portal."""
    if not url.startswith(base_url + "/"):
        raise RuntimeError(f"refusing to follow {url!r}: not under {base_url}")
    return url


def naive_crawl(base_url: str, organization_ids: list[str], db_path: Path) -> dict[str, int]:
    """Fetch every document one request at a time, then store each kind as a (key, JSON) DuckDB table.

    The organizations, every dataset of the portal (it serves only theirs), and each dataset's own page,
    discussions, reuses and monthly metrics.
    """
    import duckdb
    import httpx
    import pyarrow as pa

    rows: dict[str, list[tuple[str, str]]] = {
        kind: [] for kind in ("organizations", "datasets", "dataset_details", "discussions", "reuses", "metrics")
    }
    with httpx.Client(timeout=30.0, headers={"Accept": "application/json"}) as http:

        def get(url: str, params: dict[str, Any] | None = None) -> Any:
            response = http.get(_check_local(url, base_url), params=params)
            response.raise_for_status()
            return response.json()

        def pages(url: str, params: dict[str, Any], next_of: Callable[[dict], str | None]) -> Iterator[dict]:
            page = get(url, params)
            for _ in range(MAX_PAGES):
                yield from page["data"]
                next_url = next_of(page)
                if not next_url:
                    return
                page = get(next_url)
            raise RuntimeError(f"{url}: more than {MAX_PAGES} pages")

        def udata_next(page: dict) -> str | None:
            return page.get("next_page")

        def metrics_next(page: dict) -> str | None:
            return (page.get("links") or {}).get("next")

        api = f"{base_url}/api/1"
        for organization_id in organization_ids:
            organization = get(f"{api}/organizations/{organization_id}/")
            rows["organizations"].append((organization["id"], json.dumps(organization)))
        datasets = list(pages(f"{api}/datasets/", {"page_size": 100}, udata_next))
        rows["datasets"] = [(dataset["id"], json.dumps(dataset)) for dataset in datasets]
        for dataset in datasets:
            key = dataset["id"]
            rows["dataset_details"].append((key, json.dumps(get(f"{api}/datasets/{key}/"))))
            rows["discussions"] += [
                (key, json.dumps(item)) for item in pages(f"{api}/discussions/", {"for": key}, udata_next)
            ]
            rows["reuses"] += [
                (key, json.dumps(item)) for item in pages(f"{api}/reuses/", {"dataset": key}, udata_next)
            ]
            rows["metrics"] += [
                (key, json.dumps(item))
                for item in pages(
                    f"{base_url}/api/datasets/data/", {"dataset_id__exact": key, "page_size": 50}, metrics_next
                )
            ]
    with duckdb.connect(str(db_path)) as con:
        for kind, items in rows.items():
            incoming = pa.table(
                {"key": [key for key, _ in items], "doc": [doc for _, doc in items]},
                schema=pa.schema([("key", pa.string()), ("doc", pa.string())]),
            )
            con.register("incoming", incoming)
            con.execute(f"CREATE TABLE {kind} AS SELECT key, doc::JSON AS doc FROM incoming")
            con.unregister("incoming")
    return {kind: len(items) for kind, items in rows.items()}


def dlt_config(base_url: str, organization_ids: list[str]) -> dict[str, Any]:
    """The `rest_api` source config: the organizations, every dataset of the portal (it serves only theirs),
    and four child resources per dataset id."""
    udata_pages = {"type": "json_link", "next_url_path": "next_page"}
    by_dataset = "{resources.datasets.id}"
    return {
        "client": {"base_url": f"{base_url}/api/", "paginator": udata_pages},
        "resource_defaults": {"write_disposition": "replace"},
        "resources": [
            *(
                {
                    "name": f"organization_{index}",
                    "table_name": "organizations",
                    "endpoint": {"path": f"1/organizations/{organization_id}/", "data_selector": "$",
                                 "paginator": "single_page"},
                }
                for index, organization_id in enumerate(organization_ids)
            ),
            {
                "name": "datasets",
                "endpoint": {"path": "1/datasets/", "params": {"page_size": 100}, "data_selector": "data"},
            },
            {
                "name": "dataset_details",
                "endpoint": {"path": f"1/datasets/{by_dataset}/", "data_selector": "$", "paginator": "single_page"},
                "parallelized": True,
            },
            {
                "name": "discussions",
                "endpoint": {"path": "1/discussions/", "params": {"for": by_dataset}, "data_selector": "data"},
                "parallelized": True,
            },
            {
                "name": "reuses",
                "endpoint": {"path": "1/reuses/", "params": {"dataset": by_dataset}, "data_selector": "data"},
                "parallelized": True,
            },
            {
                "name": "metrics",
                "endpoint": {
                    "path": "datasets/data/",
                    "params": {"dataset_id__exact": by_dataset, "page_size": 50},
                    "data_selector": "data",
                    "paginator": {"type": "json_link", "next_url_path": "links.next"},
                },
                "parallelized": True,
            },
        ],
    }  # fmt: skip


def dlt_load(base_url: str, organization_ids: list[str], db_path: Path, pipelines_dir: Path) -> str:
    """Run the `rest_api` source into DuckDB (dataset `udata`); returns dlt's load summary."""
    import dlt
    from dlt.sources.rest_api import rest_api_source

    pipeline = dlt.pipeline(
        pipeline_name="bench_udata",
        destination=dlt.destinations.duckdb(str(db_path)),
        dataset_name="udata",
        pipelines_dir=str(pipelines_dir),
    )
    info = pipeline.run(rest_api_source(dlt_config(base_url, organization_ids)))  # type: ignore[arg-type]
    info.raise_on_failed_jobs()
    return f"dlt {dlt.__version__}: {info}"


def child_main(argv: Sequence[str]) -> int:
    """Entry point of the `child-naive` and `child-dlt` subcommands; non-zero exit on any failure."""
    parser = argparse.ArgumentParser(prog="benchmark.py child")
    parser.add_argument("mode", choices=("child-naive", "child-dlt"))
    parser.add_argument("--url", required=True)
    parser.add_argument("--organizations", required=True, help="comma-separated ids")
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--pipelines-dir", type=Path)
    args = parser.parse_args(argv)
    if args.url.split("://", 1)[-1].split(":", 1)[0] not in LOCAL_HOSTS:
        print(f"{args.mode}: {args.url} is not a local URL", file=sys.stderr)
        return 2
    organizations = args.organizations.split(",")
    try:
        if args.mode == "child-naive":
            print(f"naive crawl: documents stored {naive_crawl(args.url, organizations, args.db)}")
        else:
            print(dlt_load(args.url, organizations, args.db, args.pipelines_dir or args.db.parent / "dlt"))
    except Exception as error:
        import traceback

        traceback.print_exc()
        print(f"{args.mode} failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


# --------------------------------------------------------------------------------------------------
# Parent
# --------------------------------------------------------------------------------------------------

PHASES = ("startup", "crawl", "raw landing", "models", "checks", "publication", "bookkeeping")
RAW_PARTITIONS = '{ assetNodes(assetKeys: [{path: ["raw", "udata_snapshot"]}]) '
UI_QUERIES = {  # what the asset page asks: the partition counts, then the statuses drawn as the partition bar
    "partition counts": "query " + RAW_PARTITIONS + "{ partitionStats { numMaterialized numPartitions } } }",
    "partition statuses": "query " + RAW_PARTITIONS + "{ assetPartitionStatuses { __typename "
    "... on MultiPartitionStatuses { ranges { primaryDimStartKey primaryDimEndKey secondaryDim { __typename "
    "... on DefaultPartitionStatuses { materializedPartitions } } } } } } }",
}
YEAR = 365


@dataclass
class Outcome:
    """One approach's measurements at one size."""

    name: str
    datasets: int
    wall: float = 0.0
    cpu: float = 0.0
    requests: int = 0
    by_endpoint: Counter[str] = field(default_factory=Counter)
    max_rss_mb: float = 0.0
    exit_code: int = 0
    log: Path | None = None
    tables: dict[str, int] = field(default_factory=dict)
    phases: dict[str, float] = field(default_factory=dict)
    events: int = 0  # events the run stored in Dagster's event log
    history_mb: float = 0.0  # what the run added to DAGSTER_HOME
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def run_child(
    command: list[str], env: dict[str, str], cwd: Path, log: Path, timeout: float
) -> tuple[int, float, float, float, float]:
    """Run `command` to its end; returns exit code, start (epoch), wall seconds, CPU seconds and peak RSS (MB)."""
    with log.open("wb") as out:
        started_at, started = time.time(), time.perf_counter()
        try:
            process = subprocess.Popen(
                command, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        except OSError as error:  # e.g. a --dlt-python that does not exist
            out.write(f"[benchmark] cannot start {command[0]}: {error}\n".encode())
            return 127, started_at, time.perf_counter() - started, 0.0, 0.0
        try:
            while True:
                pid, status, usage = os.wait4(process.pid, os.WNOHANG)
                if pid:
                    break
                if time.perf_counter() - started > timeout:
                    os.killpg(process.pid, signal.SIGKILL)  # the child's own process group (new session)
                    _, status, usage = os.wait4(process.pid, 0)
                    out.write(f"\n[benchmark] killed after {timeout:.0f} s\n".encode())
                    break
                time.sleep(0.02)
        except BaseException:
            os.killpg(process.pid, signal.SIGKILL)
            os.wait4(process.pid, 0)
            raise
        wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here: keep Popen from waiting again
    return process.returncode, started_at, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024  # KiB


def table_counts(db_path: Path, schema: str, *, top_level_only: bool = False) -> dict[str, int]:
    """Row counts of the tables of `schema` in a DuckDB file (dlt's own and nested tables skipped if asked)."""
    import duckdb

    if not db_path.exists():
        return {}
    with duckdb.connect(str(db_path), read_only=True) as con:
        names = [
            name
            for (name,) in con.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = ? ORDER BY 1", [schema]
            ).fetchall()
            if not top_level_only or not (name.startswith("_dlt") or "__" in name)
        ]
        return {name: con.execute(f'SELECT count(*) FROM "{schema}"."{name}"').fetchone()[0] for name in names}


def pipeline_phases(
    dagster_home: Path, started_at: float, wall: float, last_request_at: float | None, latency: float
) -> tuple[dict[str, float], int]:
    """Split the latest run's wall time into `PHASES`, from its event log (step and log times) and the portal's
    last request; works on any version of the pipeline (models in one step or one step per table). Returns the
    phases and the number of events the run stored."""
    import re

    import dagster as dg

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        (run,) = instance.get_runs(limit=1)
        entries = instance.all_logs(run.run_id)
    steps: dict[str, list[float]] = {}
    marks: dict[str, float] = {}
    seconds: dict[str, float] = {"raw checks": 0.0, "reporting checks": 0.0}
    for entry in entries:
        event = entry.dagster_event
        if event is not None and event.step_key and event.event_type_value in ("STEP_START", "STEP_SUCCESS"):
            steps.setdefault(event.step_key, []).append(entry.timestamp)
        message = entry.user_message or ""
        for mark in ("snapshot of", "rows (accepted, quarantined)"):
            if mark in message:
                marks.setdefault(mark, entry.timestamp)
        if found := re.search(r"checks on \d+ datasets in ([\d.]+)s", message):
            seconds["raw checks"] = float(found.group(1))
        if found := re.search(r"their checks in ([\d.]+)s", message):
            seconds["reporting checks"] = float(found.group(1))

    def duration(step: str) -> float:
        times = steps.get(step, [])
        return max(times) - min(times) if len(times) == 2 else 0.0

    crawl_start = marks.get("snapshot of", started_at)
    crawl_end = (last_request_at + latency) if last_request_at else crawl_start
    landed = marks.get("rows (accepted, quarantined)", crawl_end)
    other = {"raw__udata_snapshot", "published__usage", "published__weekly_digest"}
    models = sum(duration(step) for step in steps if step not in other and not step.startswith("raw__"))
    phases = {
        "startup": crawl_start - started_at,
        "crawl": crawl_end - crawl_start,
        "raw landing": landed - crawl_end - seconds["raw checks"],
        "models": models - seconds["reporting checks"],
        "checks": seconds["raw checks"] + seconds["reporting checks"],
        "publication": duration("published__usage") + duration("published__weekly_digest"),
    }
    phases["bookkeeping"] = wall - sum(phases.values())
    return phases, len(entries)


def tree_megabytes(folder: Path) -> float:
    """Size of the files under ``folder``, in MB (0 if it does not exist)."""
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 1e6


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment without USAGE_*/DAGSTER_*, local addresses kept off any proxy, plus `extra`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("USAGE_", "DAGSTER_"))}
    no_proxy = ",".join(filter(None, [env.get("NO_PROXY", ""), *LOCAL_HOSTS]))
    env |= {"NO_PROXY": no_proxy, "no_proxy": no_proxy, "PYTHONUNBUFFERED": "1"}
    return env | extra


def pipeline_env(source: Path, url: str, organizations: list[str], home: Path, today: dt.date) -> dict[str, str]:
    """The environment of the pipeline's processes: the portal on `url`, data and DAGSTER_HOME under `home`."""
    return child_env(
        {
            "PYTHONPATH": str(source),
            "USAGE_PORTAL_URL": url,
            "USAGE_METRICS_API_URL": url,
            "USAGE_ORGANIZATIONS": ",".join(organizations),
            "USAGE_DATA_DIR": str(home / "data"),
            "DAGSTER_HOME": str(home / "dagster_home"),
            "USAGE_START_DATE": (today - dt.timedelta(days=7)).isoformat(),
            "USAGE_LINK_CHECKS": "0",  # the others do not check reuse sites either
            "USAGE_LEAD_SOURCES": "",  # nor search GitHub or HAL
        }
    )


def postgres_instance(server: Any, home: Path, database: str, source: Path) -> dict[str, str]:
    """deploy/dagster.yaml in ``home`` (once) on a database of the throwaway ``server``; its environment."""
    if not (home / "dagster.yaml").exists():
        home.mkdir(parents=True, exist_ok=True)
        shutil.copy(source / "deploy" / "dagster.yaml", home / "dagster.yaml")
        server.create_database(database)
    return {
        "DAGSTER_PG_HOST": server.host,
        "DAGSTER_PG_PORT": str(server.port),
        "DAGSTER_PG_USERNAME": "postgres",
        "DAGSTER_PG_PASSWORD": "unused (trust)",
        "DAGSTER_PG_DB": database,
    }


def default_dlt_python() -> str:
    """The benchmark venv's interpreter if that venv exists, else this one."""
    candidate = DEFAULT_BENCH_VENV / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


def measure(
    name: str, server: Any, organizations: list[str], size: int, workdir: Path, args: argparse.Namespace, today: dt.date
) -> Outcome:
    """Run one approach in a child process against `server` and collect its numbers."""
    home = workdir / f"{size}-{name}"
    home.mkdir(parents=True)
    url = server.url
    postgres = "postgres" in name
    pipeline_home = workdir / f"{size}-pipeline{'-postgres' if postgres else ''}-data"
    if name.startswith("pipeline"):
        # the first run snapshots yesterday (whole monthly history); the next day reuses its data folder
        date = today if name.endswith("next-day") else today - dt.timedelta(days=1)
        command = [sys.executable, "-m", "usage_pipeline.cli", "refresh", "--date", date.isoformat()]
        env = pipeline_env(args.source, url, organizations, pipeline_home, today)
        if postgres:
            env |= postgres_instance(args.postgres, pipeline_home / "dagster_home", f"dagster_{size}", args.source)
    else:
        python = sys.executable if name == "naive" else args.dlt_python
        command = [python, str(HERE), f"child-{name}", "--url", url, "--organizations", ",".join(organizations),
                   "--db", str(home / f"{name}.duckdb"), "--pipelines-dir", str(home / "dlt_pipelines")]  # fmt: skip
        env = child_env(
            {"RUNTIME__DLTHUB_TELEMETRY": "false", "EXTRACT__WORKERS": str(args.dlt_workers)} if name == "dlt" else {}
        )
    history_before = tree_megabytes(pipeline_home / "dagster_home") if name.startswith("pipeline") else 0.0
    server.reset_counts()
    print(f"[benchmark] {size} datasets, {name}: running ... (log: {home / 'child.log'})", flush=True)
    exit_code, started_at, wall, cpu, max_rss_mb = run_child(command, env, home, home / "child.log", args.timeout)
    outcome = Outcome(
        name=name,
        datasets=size,
        wall=wall,
        cpu=cpu,
        requests=server.request_count,
        by_endpoint=server.requests_by_endpoint,
        max_rss_mb=max_rss_mb,
        exit_code=exit_code,
        log=home / "child.log",
    )
    if name.startswith("pipeline"):
        outcome.tables = table_counts(pipeline_home / "data" / "warehouse.duckdb", "raw")
        outcome.history_mb = tree_megabytes(pipeline_home / "dagster_home") - history_before
        if outcome.ok and not postgres:  # the phases are read from the SQLite event log
            outcome.phases, outcome.events = pipeline_phases(
                pipeline_home / "dagster_home", started_at, wall, server.last_request_at, args.latency
            )
    elif name == "naive":
        outcome.tables = table_counts(home / "naive.duckdb", "main")
    else:
        outcome.tables = table_counts(home / "dlt.duckdb", "udata", top_level_only=True)
    outcome.note = _last_lines(outcome.log, 1 if outcome.ok else 25)
    status = "ok" if outcome.ok else f"FAILED (exit {exit_code})"
    print(f"[benchmark] {size} datasets, {name}: {status} in {wall:.1f} s, {outcome.requests} requests", flush=True)
    return outcome


@dataclass
class UiProbe:
    """What Dagster's UI asks about the raw snapshot's partitions, on the DAGSTER_HOME of the last run."""

    datasets: int
    days: int  # days of the partition range (USAGE_START_DATE to tomorrow)
    partitions: int
    materialized: int
    seconds: dict[str, float]  # first answer of each UI query
    status_cache_bytes: int  # Dagster's cached list of the materialized partitions


def probe_ui(source: Path, env: dict[str, str], size: int, log: Path) -> UiProbe | None:
    """Start `dagster-webserver` on the run's instance, time the UI's partition queries, read the status cache."""
    import socket
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "dagster_webserver", "-w", str(source / "workspace.yaml"), "-h", "127.0.0.1",
               "-p", str(port)]  # fmt: skip
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, cwd=source, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
    try:
        deadline = time.perf_counter() + 300
        while time.perf_counter() < deadline:
            try:
                urllib.request.urlopen(f"{url}/server_info", timeout=5)
                break
            except OSError:
                time.sleep(1)
        else:
            print(f"[benchmark] {size} datasets, UI: the webserver did not answer (log: {log})", flush=True)
            return None
        seconds, answers = {}, {}
        for name, query in UI_QUERIES.items():
            started = time.perf_counter()
            request = urllib.request.Request(
                f"{url}/graphql", json.dumps({"query": query}).encode(), {"Content-Type": "application/json"}
            )
            answers[name] = json.load(urllib.request.urlopen(request, timeout=600))
            seconds[name] = time.perf_counter() - started
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait()
    stats = answers["partition counts"]["data"]["assetNodes"][0]["partitionStats"]
    index = Path(env["DAGSTER_HOME"]) / "history" / "runs" / "index.db"
    return UiProbe(
        datasets=size,
        days=stats["numPartitions"] // size,
        partitions=stats["numPartitions"],
        materialized=stats["numMaterialized"],
        seconds=seconds,
        status_cache_bytes=status_cache_bytes(index),
    )


def status_cache_bytes(index: Path) -> int:
    """Size of the materialized-partitions list Dagster caches for the raw snapshot (SQLite event log index)."""
    import sqlite3

    with sqlite3.connect(f"file:{index}?mode=ro", uri=True) as conn:
        row = conn.execute(
            "SELECT cached_status_data FROM asset_keys WHERE asset_key = ?", [json.dumps(["raw", "udata_snapshot"])]
        ).fetchone()
    if not row or not row[0]:
        return 0
    return len(json.loads(row[0])["serialized_materialized_partition_subset"])


def _last_lines(path: Path | None, count: int) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").rstrip().splitlines()[-count:])


def _versus(value: float, reference: Outcome | None) -> str:
    return f"{value / reference.wall:.2f}" if reference and reference.ok and reference.wall > 0 else "–"


def report(
    outcomes: list[Outcome], probes: list[UiProbe], args: argparse.Namespace, facts: dict[int, dict[str, Any]]
) -> str:
    """The Markdown report: machine, parameters, one results table, the pipeline's phases, what the UI asks,
    requests by endpoint."""
    dlt = f"{facts['dlt_version']} with {args.dlt_workers} extract workers" if "dlt_version" in facts else "dlt not run"
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [
        f"Measured by `python bench/benchmark.py --datasets {args.datasets_arg} --latency {args.latency:g}` on "
        f"{dt.date.today().isoformat()}: nproc={cpus}, Python {platform.python_version()} "
        f"({platform.system()} {platform.machine()}), {args.latency * 1000:.0f} ms per request, seed {args.seed}; "
        f"{dlt}; the pipeline with its default settings (5 requests in flight), a fresh data folder and SQLite "
        "`DAGSTER_HOME` (deploy/dagster.yaml on a local PostgreSQL 15 for the approaches that say so).",
        "",
        "| datasets (organizations; discussions, reuse links, metrics rows) | approach | wall (s) | requests | "
        "peak RSS (MB) | vs naive | vs dlt |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for size in args.datasets:
        world = facts[size]
        here = {outcome.name: outcome for outcome in outcomes if outcome.datasets == size}
        naive, dlt = here.get("naive"), here.get("dlt")
        label = (
            f"{size:,} ({world['organizations']}; {world['discussions']:,}, {world['reuses']:,}, "
            f"{world['metrics_rows']:,})"
        )
        for outcome in here.values():
            wall = f"{outcome.wall:.1f}" if outcome.ok else f"FAILED (exit {outcome.exit_code})"
            compare = outcome.name.startswith("pipeline")
            lines.append(
                f"| {label} | {LABELS[outcome.name]} | {wall} | {outcome.requests:,} | {outcome.max_rss_mb:.0f} | "
                f"{_versus(outcome.wall, naive) if compare else ''} | {_versus(outcome.wall, dlt) if compare else ''} |"
            )
            label = ""
    skipped = [size for size in args.datasets if "naive" in args.approaches and size > args.naive_max]
    if skipped:
        lines += [
            "",
            f"The naive crawl is not run above {args.naive_max:,} datasets: one request at a time, it takes about "
            "4 requests × the latency per dataset (about "
            + ", ".join(f"{4 * size * args.latency / 60:.0f} min at {size:,}" for size in skipped)
            + "); its ratio column is then empty.",
        ]
    phased = [outcome for outcome in outcomes if outcome.phases]
    if phased:
        lines += [
            "",
            "Where the pipeline's time goes (seconds):",
            "",
            "| datasets | run | " + " | ".join(PHASES) + " | Dagster events stored | DAGSTER_HOME growth (MB) |",
            "|---:|---|" + "---:|" * (len(PHASES) + 2),
        ]
        for outcome in phased:
            cells = " | ".join(f"{outcome.phases[phase]:.1f}" for phase in PHASES)
            lines.append(
                f"| {outcome.datasets:,} | {LABELS[outcome.name]} | {cells} | {outcome.events:,} | "
                f"{outcome.history_mb:.0f} |"
            )
    if probes:
        lines += [
            "",
            "What Dagster's UI asks about `raw.udata_snapshot` (a partition per dataset and day) after these runs, "
            "and what a year of daily runs would make of Dagster's cached list of materialized partitions "
            "(projected from its measured bytes per partition):",
            "",
            "| datasets | partitions (days × datasets) | materialized | partition counts (s) | partition statuses (s) "
            "| status cache (MB) | after a year (MB) | 100,000 partitions reached after |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for probe in probes:
            per_partition = probe.status_cache_bytes / probe.materialized if probe.materialized else 0.0
            year = per_partition * probe.datasets * YEAR / 1e6
            lines.append(
                f"| {probe.datasets:,} | {probe.partitions:,} ({probe.days} × {probe.datasets:,}) | "
                f"{probe.materialized:,} | {probe.seconds['partition counts']:.2f} | "
                f"{probe.seconds['partition statuses']:.2f} | {probe.status_cache_bytes / 1e6:.1f} | {year:.0f} | "
                f"{-(-100_000 // probe.datasets):,} days |"
            )
    lines += ["", "Requests by endpoint:", ""]
    for outcome in outcomes:
        endpoints = ", ".join(f"{label} {count}" for label, count in sorted(outcome.by_endpoint.items()))
        lines.append(f"- {outcome.datasets:,} datasets, {outcome.name}: {endpoints or 'none'}")
    for outcome in outcomes:
        if not outcome.ok:
            lines += ["", f"**{outcome.name} failed** (exit {outcome.exit_code}, log {outcome.log}):", "", "```",
                      outcome.note or "(no output)", "```"]  # fmt: skip
    return "\n".join(lines)


def write_readme(readme: Path, text: str, block: str) -> None:
    """Replace what stands between the markers of ``block`` in ``readme`` by ``text``."""
    option = "" if block == "benchmark" else f" --readme-block {block}"
    opening, closing = (marker.format(block=block, option=option) for marker in README_MARKERS)
    content = readme.read_text(encoding="utf-8")
    start, end = content.index(opening) + len(opening), content.index(closing)
    readme.write_text(f"{content[:start]}\n{text}\n{content[end:]}", encoding="utf-8")


def dlt_version(python: str) -> str:
    """dlt's version as seen by the dlt child's interpreter."""
    try:
        probe = subprocess.run(
            [python, "-c", "import dlt; print(dlt.__version__)"], capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"dlt not importable: {error}"
    return f"dlt {probe.stdout.strip()}" if probe.returncode == 0 else "dlt not importable"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", default="500,1000", help="sizes to measure, comma-separated")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds the portal waits before each answer")
    parser.add_argument(
        "--only",
        default=",".join(DEFAULT_APPROACHES),
        help=f"approaches to run, in order (comma-separated, of {', '.join(APPROACHES)})",
    )
    parser.add_argument("--dlt-python", default=default_dlt_python(), help="interpreter with dlt[duckdb] installed")
    parser.add_argument("--dlt-workers", type=int, default=5, help="dlt extract workers (EXTRACT__WORKERS)")
    parser.add_argument("--source", type=Path, default=HERE.parent.parent, help="the usage_pipeline tree to run")
    parser.add_argument(
        "--naive-max",
        type=int,
        default=1000,
        help="run the naive crawl only up to this many datasets (it takes 4 requests x latency per dataset)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds before a child is killed")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (databases, logs)")
    parser.add_argument(
        "--no-ui", dest="ui", action="store_false", help="skip asking dagster-webserver about the partitions"
    )
    parser.add_argument("--write-readme", action="store_true", help="put the report into README.md's benchmark")
    parser.add_argument(
        "--readme-block", default="benchmark", help="the README's marked block to write (benchmark, benchmark-postgres)"
    )
    args = parser.parse_args(argv)
    args.datasets_arg = args.datasets
    try:
        args.datasets = [int(size) for size in args.datasets.split(",") if size.strip()]
    except ValueError:
        parser.error("--datasets takes comma-separated whole numbers, e.g. 500,1000,10000")
    args.approaches = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(args.approaches) - set(APPROACHES)
    if unknown or not args.approaches:
        parser.error(f"--only takes a comma-separated subset of {', '.join(APPROACHES)}")
    for first in ("pipeline", "pipeline-postgres"):
        if f"{first}-next-day" in args.approaches and (
            first not in args.approaches or args.approaches.index(first) > args.approaches.index(f"{first}-next-day")
        ):
            parser.error(f"{first}-next-day runs on the data folder of {first}: list {first} before it")
    if not args.datasets or min(args.datasets) < 1 or args.latency < 0:
        parser.error("--datasets must be >= 1 and --latency >= 0")
    return args


def organizations_for(size: int) -> int:
    """Several organizations, more for a larger producer (3 for 500 datasets, 4 for 1,000, 12 for 10,000)."""
    return max(3, round(size**0.5 / 8))


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].startswith("child-"):
        return child_main(argv)
    args = parse_args(argv)
    sys.path.insert(0, str(HERE.parent.parent))  # the world and its servers are this tree's, whatever --source runs
    today = dt.date.today()
    facts: dict[Any, Any] = {}
    if "dlt" in args.approaches:
        facts["dlt_version"] = dlt_version(args.dlt_python)
    workdir = Path(tempfile.mkdtemp(prefix="usage-bench-"))
    outcomes: list[Outcome] = []
    probes: list[UiProbe] = []
    with ExitStack() as services:
        if any("postgres" in name for name in args.approaches):
            from usage_pipeline.demo.postgres_server import PostgresServer

            args.postgres = services.enter_context(PostgresServer())
        return _measure_all(args, today, facts, workdir, outcomes, probes)


def _measure_all(
    args: argparse.Namespace,
    today: dt.date,
    facts: dict[Any, Any],
    workdir: Path,
    outcomes: list[Outcome],
    probes: list[UiProbe],
) -> int:
    from usage_pipeline.demo.portal_server import PortalServer
    from usage_pipeline.demo.world import BENCHMARK_MIX, generate_world

    try:
        for size in args.datasets:
            started = time.perf_counter()
            count = organizations_for(size)
            world = generate_world(count, -(-size // count), seed=args.seed, today=today, mix=BENCHMARK_MIX)
            for extra in sorted(world.entries)[size:]:  # exactly `size` datasets
                del world.entries[extra]
            world.metrics_rows = [row for row in world.metrics_rows if row["dataset_id"] in world.entries]
            entries = world.entries.values()
            facts[size] = {
                "organizations": count,
                "discussions": sum(len(entry["discussions"]) for entry in entries),
                "reuses": sum(len(entry["reuses"]) for entry in entries),
                "metrics_rows": len(world.metrics_rows),
            }
            print(f"[benchmark] world of {size} datasets in {time.perf_counter() - started:.1f} s", flush=True)
            with PortalServer(world, latency=args.latency) as server:
                for name in args.approaches:
                    if name == "naive" and size > args.naive_max:
                        print(f"[benchmark] {size} datasets, naive: not run (--naive-max {args.naive_max})")
                        continue
                    outcomes.append(measure(name, server, list(world.organizations), size, workdir, args, today))
                if args.ui and any(o.ok and o.datasets == size and o.name == "pipeline" for o in outcomes):
                    home = workdir / f"{size}-pipeline-data"
                    env = pipeline_env(args.source, server.url, list(world.organizations), home, today)
                    print(f"[benchmark] {size} datasets, UI: asking dagster-webserver ...", flush=True)
                    if probe := probe_ui(args.source, env, size, workdir / f"{size}-ui.log"):
                        probes.append(probe)
    finally:
        if args.keep or any(not outcome.ok for outcome in outcomes):
            print(f"[benchmark] working directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    text = report(outcomes, probes, args, facts)
    print()
    print(text)
    if args.write_readme:
        write_readme(HERE.parent.parent / "README.md", text, args.readme_block)
        print("\n[benchmark] README.md updated")
    failed = [f"{outcome.datasets} {outcome.name}" for outcome in outcomes if not outcome.ok]
    if failed:
        print(f"\n[benchmark] failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
