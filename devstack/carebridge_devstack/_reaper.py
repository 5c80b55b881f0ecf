"""Tiny supervisor that owns one long-running server process and reaps it.

``python -I .../_reaper.py --pid-file F --log L [--user U] [--cwd D] -- cmd...``

Why: a detached server (Kafka, postgres) outlives the command that started it and is
re-parented. On machines whose PID 1 reaps orphans late or never (minimal VM/container
inits) every stopped server would then linger as a ``<defunct>`` zombie. The reaper
marks itself a child subreaper, starts ``cmd`` (its output appended to ``L``), writes
the server's pid to ``F``, forwards SIGTERM/SIGINT to it, reaps it and anything it
orphaned, and exits with the server's exit status. The server is signalled directly
by pid; the reaper needs no attention.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

PR_SET_NAME = 15
PR_SET_CHILD_SUBREAPER = 36


def _prctl(option: int, arg: int | bytes) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(option, arg, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: best effort
        pass


def main(argv: list[str] | None = None) -> int:
    args, cmd = _parse(argv)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    _prctl(PR_SET_NAME, b"cb-reaper")
    child = _spawn(cmd, log=args.log, user=args.user, cwd=args.cwd)
    tmp = args.pid_file.with_name(args.pid_file.name + ".tmp")
    tmp.write_text(f"{child.pid}\n")
    os.replace(tmp, args.pid_file)

    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    status = _reap_until_none_left(child.pid)
    if status < 0:  # killed by a signal: mimic the shell convention
        return 128 - status
    return status


def _parse(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(prog="carebridge_devstack._reaper")
    parser.add_argument("--pid-file", required=True, type=Path)
    parser.add_argument("--log", required=True, type=Path)
    parser.add_argument("--user", default=None)
    parser.add_argument("--cwd", default=None)
    parser.add_argument("cmd", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    cmd = list(args.cmd)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        parser.error("missing command after --")
    return args, cmd


def _spawn(
    cmd: list[str], *, log: Path, user: str | None, cwd: str | None
) -> subprocess.Popen[bytes]:
    """`cmd` with its output appended to `log`, as `user` (its own HOME, USER, umask 077)."""
    kwargs: dict[str, Any] = {}
    env = dict(os.environ)
    if user:
        import pwd

        entry = pwd.getpwnam(user)
        kwargs.update(user=entry.pw_uid, group=entry.pw_gid, extra_groups=[], umask=0o077)
        env["HOME"] = cwd or "/"
        env["USER"] = env["LOGNAME"] = user
    with open(log, "ab") as out:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env,
            **kwargs,
        )


def _reap_until_none_left(child_pid: int) -> int:
    """Wait for every descendant (this process is their subreaper); the child's exit code."""
    status = 0
    while True:
        try:
            pid, wstatus = os.wait()
        except ChildProcessError:
            return status
        if pid == child_pid:
            status = os.waitstatus_to_exitcode(wstatus)


if __name__ == "__main__":
    sys.exit(main())
