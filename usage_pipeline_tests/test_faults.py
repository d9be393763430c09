"""Nothing lost on a bad day: faults injected for real, and the published tables asserted after each.

A configured entry deleted or renamed on the portal, parts of the portal failing after every retry, a refresh
killed with SIGKILL at several points, a second process holding the warehouse, two refreshes at once, and a
publication that cannot write: each time every other dataset gets its day, and what could not be done is said.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from usage_pipeline import cli
from usage_pipeline.demo.portal_server import PortalServer, World
from usage_pipeline.demo.webhook_server import WebhookReceiver
from usage_pipeline.demo.world import generate_world
from usage_pipeline.insights.alerts import evaluate, webhook_channel
from usage_pipeline.insights.language import reader
from usage_pipeline_tests.conftest import portal_environment

DAY_1, DAY_2, DAY_3 = dt.date(2026, 11, 20), dt.date(2026, 11, 21), dt.date(2026, 11, 22)
CHILD_TIMEOUT = 300  # seconds: a bound on a child refresh, so that a hang fails the test instead of blocking it
VOLATILE_TABLES = {"quality_results"}  # run ids and evaluation times


def make_world(organizations: int = 2) -> World:
    return generate_world(organizations, 5, seed=11, today=DAY_1 - dt.timedelta(days=1))


def environment(server: PortalServer, data_dir: Path, organizations: list[str], datasets: list[str]) -> dict:
    return portal_environment(server.url, data_dir, organizations, datasets) | {
        "USAGE_HTTP_MAX_ELAPSED": "1",
        "DAGSTER_HOME": str(data_dir / "dagster_home"),
    }


@pytest.fixture
def use_environment(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict], None]:
    def apply(values: dict) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return apply


def query(database: Path, sql: str, parameters: list | None = None) -> list[tuple]:
    with duckdb.connect(str(database), read_only=True) as conn:
        return conn.execute(sql, parameters or []).fetchall()


def published_tables(data_dir: Path, portal_url: str = "") -> dict[str, list[tuple]]:
    """Every published reporting table but the volatile ones, rows sorted: what a BI tool would read (the local
    portal's address, which changes from server to server, replaced by a placeholder)."""
    database = data_dir / "published" / "usage.duckdb"
    names = [row[0] for row in query(database, "SELECT table_name FROM duckdb_tables() ORDER BY 1")]

    def same_anywhere(value: object) -> object:
        return value.replace(portal_url, "<portal>") if portal_url and isinstance(value, str) else value

    return {
        name: sorted(tuple(map(same_anywhere, row)) for row in query(database, f"SELECT * FROM reporting.{name}"))
        for name in names
        if name not in VOLATILE_TABLES
    }


def organization_slugs(world: World) -> list[str]:
    return [organization["slug"] for organization in world.organizations.values()]


def datasets_of(world: World, organization_id: str) -> list[str]:
    return sorted(key for key, entry in world.entries.items() if entry["organization_id"] == organization_id)


# --- a configured entry that no longer resolves ----------------------------------------------------------------


def test_a_deleted_or_renamed_entry_never_costs_the_others_their_day(
    tmp_path: Path, use_environment: Callable[[dict], None], capsys: pytest.CaptureFixture
) -> None:
    world = make_world(organizations=3)
    kept, renamed, deleted = list(world.organizations.values())
    by_slug = datasets_of(world, kept["id"])[0]  # followed through its organization and by its slug
    slug = world.entries[by_slug]["dataset"]["slug"]
    with PortalServer(world) as server, WebhookReceiver() as hook:
        data_dir = tmp_path / "data"
        use_environment(environment(server, data_dir, organization_slugs(world), [slug]))
        assert cli.main(["refresh", "--date", DAY_1.isoformat()]) == 0

        with world.lock:  # overnight: one organization renamed, one deleted with its datasets, a dataset deleted
            renamed["slug"] = f"{renamed['slug']}-nouveau-nom"
            world.deleted |= {by_slug, *datasets_of(world, deleted["id"])}
            del world.organizations[deleted["id"]]
        capsys.readouterr()
        assert cli.main(["refresh", "--date", DAY_2.isoformat()]) == 0, capsys.readouterr().err

        out = capsys.readouterr().out
        published = data_dir / "published" / "usage.duckdb"
        live = sorted(set(world.entries) - world.deleted)
        day_two = query(
            published, "SELECT dataset_id FROM reporting.dataset_usage_daily WHERE date = ? ORDER BY 1", [DAY_2]
        )
        assert [row[0] for row in day_two] == live, "every other dataset has its day"
        gone = dict(query(published, "SELECT dataset_id, gone_since FROM reporting.datasets WHERE status = 'gone'"))
        assert gone == dict.fromkeys(world.deleted, DAY_2)
        entries = {
            (kind, key): (status, resolved, since)
            for kind, key, status, resolved, since in query(
                published, "SELECT kind, configured_as, status, resolved_id, gone_since FROM reporting.followed_entries"
            )
        }
        assert entries == {
            ("organization", kept["slug"]): ("active", kept["id"], None),
            ("organization", renamed["slug"].removesuffix("-nouveau-nom")): ("renamed", renamed["id"], DAY_2),
            ("organization", deleted["slug"]): ("gone", deleted["id"], DAY_2),
            ("dataset", slug): ("gone", by_slug, DAY_2),
        }
        warned = query(
            published,
            "SELECT dataset_id FROM reporting.quality_results WHERE check_name = 'followed_entries_resolve' "
            "AND NOT passed AND dataset_id IS NOT NULL AND run_date = ? ORDER BY 1",
            [DAY_2],
        )
        assert {row[0] for row in warned} == {renamed["slug"].removesuffix("-nouveau-nom"), deleted["slug"], slug}
        assert f"WARNING, a setting no longer resolves: organization '{deleted['slug']}': gone" in out
        assert f"dataset '{slug}': gone" in out

        tick = evaluate(None, data_dir / "published", webhook_channel(hook.url), 7, "Europe/Paris", words=reader("en"))
        assert tick.cursor and len(hook.messages) == 1
        assert "Settings that no longer resolve" in hook.messages[0]["text"]
        assert f"`{deleted['slug']}`: gone" in hook.messages[0]["text"]

        # Strict mode and `config check` turn them into errors, naming them.
        capsys.readouterr()
        assert cli.main(["refresh", "--date", DAY_3.isoformat(), "--strict"]) == 1
        err = capsys.readouterr().err
        assert "do not resolve (--strict)" in err and f"USAGE_ORGANIZATIONS names '{deleted['slug']}': gone" in err
        assert cli.main(["config", "check"]) == 1
        checked = capsys.readouterr()
        assert f"USAGE_DATASETS {slug}: gone" in checked.out and "problem: USAGE_ORGANIZATIONS" in checked.err


# --- a part of the portal failing after every retry -------------------------------------------------------------


def test_failing_parts_keep_their_rows_warn_and_are_fetched_again(
    tmp_path: Path, use_environment: Callable[[dict], None], capsys: pytest.CaptureFixture
) -> None:
    world = make_world()
    with_reuses = next(key for key in sorted(world.entries) if world.entries[key]["reuses"])
    with PortalServer(world) as server:
        data_dir = tmp_path / "data"
        use_environment(environment(server, data_dir, organization_slugs(world), []))
        published = data_dir / "published" / "usage.duckdb"
        assert cli.main(["refresh", "--date", DAY_1.isoformat()]) == 0
        discussions_before = query(
            published, "SELECT discussion_id, removed_date FROM reporting.discussions ORDER BY ALL"
        )
        monthly_before = query(
            published, "SELECT * EXCLUDE (fetched_on) FROM reporting.dataset_usage_monthly ORDER BY ALL"
        )
        assert discussions_before and monthly_before

        world.failing = {"discussions": 500, "reuses": 503, "metrics/datasets": 502}
        capsys.readouterr()
        assert cli.main(["refresh", "--date", DAY_2.isoformat()]) == 0, "green with warnings, not red"
        out = capsys.readouterr().out
        assert "parts of the portal did not answer after every retry" in out
        assert f"reuses of {with_reuses}: {server.url}/api/1/reuses/?" in out
        counters = query(published, "SELECT count(*) FROM reporting.dataset_usage_daily WHERE date = ?", [DAY_2])
        assert counters == [(len(world.entries),)], "the counters of the day landed"
        assert (
            query(published, "SELECT discussion_id, removed_date FROM reporting.discussions ORDER BY ALL")
            == discussions_before
        )
        reuses = query(
            published,
            "SELECT last_seen_date, removed_date FROM reporting.reuses WHERE dataset_id = ?",
            [with_reuses],
        )
        assert reuses and set(reuses) == {(DAY_1, None)}, "not fetched is not removed"
        monthly = query(published, "SELECT * EXCLUDE (fetched_on) FROM reporting.dataset_usage_monthly ORDER BY ALL")
        assert monthly == monthly_before
        warned = query(
            published,
            "SELECT count(*) FROM reporting.quality_results WHERE check_name = 'portal_parts_fetched' "
            "AND NOT passed AND dataset_id IS NULL AND run_date = ?",
            [DAY_2],
        )
        assert warned == [(1,)]

        world.failing = {}
        assert cli.main(["refresh", "--date", DAY_3.isoformat()]) == 0
        assert set(
            query(published, "SELECT last_seen_date FROM reporting.reuses WHERE dataset_id = ?", [with_reuses])
        ) == {(DAY_3,)}
        assert query(published, "SELECT max(fetched_on) FROM reporting.dataset_usage_monthly") == [(DAY_3,)]


# --- crashes, locks, two runs at once -------------------------------------------------------------------------


class Child:
    """A `usage-pipeline` command in its own process; its stderr lines are read as they come."""

    def __init__(self, arguments: list[str], env: dict) -> None:
        command = [sys.executable, "-m", "usage_pipeline.cli", *arguments]
        self.process = subprocess.Popen(
            command,
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._out: list[str] = []
        self._seen = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._out_reader = threading.Thread(target=lambda: self._out.extend(self.process.stdout or ()), daemon=True)
        self._out_reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._seen:
                self.lines.append(line)
                self._seen.notify_all()
        with self._seen:
            self._seen.notify_all()

    def wait_for(self, marker: str) -> None:
        """Block until a stderr line contains ``marker`` (fails if the process ends first)."""
        with self._seen:
            while not any(marker in line for line in self.lines):
                if self.process.poll() is not None and not self._reader.is_alive():
                    raise AssertionError(f"the child ended before {marker!r}:\n{''.join(self.lines[-30:])}")
                self._seen.wait(timeout=1)

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.finish()

    def finish(self) -> int:
        self.process.wait(timeout=CHILD_TIMEOUT)
        self._reader.join(timeout=10)
        self._out_reader.join(timeout=10)
        return self.process.returncode

    @property
    def stdout(self) -> str:
        return "".join(self._out)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)


def wait_for_file(folder: Path, pattern: str, child: Child) -> None:
    while not list(folder.glob(pattern)):
        assert child.process.poll() is None, f"the child ended before {pattern} appeared:\n{child.stderr[-3000:]}"
        time.sleep(0.005)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, dict[str, list]]]:
    """A world, and the tables one uninterrupted refresh of DAY_1 publishes for it (once for the module)."""
    world = make_world()
    with PortalServer(world) as server, pytest.MonkeyPatch.context() as monkeypatch:
        data_dir = tmp_path_factory.mktemp("reference") / "data"
        for name, value in environment(server, data_dir, organization_slugs(world), []).items():
            monkeypatch.setenv(name, value)
        assert cli.main(["refresh", "--date", DAY_1.isoformat()]) == 0
        yield world, published_tables(data_dir, server.url)


def test_a_refresh_killed_at_any_point_then_run_again_gives_the_uninterrupted_tables(
    reference: tuple[World, dict], tmp_path: Path
) -> None:
    world, expected = reference
    with PortalServer(world, latency=0.02) as server:
        data_dir = tmp_path / "data"
        env = environment(server, data_dir, organization_slugs(world), [])
        published = data_dir / "published"
        arguments = ["refresh", "--date", DAY_1.isoformat()]
        for marker in (
            "snapshot of",  # crawling
            "checks on",  # raw rows staged and checked, inside the transaction that replaces them
            "staging.dataset_snapshots:",  # SQL models
        ):
            child = Child(arguments, env)
            child.wait_for(marker)
            child.kill()
            assert not (published / "usage.duckdb").exists(), f"nothing published after a kill at {marker!r}"
        child = Child(arguments, env)
        wait_for_file(published, ".usage.duckdb.*.tmp", child)  # killed while the publication is being written
        child.kill()
        assert not (published / "usage.duckdb").exists()

        final = Child(arguments, env)
        assert final.finish() == 0, final.stderr[-3000:]
        assert "was left started by a process that is gone" in final.stderr
        assert published_tables(data_dir, server.url) == expected
        assert not [path for path in published.rglob("*") if ".tmp" in path.name], "no temporary file left"
        with dg.DagsterInstance.from_config(str(data_dir / "dagster_home")) as instance:
            statuses = [run.status for run in instance.get_runs()]
        assert statuses.count(dg.DagsterRunStatus.FAILURE) == 4, "each killed run is marked failed"
        assert statuses.count(dg.DagsterRunStatus.SUCCESS) == 1 and len(statuses) == 5


def test_a_second_refresh_waits_for_the_first_and_both_land(reference: tuple[World, dict], tmp_path: Path) -> None:
    world, expected = reference
    with PortalServer(world, latency=0.02) as server:
        data_dir = tmp_path / "data"
        env = environment(server, data_dir, organization_slugs(world), [])
        first = Child(["refresh", "--date", DAY_1.isoformat()], env)
        first.wait_for("snapshot of")
        second = Child(["refresh", "--date", DAY_1.isoformat()], env)
        second.wait_for("to finish")  # it names the run it waits for
        assert first.finish() == 0, first.stderr[-3000:]
        assert second.finish() == 0, second.stderr[-3000:]
        assert "waiting for run" in second.stderr
        assert published_tables(data_dir, server.url) == expected


def test_a_locked_warehouse_is_waited_for_then_named(reference: tuple[World, dict], tmp_path: Path) -> None:
    world, expected = reference
    with PortalServer(world) as server:
        data_dir = tmp_path / "data"
        env = environment(server, data_dir, organization_slugs(world), [])
        data_dir.mkdir(parents=True)
        holder = subprocess.Popen(
            [sys.executable, "-c", f"import duckdb, sys; c = duckdb.connect({str(data_dir / 'warehouse.duckdb')!r}); "
             "print('holding', flush=True); sys.stdin.readline()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
            refused = Child(["refresh", "--date", DAY_1.isoformat()], {**env, "USAGE_WAREHOUSE_LOCK_WAIT": "2"})
            assert refused.finish() == 1
            assert f"{data_dir / 'warehouse.duckdb'} is locked by" in refused.stderr
            assert f"(PID {holder.pid})" in refused.stderr and "USAGE_WAREHOUSE_LOCK_WAIT=2" in refused.stderr
            assert not (data_dir / "published" / "usage.duckdb").exists()

            waiting = Child(["refresh", "--date", DAY_1.isoformat()], env)
            waiting.wait_for("is locked by")  # it waits, saying so; the holder lets go
            holder.communicate("\n", timeout=30)
            assert waiting.finish() == 0, waiting.stderr[-3000:]
        finally:
            holder.kill()
        assert published_tables(data_dir, server.url) == expected


# --- a publication that cannot write ---------------------------------------------------------------------------


def _tmpfs_available() -> bool:
    probe = Path(tempfile.mkdtemp())
    try:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)], capture_output=True)
        if mounted.returncode == 0:
            subprocess.run(["umount", str(probe)], check=True)
        return mounted.returncode == 0
    except FileNotFoundError:
        return False
    finally:
        probe.rmdir()


def test_a_full_disk_during_publication_keeps_the_previous_copy_whole(
    tmp_path: Path, use_environment: Callable[[dict], None], capsys: pytest.CaptureFixture
) -> None:
    if not _tmpfs_available():
        pytest.skip("mounting a small tmpfs (to fill a disk for real) needs root and CAP_SYS_ADMIN")
    world = make_world()
    with PortalServer(world) as server:
        data_dir = tmp_path / "data"
        use_environment(environment(server, data_dir, organization_slugs(world), []))
        assert cli.main(["refresh", "--date", DAY_1.isoformat()]) == 0
        published = data_dir / "published"
        before = published_tables(data_dir)
        kept = tmp_path / "kept"
        shutil.copytree(published, kept)
        pages = sum(-(-path.stat().st_size // 4096) for path in kept.rglob("*") if path.is_file())
        size = (pages + 100) * 4096  # the copy, and 0.4 MB to spare
        assert (kept / "usage.duckdb").stat().st_size > 100 * 4096, "a new copy cannot fit in what is spare"
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(published)], check=True)
        try:
            shutil.copytree(kept, published, dirs_exist_ok=True)  # the previous copy, on a disk nearly full
            capsys.readouterr()
            assert cli.main(["refresh", "--date", DAY_2.isoformat()]) == 1
            err = capsys.readouterr().err
            assert "published__usage" in err and str(published) in err, err
            assert published_tables(data_dir) == before, "the previous copy is whole and readable"
            assert not [path for path in published.rglob("*") if ".tmp" in path.name]
        finally:
            subprocess.run(["umount", str(published)], check=True)
        assert query(data_dir / "warehouse.duckdb", "SELECT max(snapshot_date) FROM raw.dataset_snapshots") == [
            (DAY_2,)
        ]


def test_a_publication_folder_that_cannot_be_written_keeps_the_previous_copy(
    tmp_path: Path, use_environment: Callable[[dict], None], capsys: pytest.CaptureFixture
) -> None:
    world = make_world()
    with PortalServer(world) as server:
        data_dir = tmp_path / "data"
        use_environment(environment(server, data_dir, organization_slugs(world), []))
        assert cli.main(["refresh", "--date", DAY_1.isoformat()]) == 0
        before = published_tables(data_dir)
        published = data_dir / "published"
        with write_protected(published):
            capsys.readouterr()
            assert cli.main(["refresh", "--date", DAY_2.isoformat()]) == 1
            err = capsys.readouterr().err
        assert "published__usage" in err and str(published) in err, err
        assert "Permission denied" in err or "Operation not permitted" in err, err
        assert published_tables(data_dir) == before, "the previous copy is whole and readable"
        assert query(data_dir / "warehouse.duckdb", "SELECT max(snapshot_date) FROM raw.dataset_snapshots") == [
            (DAY_2,)
        ]


@contextmanager
def write_protected(folder: Path) -> Iterator[None]:
    """No new file in ``folder`` for the block: its mode for a user; for root (who writes anywhere), the immutable
    attribute (chattr +i), or a skip where the file system or the container does not allow it."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
        pytest.skip("running as root on a file system without chattr +i: cannot forbid root to write")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)
