"""Every published table of two daily refreshes of a fixed generated world, compared with a recorded fingerprint.

A change of the pipeline's internals (how it fetches, how it runs the models, how Dagster records runs) must not
change what BI tools read: this test says so table by table. When a change of the tables is intended, record
them again with ``USAGE_UPDATE_SNAPSHOT=1 python -m pytest usage_pipeline_tests/test_published_snapshot.py``
and say why in the commit.
"""

import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import duckdb
import pytest

from usage_pipeline import cli
from usage_pipeline.demo.portal_server import PortalServer
from usage_pipeline.demo.world import advance_day, generate_world
from usage_pipeline_tests.conftest import portal_environment

SNAPSHOT = Path(__file__).parent / "data" / "published_tables.json"
WORLD_DAY = dt.date(2026, 11, 19)
DAYS = (dt.date(2026, 11, 20), dt.date(2026, 11, 21))
VOLATILE = {"quality_results"}  # run ids and evaluation times


def fingerprint(database: Path, portal_url: str) -> dict[str, dict[str, object]]:
    """Rows and a SHA-256 of the sorted rows of each published table (the local portal's address neutralized)."""
    tables = {}
    with duckdb.connect(str(database), read_only=True) as conn:
        for (name,) in conn.execute("SELECT table_name FROM duckdb_tables() ORDER BY 1").fetchall():
            if name in VOLATILE:
                continue
            rows = sorted(
                json.dumps([str(value).replace(portal_url, "<portal>") for value in row], ensure_ascii=False)
                for row in conn.execute(f"SELECT * FROM reporting.{name}").fetchall()
            )
            digest = hashlib.sha256("\n".join(rows).encode("utf-8")).hexdigest()
            tables[name] = {"rows": len(rows), "sha256": digest}
    return tables


def test_two_days_on_a_fixed_world_publish_the_recorded_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    world = generate_world(3, 6, seed=5, today=WORLD_DAY)
    with PortalServer(world) as server:
        slugs = [organization["slug"] for organization in world.organizations.values()]
        environment = portal_environment(server.url, tmp_path / "data", slugs, ())
        for name, value in (environment | {"DAGSTER_HOME": str(tmp_path / "dagster_home")}).items():
            monkeypatch.setenv(name, value)
        for number, day in enumerate(DAYS):
            if number:
                advance_day(world, seed=number)
            assert cli.main(["refresh", "--date", day.isoformat()]) == 0
        tables = fingerprint(tmp_path / "data" / "published" / "usage.duckdb", server.url)
    if os.environ.get("USAGE_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(json.dumps(tables, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    recorded = json.loads(SNAPSHOT.read_text(encoding="utf-8"))
    assert {name: table["rows"] for name, table in tables.items()} == {
        name: table["rows"] for name, table in recorded.items()
    }
    assert [name for name in tables if tables[name] != recorded.get(name)] == []
