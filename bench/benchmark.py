"""Benchmark: load one generated organization's usage data three ways and compare time, requests and memory.

Approaches, each in a child process against the same local portal (127.0.0.1, fixed latency per request):

* ``pipeline``: the real ``usage-pipeline refresh`` CLI (Dagster, persistent SQLite instance, DuckDB).
* ``naive``: a sequential crawl with a sync ``httpx.Client``, one request at a time, JSON stored in DuckDB.
* ``dlt``: dlt's ``rest_api`` source into DuckDB, per-dataset child resources ``parallelized``.

Run (from the repository root)::

    .venv/bin/python bench/benchmark.py --datasets 1000 --latency 0.1

The portal server runs in this process; children are timed from spawn to exit, and their peak RSS comes
from ``os.wait4``. The ``child-naive`` and ``child-dlt`` subcommands are the children's entry points:
they import neither usage_pipeline nor this process's state, so the dlt child can run in another venv.
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

APPROACHES = ("pipeline", "pipeline-next-day", "naive", "dlt")
LABELS = {
    "pipeline": "pipeline (`usage-pipeline refresh`), first run",
    "pipeline-next-day": "pipeline, next day (monthly history stored)",
    "naive": "naive sequential crawl (httpx)",
    "dlt": "dlt rest_api (parallelized)",
}
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


def naive_crawl(base_url: str, organization_id: str, db_path: Path) -> dict[str, int]:
    """Fetch every document one request at a time, then store each kind as a (key, JSON) DuckDB table."""
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
        organization = get(f"{api}/organizations/{organization_id}/")
        rows["organizations"].append((organization["id"], json.dumps(organization)))
        datasets = list(pages(f"{api}/datasets/", {"organization": organization_id}, udata_next))
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


def dlt_config(base_url: str, organization_id: str) -> dict[str, Any]:
    """The `rest_api` source config: the org, its datasets, and four child resources per dataset id."""
    udata_pages = {"type": "json_link", "next_url_path": "next_page"}
    by_dataset = "{resources.datasets.id}"
    return {
        "client": {"base_url": f"{base_url}/api/", "paginator": udata_pages},
        "resource_defaults": {"write_disposition": "replace"},
        "resources": [
            {
                "name": "organizations",
                "endpoint": {"path": f"1/organizations/{organization_id}/", "data_selector": "$",
                             "paginator": "single_page"},
            },
            {
                "name": "datasets",
                "endpoint": {"path": "1/datasets/", "params": {"organization": organization_id},
                             "data_selector": "data"},
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


def dlt_load(base_url: str, organization_id: str, db_path: Path, pipelines_dir: Path) -> str:
    """Run the `rest_api` source into DuckDB (dataset `udata`); returns dlt's load summary."""
    import dlt
    from dlt.sources.rest_api import rest_api_source

    pipeline = dlt.pipeline(
        pipeline_name="bench_udata",
        destination=dlt.destinations.duckdb(str(db_path)),
        dataset_name="udata",
        pipelines_dir=str(pipelines_dir),
    )
    info = pipeline.run(rest_api_source(dlt_config(base_url, organization_id)))  # type: ignore[arg-type]
    info.raise_on_failed_jobs()
    return f"dlt {dlt.__version__}: {info}"


def child_main(argv: Sequence[str]) -> int:
    """Entry point of the `child-naive` and `child-dlt` subcommands; non-zero exit on any failure."""
    parser = argparse.ArgumentParser(prog="benchmark.py child")
    parser.add_argument("mode", choices=("child-naive", "child-dlt"))
    parser.add_argument("--url", required=True)
    parser.add_argument("--organization", required=True)
    parser.add_argument("--db", type=Path, required=True)
    parser.add_argument("--pipelines-dir", type=Path)
    args = parser.parse_args(argv)
    if args.url.split("://", 1)[-1].split(":", 1)[0] not in LOCAL_HOSTS:
        print(f"{args.mode}: {args.url} is not a local URL", file=sys.stderr)
        return 2
    try:
        if args.mode == "child-naive":
            print(f"naive crawl: documents stored {naive_crawl(args.url, args.organization, args.db)}")
        else:
            print(dlt_load(args.url, args.organization, args.db, args.pipelines_dir or args.db.parent / "dlt"))
    except Exception as error:
        import traceback

        traceback.print_exc()
        print(f"{args.mode} failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


# --------------------------------------------------------------------------------------------------
# Parent
# --------------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    """One approach's measurements."""

    name: str
    wall: float = 0.0
    cpu: float = 0.0
    requests: int = 0
    by_endpoint: Counter[str] = field(default_factory=Counter)
    max_rss_mb: float = 0.0
    exit_code: int = 0
    log: Path | None = None
    tables: dict[str, int] = field(default_factory=dict)
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.exit_code == 0


def run_child(
    command: list[str], env: dict[str, str], cwd: Path, log: Path, timeout: float
) -> tuple[int, float, float, float]:
    """Run `command` to its end; returns exit code, wall seconds, CPU seconds and peak RSS (MB) from `os.wait4`."""
    with log.open("wb") as out:
        started = time.perf_counter()
        try:
            process = subprocess.Popen(
                command, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        except OSError as error:  # e.g. a --dlt-python that does not exist
            out.write(f"[benchmark] cannot start {command[0]}: {error}\n".encode())
            return 127, time.perf_counter() - started, 0.0, 0.0
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
    return process.returncode, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024  # KiB on Linux


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


def child_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment without USAGE_*/DAGSTER_HOME, local addresses kept off any proxy, plus `extra`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("USAGE_") and key != "DAGSTER_HOME"}
    no_proxy = ",".join(filter(None, [env.get("NO_PROXY", ""), *LOCAL_HOSTS]))
    env |= {"NO_PROXY": no_proxy, "no_proxy": no_proxy, "PYTHONUNBUFFERED": "1"}
    return env | extra


def pipeline_command(date: dt.date) -> list[str]:
    """The `usage-pipeline` console script next to this interpreter (else the one on PATH) refreshing `date`."""
    script = Path(sys.executable).parent / "usage-pipeline"
    found = str(script) if script.exists() else shutil.which("usage-pipeline")
    if not found:
        raise SystemExit("usage-pipeline is not installed: run `pip install -e .` at the repository root")
    return [found, "refresh", "--date", date.isoformat()]


def default_dlt_python() -> str:
    """The benchmark venv's interpreter if that venv exists, else this one."""
    candidate = DEFAULT_BENCH_VENV / "bin" / "python"
    return str(candidate) if candidate.exists() else sys.executable


def measure(
    name: str, server: Any, organization_id: str, workdir: Path, args: argparse.Namespace, today: dt.date
) -> Outcome:
    """Run one approach in a child process against `server` and collect its numbers."""
    home = workdir / name
    home.mkdir(parents=True)
    url = server.url
    if name.startswith("pipeline"):
        # the first run snapshots yesterday (whole monthly history); the next day reuses its warehouse
        pipeline_home = workdir / "pipeline"
        data_dir = pipeline_home / "data"
        command = pipeline_command(today if name == "pipeline-next-day" else today - dt.timedelta(days=1))
        env = child_env(
            {
                "USAGE_PORTAL_URL": url,
                "USAGE_METRICS_API_URL": url,
                "USAGE_ORGANIZATIONS": organization_id,
                "USAGE_DATA_DIR": str(data_dir),
                "DAGSTER_HOME": str(pipeline_home / "dagster_home"),
                "USAGE_START_DATE": (today - dt.timedelta(days=7)).isoformat(),
                "USAGE_LINK_CHECKS": "0",  # the others do not check reuse sites either (and those are not local)
            }
        )
    else:
        python = sys.executable if name == "naive" else args.dlt_python
        command = [python, str(HERE), f"child-{name}", "--url", url, "--organization", organization_id,
                   "--db", str(home / f"{name}.duckdb"), "--pipelines-dir", str(home / "dlt_pipelines")]  # fmt: skip
        env = child_env(
            {"RUNTIME__DLTHUB_TELEMETRY": "false", "EXTRACT__WORKERS": str(args.dlt_workers)} if name == "dlt" else {}
        )
    server.reset_counts()
    print(f"[benchmark] {name}: running {' '.join(command[:3])} ... (log: {home / 'child.log'})", flush=True)
    exit_code, wall, cpu, max_rss_mb = run_child(command, env, home, home / "child.log", args.timeout)
    outcome = Outcome(
        name=name,
        wall=wall,
        cpu=cpu,
        requests=server.request_count,
        by_endpoint=server.requests_by_endpoint,
        max_rss_mb=max_rss_mb,
        exit_code=exit_code,
        log=home / "child.log",
    )
    if name.startswith("pipeline"):
        outcome.tables = table_counts(data_dir / "warehouse.duckdb", "raw")
    elif name == "naive":
        outcome.tables = table_counts(home / "naive.duckdb", "main")
    else:
        outcome.tables = table_counts(home / "dlt.duckdb", "udata", top_level_only=True)
    outcome.note = _last_lines(outcome.log, 1 if outcome.ok else 25)
    status = "ok" if outcome.ok else f"FAILED (exit {exit_code})"
    print(f"[benchmark] {name}: {status} in {wall:.1f} s, {outcome.requests} requests", flush=True)
    return outcome


def _last_lines(path: Path | None, count: int) -> str:
    if path is None or not path.exists():
        return ""
    return "\n".join(path.read_text(errors="replace").rstrip().splitlines()[-count:])


def _ratio(value: float, reference: Outcome | None) -> str:
    if reference is None or not reference.ok or reference.wall <= 0:
        return "–"
    ratio = value / reference.wall
    return f"{ratio:.3f}× ({1 / ratio:.1f}× faster)" if ratio < 1 else f"{ratio:.2f}×"


def report(outcomes: list[Outcome], args: argparse.Namespace, world_facts: dict[str, Any]) -> str:
    """The Markdown report: machine, parameters, the results table, requests by endpoint, rows loaded."""
    by_name = {outcome.name: outcome for outcome in outcomes}
    naive, dlt = by_name.get("naive"), by_name.get("dlt")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    lines = [
        "## Benchmark: loading one organization's usage data",
        "",
        f"- Machine: nproc={cpus}, Python {platform.python_version()} ({platform.system()} {platform.machine()})",
        f"- Parameters: {args.datasets} datasets, {args.latency * 1000:.0f} ms latency per request, seed {args.seed}; "
        f"world: {world_facts['discussions']} discussions, {world_facts['reuses']} dataset-reuse links, "
        f"{world_facts['metrics_rows']} metrics rows",
        f"- dlt: `{args.dlt_python}` ({world_facts.get('dlt_version', '?')}), {args.dlt_workers} extract workers; "
        "pipeline: default USAGE_HTTP_CONCURRENCY (5), fresh data dir and SQLite DAGSTER_HOME",
        "",
        "| approach | wall time (s) | requests | peak RSS (MB) | CPU user+sys (s) | time vs naive | time vs dlt |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for outcome in outcomes:
        if outcome.ok:
            versus_dlt = _ratio(outcome.wall, dlt) if outcome.name.startswith("pipeline") else ""
            lines.append(
                f"| {LABELS[outcome.name]} | {outcome.wall:.1f} | {outcome.requests} | {outcome.max_rss_mb:.0f} | "
                f"{outcome.cpu:.1f} | {_ratio(outcome.wall, naive)} | {versus_dlt} |"
            )
        else:
            lines.append(
                f"| {LABELS[outcome.name]} | FAILED (exit {outcome.exit_code}) after {outcome.wall:.1f} | "
                f"{outcome.requests} | {outcome.max_rss_mb:.0f} | {outcome.cpu:.1f} | – | – |"
            )
    lines += [
        "",
        "Wall time: child spawn to exit (interpreter start and imports included). Peak RSS: `ru_maxrss` of the "
        "child from `os.wait4` (largest process of its tree). The portal server runs in the benchmark process, "
        "on the same CPUs.",
        "",
        "Requests by endpoint:",
        "",
    ]
    for outcome in outcomes:
        endpoints = ", ".join(f"{label} {count}" for label, count in sorted(outcome.by_endpoint.items()))
        lines.append(f"- {outcome.name}: {endpoints or 'none'}")
    lines += ["", "Rows loaded (top-level tables):", ""]
    for outcome in outcomes:
        tables = ", ".join(f"{table} {count}" for table, count in outcome.tables.items())
        lines.append(f"- {outcome.name}: {tables or 'none'}")
    failures = [outcome for outcome in outcomes if not outcome.ok]
    for outcome in failures:
        lines += ["", f"**{outcome.name} failed** (exit {outcome.exit_code}, log {outcome.log}):", "", "```",
                  outcome.note or "(no output)", "```"]  # fmt: skip
    return "\n".join(lines)


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
    parser.add_argument("--datasets", type=int, default=1000, help="datasets of the generated organization")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds the portal waits before each answer")
    parser.add_argument("--only", default=",".join(APPROACHES), help="approaches to run, in order (comma-separated)")
    parser.add_argument("--dlt-python", default=default_dlt_python(), help="interpreter with dlt[duckdb] installed")
    parser.add_argument("--dlt-workers", type=int, default=5, help="dlt extract workers (EXTRACT__WORKERS)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds before a child is killed")
    parser.add_argument("--keep", action="store_true", help="keep the working directory (databases, logs)")
    args = parser.parse_args(argv)
    args.approaches = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(args.approaches) - set(APPROACHES)
    if unknown or not args.approaches:
        parser.error(f"--only takes a comma-separated subset of {', '.join(APPROACHES)}")
    if "pipeline-next-day" in args.approaches and (
        "pipeline" not in args.approaches
        or args.approaches.index("pipeline") > args.approaches.index("pipeline-next-day")
    ):
        parser.error("pipeline-next-day runs on the warehouse of pipeline: list pipeline before it")
    if args.datasets < 1 or args.latency < 0:
        parser.error("--datasets must be >= 1 and --latency >= 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0].startswith("child-"):
        return child_main(argv)
    args = parse_args(argv)

    from usage_pipeline.demo.portal_server import PortalServer
    from usage_pipeline.demo.world import generate_world

    today = dt.date.today()
    started = time.perf_counter()
    world = generate_world(1, args.datasets, seed=args.seed, today=today)
    organization_id = next(iter(world.organizations))
    reuse_links = sum(len(entry["reuses"]) for entry in world.entries.values())
    facts: dict[str, Any] = {
        "discussions": sum(len(entry["discussions"]) for entry in world.entries.values()),
        "reuses": reuse_links,
        "metrics_rows": len(world.metrics_rows),
    }
    if "dlt" in args.approaches:
        facts["dlt_version"] = dlt_version(args.dlt_python)
    print(
        f"[benchmark] world of {args.datasets} datasets generated in {time.perf_counter() - started:.1f} s", flush=True
    )
    workdir = Path(tempfile.mkdtemp(prefix="usage-bench-"))
    outcomes: list[Outcome] = []
    try:
        with PortalServer(world, latency=args.latency) as server:
            for name in args.approaches:
                outcomes.append(measure(name, server, organization_id, workdir, args, today))
    finally:
        if args.keep or any(not outcome.ok for outcome in outcomes):
            print(f"[benchmark] working directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(report(outcomes, args, facts))
    failed = [outcome.name for outcome in outcomes if not outcome.ok]
    if failed:
        print(f"\n[benchmark] failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
