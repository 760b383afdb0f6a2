"""Dagster storage in PostgreSQL: with MEDMO_PG_* set, ``medmo`` writes an instance dagster.yaml whose
storage is Postgres (settings as ``{env: ...}`` references), and a materialization's run and events
land in a real PostgreSQL server started on loopback for the test.

The server comes from Debian's ``postgresql`` package (``scripts/install-system-deps.sh``); without
its binaries the test skips and says so. It runs from a temporary directory (data, unix socket, log),
listens on 127.0.0.1 on a free port, requires a password over TCP (scram-sha-256), runs as user
``postgres`` when the tests run as root (PostgreSQL refuses root), and is stopped by PID on teardown.
"""

from __future__ import annotations

import glob
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, small_recipe_data, write_recipe

BINARIES = ("initdb", "postgres", "pg_isready")
STARTUP_TIMEOUT_S = 60


@dataclass
class PostgresServer:
    port: int
    user: str
    password: str
    db_name: str
    root: Path
    process: subprocess.Popen

    @property
    def env(self) -> dict[str, str]:
        """The variables medmo reads to choose PostgreSQL storage."""
        return {"MEDMO_PG_HOST": "127.0.0.1", "MEDMO_PG_PORT": str(self.port), "MEDMO_PG_USER": self.user,
                "MEDMO_PG_PASSWORD": self.password, "MEDMO_PG_DB": self.db_name}

    def connect(self, password: str | None = None, db_name: str | None = None):
        import psycopg2  # comes with dagster-postgres

        return psycopg2.connect(host="127.0.0.1", port=self.port, user=self.user,
                                password=self.password if password is None else password,
                                dbname=db_name or self.db_name, connect_timeout=10)

    def log(self) -> str:
        path = self.root / "postgres.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def postgres_bin_dir() -> Path | None:
    """Newest /usr/lib/postgresql/<version>/bin holding every binary the fixture runs."""
    candidates = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    for directory in reversed(candidates):
        if all((Path(directory) / name).is_file() for name in BINARIES):
            return Path(directory)
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def postgres_server() -> Iterator[PostgresServer]:
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin with "
                    f"{', '.join(BINARIES)}); run scripts/install-system-deps.sh to install postgresql")
    as_user: list[str] = []
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no user 'postgres' to run the server as "
                        "(PostgreSQL refuses root); install the postgresql package")
        as_user = ["setpriv", f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}", "--init-groups"]
    # Not under pytest's 0700 tmp dirs: the server runs as user postgres and must reach its directory.
    root = Path(tempfile.mkdtemp(prefix="medmo-pg-"))
    root.chmod(0o755)
    (root / "socket").mkdir()
    password = secrets.token_urlsafe(24)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    if owner is not None:
        for path in (root, root / "socket", pwfile):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    user, db_name, port = "medmo", "medmo_dagster", free_port()
    process = None
    try:
        subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(root / "data"), "-U", user, "-E", "UTF8",
                        "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}", "--no-sync"],
                       check=True, capture_output=True, text=True, timeout=120)
        pwfile.unlink()
        with open(root / "postgres.log", "wb") as log:
            # Own session, so teardown can signal the postmaster and its backends by PID.
            process = subprocess.Popen(
                [*as_user, str(bin_dir / "postgres"), "-D", str(root / "data"), "-p", str(port),
                 "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={root / 'socket'}",
                 "-c", "fsync=off", "-c", "full_page_writes=off"],  # a throwaway server: speed over durability
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while subprocess.run([str(bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(port)],
                             check=False).returncode != 0:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not start on 127.0.0.1:{port}:\n"
                                   f"{(root / 'postgres.log').read_text(errors='replace')[-4000:]}")
            time.sleep(0.2)
        server = PostgresServer(port=port, user=user, password=password, db_name=db_name, root=root,
                                process=process)
        admin = server.connect(db_name="postgres")
        admin.autocommit = True
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE {db_name}")
        admin.close()
        yield server
    finally:
        if process is not None:
            _stop(process)
        shutil.rmtree(root, ignore_errors=True)


def _stop(process: subprocess.Popen) -> None:
    # SIGINT is PostgreSQL's fast shutdown (ends sessions, checkpoints, exits); then the group by force.
    for sig, grace in ((signal.SIGINT, 30), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


# ---- the instance configuration (pure; no server) ----------------------------------------------------------

def test_sqlite_unless_medmo_pg_host_is_set():
    from medmo_pipeline.instance import instance_yaml, storage_kind

    base = (ROOT / "dagster.yaml").read_text()
    assert storage_kind({}) == "sqlite"
    assert instance_yaml(base, {"MEDMO_PG_PASSWORD": "x"}) == base  # a password alone selects nothing


def test_postgres_section_names_variables_and_requires_them():
    from medmo_pipeline.instance import InstanceConfigError, instance_yaml

    base = (ROOT / "dagster.yaml").read_text()
    values = {"MEDMO_PG_HOST": "db-7f3a.internal", "MEDMO_PG_USER": "user-7f3a", "MEDMO_PG_PASSWORD": "pw-7f3a9c",
              "MEDMO_PG_DB": "db-name-7f3a"}
    text = instance_yaml(base, values)
    for value in values.values():
        assert value not in text
    config = yaml.safe_load(text)
    assert config["storage"] == {"postgres": {"postgres_db": {
        "hostname": {"env": "MEDMO_PG_HOST"}, "username": {"env": "MEDMO_PG_USER"},
        "password": {"env": "MEDMO_PG_PASSWORD"}, "db_name": {"env": "MEDMO_PG_DB"},
        "scheme": "postgresql+psycopg2"}}}
    assert config["concurrency"] == yaml.safe_load(base)["concurrency"]  # the rest is kept
    with_port = yaml.safe_load(instance_yaml(base, {**values, "MEDMO_PG_PORT": "6543"}))
    assert with_port["storage"]["postgres"]["postgres_db"]["port"] == {"env": "MEDMO_PG_PORT"}
    with pytest.raises(InstanceConfigError, match="MEDMO_PG_PASSWORD"):
        instance_yaml(base, {k: v for k, v in values.items() if k != "MEDMO_PG_PASSWORD"})
    with pytest.raises(InstanceConfigError, match="already configures storage"):
        instance_yaml(base + "storage:\n  sqlite:\n    base_dir: /x\n", values)


# ---- a real server ---------------------------------------------------------------------------------------------

@pytest.mark.e2e
def test_materialization_records_land_in_postgres(postgres_server, tmp_path, monkeypatch):
    server = postgres_server
    with pytest.raises(Exception, match="password authentication failed"):
        server.connect(password="wrong")  # TCP logins need the password: the env reference is what works

    recipe = write_recipe(tmp_path / "small.yaml", small_recipe_data())
    home = tmp_path / "home"
    env = {**os.environ, **server.env, "MEDMO_HOME": str(home), "MEDMO_RECIPE": str(recipe)}
    env.pop("DAGSTER_HOME", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    out = subprocess.run([sys.executable, "-m", "medmo_pipeline.cli", "demo", "--select", "base_model"],
                         check=False, capture_output=True, text=True, cwd=ROOT, env=env, timeout=600)
    output = out.stdout + out.stderr
    assert out.returncode == 0, output[-4000:] + "\n--- postgres log\n" + server.log()
    assert server.password not in output

    dagster_home = home / "dagster"
    written = (dagster_home / "dagster.yaml").read_text()
    assert server.password not in written
    assert yaml.safe_load(written)["storage"]["postgres"]["postgres_db"]["password"] == {"env": "MEDMO_PG_PASSWORD"}
    # sqlite storage would have left runs.db / event and schedule databases here.
    assert sorted(p.relative_to(dagster_home).as_posix() for p in dagster_home.rglob("*.db")) == []

    import dagster as dg

    for name, value in server.env.items():
        monkeypatch.setenv(name, value)
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    try:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        event = instance.get_latest_materialization_event(dg.AssetKey("base_model"))
        assert event is not None and event.asset_materialization is not None
        assert Path(str(event.asset_materialization.metadata["path"].value)).is_dir()
        run = instance.get_run_by_id(event.run_id)
        assert run is not None and run.status == dg.DagsterRunStatus.SUCCESS
        run_id = run.run_id
    finally:
        instance.dispose()

    # The same records, read with SQL straight from the server.
    connection = server.connect()
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT status FROM runs WHERE run_id = %s", (run_id,))
            assert cursor.fetchall() == [("SUCCESS",)]
            cursor.execute("SELECT count(*) FROM event_logs WHERE run_id = %s AND asset_key = %s "
                           "AND dagster_event_type = 'ASSET_MATERIALIZATION'", (run_id, '["base_model"]'))
            assert cursor.fetchone() == (1,)
            cursor.execute("SELECT count(*) FROM event_logs WHERE event LIKE %s", (f"%{server.password}%",))
            assert cursor.fetchone() == (0,)  # nothing logged the environment into the event log
    finally:
        connection.close()

    leaked = [str(p) for p in home.rglob("*") if p.is_file() and server.password.encode() in p.read_bytes()]
    assert leaked == []
