"""Dagster's local SQLite event log, each database file kept open: the instance the CLI writes uses it.

Dagster's `SqliteEventLogStorage` opens a new SQLite connection for every event it stores, commits it (an
fsync) and closes it (closing the last connection of a WAL database checkpoints it: more fsyncs). The daily
run stores one materialization event per (dataset, date) partition, so on an ordinary disk that is 15 to 40 ms
per followed dataset and day, most of a refresh of a few thousand datasets (see README, "Benchmark"). This
subclass keeps one connection per database file for the life of the process (SQLAlchemy's `StaticPool`,
used under the storage's own lock like every access already is) with `synchronous=NORMAL`, SQLite's
recommended setting in WAL mode: a commit is safe once the operating system has it (a power cut may lose the
last events, never corrupt the file). Same files, same schema, same configuration (`base_dir`): an instance can
switch back and forth. A deployment uses PostgreSQL instead (see deploy/).
"""

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as db
from dagster._core.storage.event_log.sqlite.sqlite_event_log import SQLITE_BUSY_TIMEOUT_SECONDS, SqliteEventLogStorage
from sqlalchemy.pool import StaticPool

OPEN_FILES = 8  # databases kept open at once (the index and the latest runs'); a long-lived webserver reads many


class KeptOpenSqliteEventLogStorage(SqliteEventLogStorage):
    """`SqliteEventLogStorage` with one connection per database file, kept open (the `OPEN_FILES` last used)."""

    def __init__(self, base_dir: str, inst_data: Any = None) -> None:
        self._engines: OrderedDict[str, db.Engine] = OrderedDict()  # before: the base class connects already
        self._tables: set[str] = set()  # tables of the index known to exist
        super().__init__(base_dir, inst_data=inst_data)

    @classmethod
    def from_config_value(cls, inst_data: Any, config_value: Any) -> "KeptOpenSqliteEventLogStorage":
        return cls(inst_data=inst_data, **config_value)

    @contextmanager
    def _connect(self, shard: str) -> Iterator[db.Connection]:
        with self._db_lock:
            engine = self._engines.get(shard)
            if engine is None:
                engine = db.create_engine(
                    self.conn_string_for_shard(shard),
                    poolclass=StaticPool,
                    connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
                )
                db.event.listen(engine, "connect", _normal_synchronous)
                if shard not in self._initialized_dbs:
                    self._initdb(engine)
                    self._initialized_dbs.add(shard)
                self._engines[shard] = engine
                while len(self._engines) > OPEN_FILES:
                    self._engines.popitem(last=False)[1].dispose()
            self._engines.move_to_end(shard)
            with engine.connect() as conn, conn.begin():
                yield conn

    def has_table(self, table_name: str) -> bool:
        """Whether the index has the table; the base class asks a new connection each time (every event)."""
        if table_name not in self._tables and super().has_table(table_name):
            self._tables.add(table_name)
        return table_name in self._tables

    def wipe(self) -> None:
        self._close_all()
        self._tables.clear()
        super().wipe()

    def dispose(self) -> None:
        self._close_all()
        super().dispose()

    def _close_all(self) -> None:
        with self._db_lock:
            while self._engines:
                self._engines.popitem()[1].dispose()


def _normal_synchronous(connection: Any, _: Any) -> None:
    connection.execute("PRAGMA synchronous=NORMAL")
