"""E-mail: building the message (pure) and handing it to the SMTP server."""

from __future__ import annotations

import contextlib
import uuid
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime

import aiosmtplib

from carebridge_notification.templates import Rendered


def message_id(delivery_id: uuid.UUID, sender: str) -> str:
    """The delivery id is the Message-ID, so an MTA can drop a resend of the same delivery."""
    domain = sender.rpartition("@")[2] or "carebridge"
    return f"<{delivery_id}@{domain}>"


def build_email(
    delivery_id: uuid.UUID,
    *,
    sender: str,
    to: str,
    rendered: Rendered,
    template: str,
    date: datetime,
) -> EmailMessage:
    """The address appears in the To header only; the rest is the rendered text and ids."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = rendered.subject
    message["Message-ID"] = message_id(delivery_id, sender)
    message["Date"] = format_datetime(date)
    message["Auto-Submitted"] = "auto-generated"
    message["X-Carebridge-Template"] = template
    message.set_content(rendered.body)
    return message


class SendFailed(Exception):
    """The SMTP server did not take the message; `error_code` is safe to log and publish."""

    def __init__(self, error_code: str) -> None:
        super().__init__(error_code)
        self.error_code = error_code


def error_code(exc: BaseException) -> str:
    """A code for an SMTP failure (never the server's text: it may echo the address)."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        return f"smtp_{exc.recipients[0].code}"
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return f"smtp_{exc.code}"
    if isinstance(exc, TimeoutError):
        return "smtp_timeout"
    if isinstance(exc, ConnectionError | OSError):
        return "smtp_unreachable"
    return "smtp_error"


async def send(message: EmailMessage, *, host: str, port: int, timeout_s: float) -> None:
    """Hand `message` to the SMTP server; raises SendFailed with a code when it is refused."""
    try:
        await aiosmtplib.send(message, hostname=host, port=port, timeout=timeout_s)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        raise SendFailed(error_code(exc)) from None


class Session:
    """One SMTP connection for a dispatch round (issue 16: not one per e-mail): opened by the
    first message, reused by the next ones, dropped after any failure. A reused connection the
    server closed meanwhile is opened again once for the message."""

    def __init__(self, *, host: str, port: int, timeout_s: float) -> None:
        self._host, self._port, self._timeout_s = host, port, timeout_s
        self._smtp: aiosmtplib.SMTP | None = None

    async def send(self, message: EmailMessage) -> None:
        """Hand `message` to the SMTP server; raises SendFailed with a code when refused."""
        reused = self._smtp is not None
        try:
            try:
                await (await self._connection()).send_message(message)
            except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                self.drop()
                if not reused:
                    raise
                await (await self._connection()).send_message(message)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            self.drop()
            raise SendFailed(error_code(exc)) from None
        except BaseException:  # cancelled mid-conversation: the connection's state is unknown
            self.drop()
            raise

    async def _connection(self) -> aiosmtplib.SMTP:
        if self._smtp is None:
            smtp = aiosmtplib.SMTP(hostname=self._host, port=self._port, timeout=self._timeout_s)
            await smtp.connect()
            self._smtp = smtp
        return self._smtp

    def drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            smtp.close()

    async def close(self) -> None:
        """QUIT politely; a server that does not answer is simply dropped."""
        smtp, self._smtp = self._smtp, None
        if smtp is not None:
            with contextlib.suppress(Exception):
                await smtp.quit()
            smtp.close()
