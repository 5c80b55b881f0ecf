"""A local SMTP sink: accepts every message and keeps it (``.eml`` files + memory).

In-process (tests)::

    with SmtpSink(tmp_path / "mail") as sink:          # free port on 127.0.0.1
        send_mail(host=sink.host, port=sink.port, ...)
        [mail] = sink.mailbox.wait_for(1)
        assert mail.to == ["patient@example.org"] and "Reminder" in mail.subject

As a process (journey tests, manual runs)::

    python -m carebridge_devstack.smtp_sink --port 2525 --dir .stack/mail [--fail-first 2]

and read it back from any process with ``Mailbox(".stack/mail")`` — no HTTP involved.

Failure injection: ``fail_first=N`` answers the first N transactions with
``451 4.3.0`` (a temporary failure a well-behaved client retries), at the DATA stage by
default or at RCPT with ``fail_stage="rcpt"`` (each refused recipient counts).
"""

from __future__ import annotations

import argparse
import email
import email.policy
import itertools
import os
import signal
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from aiosmtpd.controller import Controller

from ._util import free_port

FailStage = Literal["data", "rcpt"]
TEMPORARY_FAILURE = "451 4.3.0 Temporary failure (injected by carebridge smtp sink)"
ENVELOPE_FROM = "X-Sink-Envelope-From"
ENVELOPE_TO = "X-Sink-Envelope-To"
RECEIVED_AT = "X-Sink-Received-At"  # epoch seconds when the sink accepted the message


TEMPLATE_HEADER = "X-Carebridge-Template"  # set by notification's mailer


@dataclass(frozen=True)
class ReceivedMail:
    """One stored message: the parsed ``EmailMessage`` plus convenient fields."""

    path: Path | None
    message: EmailMessage
    envelope_from: str
    envelope_to: list[str]

    @property
    def to(self) -> list[str]:
        """Envelope recipients (falls back to the To: header)."""
        if self.envelope_to:
            return list(self.envelope_to)
        return [a.strip() for a in str(self.message.get("To", "")).split(",") if a.strip()]

    @property
    def received_at(self) -> float | None:
        """When the sink accepted the message (epoch seconds)."""
        value = self.message.get(RECEIVED_AT)
        return float(value) if value is not None else None

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    @property
    def template(self) -> str:
        """The notification template the message was rendered from (its header)."""
        return str(self.message.get(TEMPLATE_HEADER, ""))

    @property
    def is_education(self) -> bool:
        """A patient-education message (issue 17), not about a visit."""
        return self.template.startswith("education_")

    @property
    def body(self) -> str:
        """The text/plain part (else text/html), decoded."""
        part = self.message.get_body(preferencelist=("plain", "html"))
        if part is None:
            return ""
        content = part.get_content()
        return content if isinstance(content, str) else content.decode(errors="replace")


def _parse(raw: bytes, path: Path | None) -> ReceivedMail:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    envelope_to = [a.strip() for a in str(message.get(ENVELOPE_TO, "")).split(",") if a.strip()]
    return ReceivedMail(
        path=path,
        message=message,
        envelope_from=str(message.get(ENVELOPE_FROM, "")),
        envelope_to=envelope_to,
    )


class Mailbox:
    """Reads the ``.eml`` files a sink wrote to ``directory`` (oldest first)."""

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def paths(self) -> list[Path]:
        if not self.directory.is_dir():
            return []
        return sorted(self.directory.glob("*.eml"))

    def messages(self) -> list[ReceivedMail]:
        return [_parse(p.read_bytes(), p) for p in self.paths()]

    def __len__(self) -> int:
        return len(self.paths())

    def to(self, address: str) -> list[ReceivedMail]:
        """Messages for one recipient (case-insensitive)."""
        wanted = address.lower()
        return [m for m in self.messages() if wanted in (a.lower() for a in m.to)]

    def wait_for(self, count: int = 1, timeout: float = 10.0) -> list[ReceivedMail]:
        """Wait until at least ``count`` messages are stored; return them all."""
        deadline = time.monotonic() + timeout
        while len(self) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{len(self)} message(s) in {self.directory} after {timeout}s, wanted {count}"
                )
            time.sleep(0.05)
        return self.messages()

    def clear(self) -> None:
        for path in self.paths():
            path.unlink(missing_ok=True)


@dataclass
class SinkHandler:
    """aiosmtpd handler: stores messages, optionally refusing the first N with 451."""

    directory: Path
    fail_first: int = 0
    fail_stage: FailStage = "data"
    received: list[ReceivedMail] = field(default_factory=list)
    failures_injected: int = 0
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _should_fail(self, stage: FailStage) -> bool:
        with self._lock:
            if stage == self.fail_stage and self.failures_injected < self.fail_first:
                self.failures_injected += 1
                return True
            return False

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if self._should_fail("rcpt"):
            return TEMPORARY_FAILURE
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self._should_fail("data"):
            return TEMPORARY_FAILURE
        raw = envelope.original_content or envelope.content
        if isinstance(raw, str):
            raw = raw.encode()
        headers = (
            f"{ENVELOPE_FROM}: {envelope.mail_from}\r\n"
            f"{ENVELOPE_TO}: {', '.join(envelope.rcpt_tos)}\r\n"
            f"{RECEIVED_AT}: {time.time():.6f}\r\n"
        ).encode()
        data = headers + raw
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns()}-{next(self._seq):06d}-{uuid.uuid4().hex[:8]}.eml"
        tmp = self.directory / f".{name}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, self.directory / name)
        with self._lock:
            self.received.append(_parse(data, self.directory / name))
        return "250 Message accepted for delivery"


class SmtpSink:
    """A threaded SMTP server on ``host:port`` (port 0: a free port) storing into ``directory``."""

    def __init__(
        self,
        directory: Path | str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        fail_first: int = 0,
        fail_stage: FailStage = "data",
    ) -> None:
        self.directory = Path(directory)
        self.host = host
        self.port = port or free_port(host)
        self.handler = SinkHandler(self.directory, fail_first=fail_first, fail_stage=fail_stage)
        self._controller: Controller | None = None

    @property
    def mailbox(self) -> Mailbox:
        return Mailbox(self.directory)

    @property
    def messages(self) -> list[ReceivedMail]:
        """Messages received by this instance, in memory (arrival order)."""
        with self.handler._lock:
            return list(self.handler.received)

    def start(self) -> SmtpSink:
        self.directory.mkdir(parents=True, exist_ok=True)
        controller = Controller(self.handler, hostname=self.host, port=self.port)
        controller.start()
        self._controller = controller
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m carebridge_devstack.smtp_sink",
        description="Local SMTP sink: stores every message as .eml in --dir.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SMTP_SINK_PORT", "2525")))
    parser.add_argument("--dir", type=Path, default=Path(os.environ.get("SMTP_SINK_DIR", "mail")))
    parser.add_argument(
        "--fail-first",
        type=int,
        default=int(os.environ.get("SMTP_SINK_FAIL_FIRST", "0")),
        help="answer the first N transactions with 451 (temporary failure)",
    )
    parser.add_argument(
        "--fail-stage",
        choices=["data", "rcpt"],
        default=os.environ.get("SMTP_SINK_FAIL_STAGE", "data"),
    )
    args = parser.parse_args(argv)
    stage: FailStage = "rcpt" if args.fail_stage == "rcpt" else "data"
    sink = SmtpSink(
        args.dir, host=args.host, port=args.port, fail_first=args.fail_first, fail_stage=stage
    )
    stopped = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopped.set())
    try:
        sink.start()
    except OSError as exc:
        print(f"cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    print(
        f"smtp sink listening on {sink.host}:{sink.port}, storing in {sink.directory}"
        + (f", failing first {args.fail_first} at {stage}" if args.fail_first else ""),
        flush=True,
    )
    try:
        stopped.wait()
    finally:
        sink.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
