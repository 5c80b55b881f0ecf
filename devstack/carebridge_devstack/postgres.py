"""A real PostgreSQL server as a plain process, owned by an unprivileged user.

PostgreSQL refuses to run as root, so when we are root the data directory belongs to
the system user ``carebridge`` (created on demand) and every server binary runs as it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from carebridge_ops.hints import devstack

from ._util import (
    DevstackError,
    child_pids,
    pid_alive,
    port_in_use,
    proc_cmdline,
    read_pid,
    reap,
    run_async,
    spawn_supervised,
    tail,
    terminate,
    wait_until,
)

SERVICE_USER = "carebridge"
DEFAULT_DATABASE = "carebridge"
SUPERUSER = "postgres"
_SOCKET_PATH_MAX = 100  # sun_path is 108 bytes including ".s.PGSQL.<port>"


def _version_key(path: str) -> tuple[int, ...]:
    match = re.search(r"/postgresql/([\d.]+)/", path + "/")
    return tuple(int(x) for x in match.group(1).split(".")) if match else (0,)


def find_pg_bindir() -> Path | None:
    """Directory with initdb/postgres/pg_ctl: ``$CAREBRIDGE_PG_BINDIR``, the newest
    ``/usr/lib/postgresql/*/bin``, ``pg_config --bindir``, or ``initdb`` on PATH."""
    override = os.environ.get("CAREBRIDGE_PG_BINDIR")
    candidates: list[Path] = [Path(override)] if override else []
    candidates += [
        Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key)[::-1]
    ]
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            candidates.append(Path(out.stdout.strip()))
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).parent)
    for directory in candidates:
        if all((directory / exe).exists() for exe in ("initdb", "postgres", "pg_ctl")):
            return directory
    return None


def install_postgres(console: Console | None = None) -> Path:
    """``apt-get update && apt-get install -y postgresql`` (root only)."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise DevstackError(
            "PostgreSQL server binaries (initdb, postgres, pg_ctl) are not installed",
            "install them: `sudo apt-get install -y postgresql` (Debian/Ubuntu), or set "
            "CAREBRIDGE_PG_BINDIR to a directory holding them",
        )
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    status = (
        console.status("Installing PostgreSQL with apt-get (first run only)…")
        if console is not None
        else contextlib.nullcontext()
    )
    with status:
        for cmd in (
            ["apt-get", "update"],
            ["apt-get", "install", "-y", "--no-install-recommends", "postgresql"],
        ):
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
            if out.returncode != 0:
                raise DevstackError(
                    f"`{' '.join(cmd)}` failed (exit {out.returncode}):\n"
                    + "\n".join((out.stdout + out.stderr).splitlines()[-20:]),
                    "fix apt (network, sources.list) or install PostgreSQL yourself, then rerun",
                )
    bindir = find_pg_bindir()
    if bindir is None:
        raise DevstackError(
            "apt-get installed postgresql but initdb/postgres were not found",
            "set CAREBRIDGE_PG_BINDIR to the directory holding initdb and postgres",
        )
    if console is not None:
        console.print(f"[green]Installed PostgreSQL[/] ({bindir})")
    return bindir


def ensure_service_user(name: str = SERVICE_USER) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    out = subprocess.run(
        [useradd, "--system", "--no-create-home", "--user-group",
         "--shell", "/usr/sbin/nologin", "--home-dir", "/nonexistent", name],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode not in (0, 9):  # 9: already exists (created concurrently)
        raise DevstackError(
            f"could not create system user {name!r}: {out.stderr.strip()}",
            f"create it yourself: useradd --system --no-create-home {name}",
        )
    return pwd.getpwnam(name)


class PostgresServer:
    """One PostgreSQL cluster in ``base_dir`` (``data/``, ``postgres.log``, ``run/``)."""

    def __init__(
        self,
        base_dir: Path,
        *,
        port: int = 25432,
        fsync: bool = True,
        database: str = DEFAULT_DATABASE,
        max_connections: int = 300,
        extra_settings: dict[str, str] | None = None,
    ) -> None:
        self.base_dir = base_dir
        self.port = port
        self.fsync = fsync
        self.database = database
        self.max_connections = max_connections
        self.extra_settings = dict(extra_settings or {})
        self.data_dir = base_dir / "data"
        self.log_file = base_dir / "postgres.log"
        self.pid_file = base_dir / "postgres.pid"
        socket_dir = base_dir / "run"
        if len(str(socket_dir)) > _SOCKET_PATH_MAX - 20:
            socket_dir = Path(f"/tmp/carebridge-pg-{port}")
        self.socket_dir = socket_dir
        self._bindir: Path | None = None
        self._user: pwd.struct_passwd | None = None

    # -- identity and binaries

    @property
    def url(self) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{self.database}"

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def bindir(self, console: Console | None = None) -> Path:
        if self._bindir is None:
            self._bindir = find_pg_bindir() or install_postgres(console)
        return self._bindir

    def _run_as(self) -> pwd.struct_passwd | None:
        """The user to run server binaries as (None: ourselves, when not root)."""
        if os.geteuid() != 0:
            return None
        if self._user is None:
            self._user = ensure_service_user()
        return self._user

    def _subprocess_kwargs(self) -> dict[str, Any]:
        user = self._run_as()
        kwargs: dict[str, Any] = {"cwd": str(self.base_dir)}
        if user is not None:
            kwargs.update(user=user.pw_uid, group=user.pw_gid, extra_groups=[])
            kwargs["env"] = dict(os.environ, HOME=str(self.base_dir), USER=user.pw_name)
        return kwargs

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            list(args), capture_output=True, text=True, check=False, **self._subprocess_kwargs()
        )
        if check and out.returncode != 0:
            raise DevstackError(
                f"`{' '.join(args)}` failed (exit {out.returncode}):\n"
                f"{(out.stdout + out.stderr).strip()[-3000:]}",
                f"read {self.log_file}; if the data directory is damaged run "
                f"`{devstack('down --purge')}`",
            )
        return out

    def _check_traversable(self, user: pwd.struct_passwd) -> None:
        """The service user must be able to reach base_dir through every parent."""
        for parent in [self.base_dir, *self.base_dir.parents]:
            try:
                st = parent.stat()
            except FileNotFoundError:
                continue
            if st.st_uid == user.pw_uid:
                continue
            if not st.st_mode & 0o001:
                raise DevstackError(
                    f"user {user.pw_name!r} (PostgreSQL never runs as root) cannot enter "
                    f"{parent} (mode {oct(st.st_mode & 0o777)})",
                    f"`chmod o+x {parent}` or put the stack elsewhere with "
                    "CAREBRIDGE_STACK_DIR=/some/traversable/dir",
                )

    def _prepare_dirs(self) -> None:
        user = self._run_as()
        for directory in (self.base_dir, self.socket_dir):
            directory.mkdir(parents=True, exist_ok=True)
        if user is not None:
            self._check_traversable(user)
            for path in (self.base_dir, self.socket_dir):
                os.chown(path, user.pw_uid, user.pw_gid)
            if self.data_dir.exists():
                os.chown(self.data_dir, user.pw_uid, user.pw_gid)
            self.log_file.touch(exist_ok=True)
            os.chown(self.log_file, user.pw_uid, user.pw_gid)
        self.base_dir.chmod(0o755)

    def is_initialized(self) -> bool:
        return (self.data_dir / "PG_VERSION").is_file()

    def initdb(self, console: Console | None = None) -> None:
        if self.is_initialized():
            return
        bindir = self.bindir(console)
        self._prepare_dirs()
        args = [
            str(bindir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
            "--auth=trust", "-E", "UTF8", "--locale=C",
        ]  # fmt: skip
        if not self.fsync:
            args.append("--no-sync")
        self._run(*args)

    # -- process

    def pid(self) -> int | None:
        """The postmaster's pid if it runs on our data directory."""
        pid = read_pid(self.data_dir / "postmaster.pid")
        if pid is None or not pid_alive(pid):
            return None
        cmdline = proc_cmdline(pid)
        if cmdline and str(self.data_dir) not in cmdline:
            return None
        return pid

    def is_running(self) -> bool:
        return self.pid() is not None

    def is_healthy(self, timeout: float = 5.0) -> bool:
        return self.is_running() and self._probe(timeout) is None

    def server_args(self) -> list[str]:
        settings = {
            "listen_addresses": "127.0.0.1",
            "max_connections": str(self.max_connections),
            "fsync": "on" if self.fsync else "off",
            "unix_socket_directories": str(self.socket_dir),
            "logging_collector": "off",
            **self.extra_settings,
        }
        args = ["-p", str(self.port)]
        for key, value in settings.items():
            args += ["-c", f"{key}={value}"]
        return args

    def start(self, timeout: float = 90.0, console: Console | None = None) -> None:
        """initdb if needed, start the postmaster, wait until ready, create the database."""
        if self.pid() is None:
            self.initdb(console)
            self._prepare_dirs()
            if port_in_use(self.port):
                raise DevstackError(
                    f"port {self.port} (PostgreSQL) is in use by another process",
                    f"find it with `ss -ltnp | grep {self.port}` and stop it, or set "
                    "CAREBRIDGE_PG_PORT",
                )
            user = self._run_as()
            # the same as `pg_ctl start -w`, but the postmaster stays a child of our reaper
            cmd = [str(self.bindir(console) / "postgres"), "-D", str(self.data_dir)]
            cmd += self.server_args()
            spawn_supervised(
                cmd,
                pid_file=self.pid_file,
                log_file=self.log_file,
                cwd=self.base_dir,
                user=user.pw_name if user else None,
            )
        self.wait_ready(timeout)
        self.ensure_database(self.database)

    async def _aprobe(self, connect_timeout: float) -> str | None:
        import asyncpg

        try:
            conn = await asyncpg.connect(self.admin_url(), timeout=connect_timeout)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        try:
            value = await conn.fetchval("SELECT 1")
            return None if value == 1 else f"SELECT 1 returned {value!r}"
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        finally:
            await conn.close()

    def _probe(self, timeout: float) -> str | None:
        return run_async(lambda: self._aprobe(timeout))

    def _pg_isready(self) -> bool:
        exe = self.bindir() / "pg_isready"
        if not exe.exists():
            return True
        out = subprocess.run(
            [str(exe), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", SUPERUSER,
             "-d", "postgres", "-t", "2"],
            capture_output=True, check=False,
        )  # fmt: skip
        return out.returncode == 0

    def wait_ready(self, timeout: float = 90.0) -> None:
        """Ready = ``pg_isready`` accepts and a real asyncpg connection runs ``SELECT 1``."""
        deadline = time.monotonic() + timeout
        reason = "not started"
        while time.monotonic() < deadline:
            server = read_pid(self.pid_file)
            if self.pid() is None and (server is None or not pid_alive(server)):
                raise DevstackError(
                    f"PostgreSQL exited during startup. Last lines of {self.log_file}:\n"
                    f"{tail(self.log_file, 25)}",
                    f"fix the cause shown above (full log: {self.log_file}); if the data "
                    f"directory is damaged run `{devstack('down --purge')}`",
                )
            if not self._pg_isready():
                reason = "pg_isready: not accepting connections"
                time.sleep(0.1)
                continue
            problem = self._probe(max(1.0, min(5.0, deadline - time.monotonic())))
            if problem is None:
                return
            reason = problem
            time.sleep(0.2)
        raise DevstackError(
            f"PostgreSQL was not ready within {timeout:.0f}s ({reason}). Last lines of "
            f"{self.log_file}:\n{tail(self.log_file, 25)}",
            f"read {self.log_file}; `{devstack('down')}` then `{devstack('up')}` to retry",
        )

    def ensure_database(self, name: str) -> None:
        import asyncpg

        async def create() -> None:
            conn = await asyncpg.connect(self.admin_url(), timeout=10)
            try:
                exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
                if not exists:
                    quoted = '"' + name.replace('"', '""') + '"'
                    with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                        await conn.execute(f"CREATE DATABASE {quoted}")
            finally:
                await conn.close()

        run_async(create)

    def stop(self, timeout: float = 60.0) -> bool:
        """``pg_ctl stop -m fast -w``; SIGQUIT/SIGKILL if that fails. True if clean."""
        pid = self.pid()
        reaper = read_pid(self.pid_file.with_name(self.pid_file.name + ".reaper"))
        if pid is None:
            reap(reaper, 1)
            return True
        children = child_pids(pid)
        clean = True
        out = self._run(
            str(self.bindir() / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "fast", "-w",
            "-t", str(int(timeout)), check=False,
        )  # fmt: skip
        if out.returncode != 0 and pid_alive(pid):
            clean = terminate(pid, timeout=10, sig=signal.SIGQUIT)
        for child in children:  # backends die with the postmaster; make sure
            if pid_alive(child):
                terminate(child, timeout=5)
        reap(reaper, 10)
        self.pid_file.unlink(missing_ok=True)
        return clean

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the postmaster. For SIGKILL (a crash), return once it and its
        backends are gone, so a restart does not trip over their shared memory."""
        pid = self.pid()
        if pid is None:
            return
        children = child_pids(pid)
        os.kill(pid, sig)
        if sig == signal.SIGKILL:
            wait_until(lambda: not pid_alive(pid), 10, 0.02)
            # backends notice that the postmaster died and exit on their own
            if not wait_until(lambda: not any(pid_alive(c) for c in children), 10, 0.02):
                for child in children:
                    terminate(child, timeout=1, sig=signal.SIGKILL)
            reap(read_pid(self.pid_file.with_name(self.pid_file.name + ".reaper")), 5)

    def restart(self, timeout: float = 90.0) -> None:
        self.stop()
        self.start(timeout)

    def purge(self) -> None:
        shutil.rmtree(self.base_dir, ignore_errors=True)
        if self.socket_dir.is_relative_to("/tmp"):
            shutil.rmtree(self.socket_dir, ignore_errors=True)
