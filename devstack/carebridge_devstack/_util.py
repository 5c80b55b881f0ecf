"""Small process, file and port helpers shared by the dev stack modules."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

from carebridge_ops.hints import devstack

T = TypeVar("T")


class DevstackError(RuntimeError):
    """A failure the user can act on: ``str(err)`` says what happened, ``hint`` what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint

    def __str__(self) -> str:
        base = super().__str__()
        return f"{base}\nNext step: {self.hint}" if self.hint else base


def pid_alive(pid: int) -> bool:
    """True if ``pid`` exists and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # state is the first field after the parenthesised command name
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in {"Z", "X"}


def proc_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [p.decode(errors="replace") for p in raw.split(b"\0") if p]


def child_pids(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc)."""
    children: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 1 and fields[1] == str(pid):
            children.append(int(entry.name))
    return children


def read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip().splitlines()
    except OSError:
        return None
    if not text:
        return None
    try:
        return int(text[0].strip())
    except ValueError:
        return None


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def write_private(path: Path, text: str) -> None:
    """Write a file only its owner can read (it holds passwords), replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
    partial.replace(path)


def tail(path: Path, lines: int = 30) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode(errors="replace")
    except OSError:
        return f"(no log at {path})"
    data = _ANSI.sub("", data)
    return "\n".join(data.splitlines()[-lines:])


def file_contains(path: Path, needle: str) -> bool:
    try:
        with path.open("rb") as fh:
            return needle.encode() in fh.read()
    except OSError:
        return False


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def run_async(factory: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to completion on a private loop in a private thread.

    Safe to call from sync code whether or not the calling thread has an event loop
    (running or not): pytest-asyncio's loop is never touched.
    """
    result: list[T] = []
    error: list[BaseException] = []

    async def main() -> T:
        return await factory()

    def target() -> None:
        try:
            result.append(asyncio.run(main()))
        except BaseException as exc:
            error.append(exc)

    thread = threading.Thread(target=target, name="devstack-async", daemon=True)
    thread.start()
    thread.join()
    if error:
        raise error[0]
    return result[0]


@contextlib.contextmanager
def file_lock(path: Path, timeout: float = 600.0) -> Iterator[None]:
    """Exclusive advisory lock (flock) on ``path``; other processes wait for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    raise DevstackError(
                        f"timed out after {timeout:.0f}s waiting for lock {path}",
                        "another devstack command holds it; wait for it or check "
                        f"`{devstack('status')}`",
                    ) from exc
                time.sleep(0.2)
        yield
    finally:
        os.close(fd)


def find_repo_root(start: Path | None = None) -> Path:
    """The uv workspace root: the nearest ancestor whose pyproject.toml has a workspace.

    Looks from this package's location first (editable install inside the repo), then
    from ``start`` (default: the current directory). Falls back to ``start``.
    """
    candidates = [Path(__file__).resolve().parent, (start or Path.cwd()).resolve()]
    for origin in candidates:
        for directory in (origin, *origin.parents):
            pyproject = directory / "pyproject.toml"
            try:
                if "[tool.uv.workspace]" in pyproject.read_text():
                    return directory
            except OSError:
                continue
    return (start or Path.cwd()).resolve()


# Popen handles of the reapers this process started, kept so they are waited for
# (no zombie, no ResourceWarning) when the server stops while we are still alive.
_REAPERS: dict[int, subprocess.Popen[bytes]] = {}
_REAPER_SCRIPT = Path(__file__).with_name("_reaper.py")


def spawn_supervised(
    cmd: list[str],
    *,
    pid_file: Path,
    log_file: Path,
    cwd: Path,
    user: str | None = None,
    timeout: float = 15.0,
) -> tuple[int, int]:
    """Start ``cmd`` detached under a reaper (see ``_reaper``); return (server pid, reaper pid).

    The server's pid is also written to ``pid_file``; the reaper's to ``<pid_file>.reaper``.
    """
    pid_file.unlink(missing_ok=True)
    reaper_file = pid_file.with_name(pid_file.name + ".reaper")
    argv = [sys.executable, "-I", str(_REAPER_SCRIPT), "--pid-file", str(pid_file)]
    argv += ["--log", str(log_file), "--cwd", str(cwd)]
    if user:
        argv += ["--user", user]
    argv += ["--", *cmd]
    with log_file.open("ab") as log:
        reaper = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    _REAPERS[reaper.pid] = reaper
    reaper_file.write_text(f"{reaper.pid}\n")
    deadline = time.monotonic() + timeout
    while True:
        pid = read_pid(pid_file)
        if pid is not None:
            return pid, reaper.pid
        if reaper.poll() is not None:
            _REAPERS.pop(reaper.pid, None)
            raise DevstackError(
                f"could not start {cmd[0]} (exit {reaper.returncode}):\n{tail(log_file)}",
                f"read {log_file}",
            )
        if time.monotonic() > deadline:
            raise DevstackError(f"{cmd[0]} did not start within {timeout:.0f}s", f"read {log_file}")
        time.sleep(0.02)


def reap(pid: int | None, timeout: float = 5.0) -> None:
    """Wait (briefly) for a reaper we may have started to exit, collecting its status."""
    if pid is None:
        return
    handle = _REAPERS.pop(pid, None)
    if handle is not None:
        try:
            handle.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            handle.kill()
            handle.wait(timeout=timeout)
        return
    wait_until(lambda: not pid_alive(pid), timeout, 0.05)


def terminate(pid: int, *, timeout: float = 30.0, sig: int = signal.SIGTERM) -> bool:
    """Send ``sig``; SIGKILL after ``timeout`` s. True if it exited before the SIGKILL."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return True
    if wait_until(lambda: not pid_alive(pid), timeout, 0.05):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not pid_alive(pid), 10, 0.05)
    return False


def processes_mentioning(text: str) -> list[int]:
    """Pids (other than ours) whose command line mentions ``text`` (e.g. a stack dir)."""
    found: list[int] = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        if any(text in arg for arg in proc_cmdline(int(entry.name))) and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found
