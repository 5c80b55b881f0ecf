"""SMTP sink: stores messages (files + memory), injects temporary failures."""

from __future__ import annotations

import smtplib
import subprocess
import sys
import time
from email.message import EmailMessage
from pathlib import Path

import pytest

from carebridge_devstack._util import free_port, port_in_use
from carebridge_devstack.smtp_sink import Mailbox, SmtpSink


def _mail(to: str, subject: str, body: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "noreply@carebridge.test"
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(body)
    return msg


def test_sink_stores_in_memory_and_on_disk(smtp_sink: SmtpSink) -> None:
    with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=10) as client:
        client.send_message(_mail("patient@example.org", "Visit reminder", "See you at 10:00."))
    [mail] = smtp_sink.mailbox.wait_for(1, timeout=5)
    assert mail.to == ["patient@example.org"]
    assert mail.envelope_from == "noreply@carebridge.test"
    assert mail.subject == "Visit reminder"
    assert mail.body.strip() == "See you at 10:00."
    assert [m.subject for m in smtp_sink.messages] == ["Visit reminder"]
    assert smtp_sink.mailbox.to("PATIENT@example.org")[0].subject == "Visit reminder"


def test_fail_first_data(tmp_path: Path) -> None:
    with SmtpSink(tmp_path, fail_first=1) as sink:
        msg = _mail("a@example.org", "x", "y")
        with smtplib.SMTP(sink.host, sink.port, timeout=10) as client:
            with pytest.raises(smtplib.SMTPDataError) as err:
                client.send_message(msg)
            assert err.value.smtp_code == 451
            client.send_message(msg)  # the retry goes through
        assert len(sink.mailbox.wait_for(1)) == 1
        assert sink.handler.failures_injected == 1


def test_fail_first_rcpt(tmp_path: Path) -> None:
    with SmtpSink(tmp_path, fail_first=1, fail_stage="rcpt") as sink:
        with smtplib.SMTP(sink.host, sink.port, timeout=10) as client:
            with pytest.raises(smtplib.SMTPRecipientsRefused):
                client.send_message(_mail("a@example.org", "x", "y"))
            client.send_message(_mail("a@example.org", "x", "y"))
        assert len(sink.mailbox.wait_for(1)) == 1


def test_sink_as_a_process(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "carebridge_devstack.smtp_sink", "--port", str(port),
         "--dir", str(tmp_path / "mail"), "--fail-first", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        assert "listening" in proc.stdout.readline()
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            with pytest.raises(smtplib.SMTPDataError):
                client.send_message(_mail("b@example.org", "first", "refused"))
            client.send_message(_mail("b@example.org", "second", "stored"))
        mails = Mailbox(tmp_path / "mail").wait_for(1)
        assert [(m.to, m.subject) for m in mails] == [(["b@example.org"], "second")]
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0
    deadline = time.monotonic() + 5
    while port_in_use(port) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not port_in_use(port)
