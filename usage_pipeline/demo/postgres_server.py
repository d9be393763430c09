"""A throwaway PostgreSQL server for the tests and the benchmark: `initdb` and `pg_ctl` in a temporary folder,
on a free port of 127.0.0.1, stopped and removed at the end.

PostgreSQL refuses to run as root: as root, the server runs as the ``postgres`` user (``runuser -u postgres``)
in a folder that user owns. Connections trust local clients: the cluster lives for one test run.
"""

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

SUPERUSER = "postgres"


def postgres_available() -> str | None:
    """Why no throwaway server can start here (None when one can)."""
    missing = [name for name in ("initdb", "pg_ctl", "postgres") if shutil.which(name) is None]
    if missing:
        return f"no {', '.join(missing)} on the PATH (PostgreSQL's server binaries)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SUPERUSER)
        except KeyError:
            return "running as root without a `postgres` user to run the server as"
        if shutil.which("runuser") is None:
            return "running as root without `runuser` to start the server as `postgres`"
    return None


class PostgresServer:
    """``with PostgresServer() as pg:`` then connect to ``pg.url`` (database ``postgres``, user ``postgres``)."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="usage-pg-"))
        self.data = self.folder / "data"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.host = "127.0.0.1"

    @property
    def url(self) -> str:
        return self.url_of("postgres")

    def url_of(self, database: str, user: str = SUPERUSER, password: str | None = None) -> str:
        credentials = f"{user}:{password}" if password else user
        return f"postgresql://{credentials}@{self.host}:{self.port}/{database}"

    def _run(self, *command: str) -> None:
        as_user = ["runuser", "-u", SUPERUSER, "--"] if os.geteuid() == 0 else []
        subprocess.run([*as_user, *command], check=True, capture_output=True, text=True)

    def start(self) -> "PostgresServer":
        if os.geteuid() == 0:
            account = pwd.getpwnam(SUPERUSER)
            os.chown(self.folder, account.pw_uid, account.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8", "--no-locale")
        options = f"-p {self.port} -k {self.folder} -c listen_addresses={self.host} -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.folder / "server.log"), "-w", "start")
        return self

    def create_database(self, name: str) -> str:
        """A new database; returns its URL."""
        self._run("psql", "-h", self.host, "-p", str(self.port), "-U", SUPERUSER, "-c", f'CREATE DATABASE "{name}"')
        return self.url_of(name)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "PostgresServer":
        try:
            return self.start()
        except subprocess.CalledProcessError as error:
            self.stop()
            raise RuntimeError(f"{' '.join(error.cmd)} failed: {error.stderr.strip()}") from None

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.stop()
