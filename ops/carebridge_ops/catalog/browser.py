"""Serve the catalog over local HTTP and look at it with Debian's headless Chromium."""

from __future__ import annotations

import contextlib
import functools
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# Without the background-networking flags Chromium keeps dialling Google services, which this
# offline machine refuses noisily. --no-sandbox: the suite runs as root.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
CHROMIUM_TIMEOUT_SECONDS = 120


class BrowserError(RuntimeError):
    """Chromium is missing or could not render the page."""


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr."""


@contextlib.contextmanager
def serving(directory: Path, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve `directory` over HTTP (port 0: any free one); yields the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = ThreadingHTTPServer((host, port), handler)
    thread = threading.Thread(target=server.serve_forever, name="catalog-http", daemon=True)
    thread.start()
    try:
        yield f"http://{host}:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def chromium_binary() -> str:
    binary = shutil.which("chromium")
    if binary is None:
        raise BrowserError(
            "Chromium is not installed: run `make install` (it installs Debian's chromium "
            "package) or `apt-get install chromium`"
        )
    return binary


def _run(arguments: list[str]) -> str:
    with tempfile.TemporaryDirectory(prefix="carebridge-chromium-") as profile:
        done = subprocess.run(
            [chromium_binary(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *arguments],
            capture_output=True,
            text=True,
            timeout=CHROMIUM_TIMEOUT_SECONDS,
            check=False,
        )
    if done.returncode != 0:
        raise BrowserError(f"chromium exited with {done.returncode}: {done.stderr[-2000:]}")
    return done.stdout


def dump_dom(url: str) -> str:
    """The DOM Chromium built from `url`, serialised as HTML."""
    return _run(["--dump-dom", url])


def screenshot(url: str, out: Path, *, width: int, height: int) -> Path:
    """A PNG of the first `width` x `height` pixels of `url`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    _run([f"--screenshot={out.resolve()}", f"--window-size={width},{height}", url])
    if not out.is_file():
        raise BrowserError(f"chromium wrote no screenshot to {out}")
    return out
