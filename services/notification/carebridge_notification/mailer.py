"""E-mail: building the message (pure) and handing it to the SMTP server."""

from __future__ import annotations

import contextlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from email.charset import QP, Charset
from email.message import Message
from email.policy import SMTPUTF8
from email.utils import format_datetime

import aiosmtplib

from carebridge_notification.templates import Rendered


def message_id(delivery_id: uuid.UUID, sender: str) -> str:
    """The delivery id is the Message-ID, so an MTA can drop a resend of the same delivery."""
    domain = sender.rpartition("@")[2] or "carebridge"
    return f"<{delivery_id}@{domain}>"


_BODY_CHARSET = Charset("utf-8")
_BODY_CHARSET.body_encoding = QP  # readable in the mail file; 7-bit clean on the wire


@dataclass(frozen=True, slots=True)
class Email:
    """A message ready for the SMTP server: its envelope and its bytes."""

    sender: str
    to: str
    data: bytes
    international: bool = False
    """An address is not ASCII: the server must accept SMTPUTF8 (RFC 6531)."""

    @property
    def mail_options(self) -> list[str]:
        return ["SMTPUTF8"] if self.international else []


def build_email(
    delivery_id: uuid.UUID,
    *,
    sender: str,
    to: str,
    rendered: Rendered,
    template: str,
    date: datetime,
) -> Email:
    """The address appears in the To header only; the rest is the rendered text and ids.

    Built as a plain MIME text part whose headers are stored as given: the `EmailMessage`
    API parses every header on assignment and again when sent, about 2 ms per message, the
    largest single cost of a delivery (issue 16); this takes about 0.3 ms.
    """
    message = Message()
    message["MIME-Version"] = "1.0"
    message.set_payload(rendered.body, _BODY_CHARSET)  # text/plain; charset, transfer encoding
    for name, value in (
        ("From", sender),
        ("To", to),
        ("Subject", rendered.subject),
        ("Message-ID", message_id(delivery_id, sender)),
        ("Date", format_datetime(date)),
        ("Auto-Submitted", "auto-generated"),
        ("X-Carebridge-Template", template),
    ):
        if "\n" in value or "\r" in value:
            raise ValueError(f"the {name} header would break the message's header block")
        message[name] = value
    if sender.isascii() and to.isascii():  # other headers' non-ASCII text is RFC 2047 encoded
        return Email(sender=sender, to=to, data=message.as_bytes())
    return Email(sender=sender, to=to, data=message.as_bytes(policy=SMTPUTF8), international=True)


# The name this client gives in EHLO. Without it aiosmtplib asks `socket.getfqdn()` in a
# thread for every connection; the name is not checked by the servers we hand mail to.
LOCAL_HOSTNAME = "carebridge-notification"


async def _send(smtp: aiosmtplib.SMTP, message: Email) -> None:
    await smtp.sendmail(
        message.sender, [message.to], message.data, mail_options=message.mail_options
    )


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


class Session:
    """One SMTP connection (issue 16: not one per e-mail), a dispatcher worker's while mail is
    due: opened by the first message, reused by the next ones, dropped after any failure. A
    reused connection the server closed meanwhile is opened again once for the message."""

    def __init__(self, *, host: str, port: int, timeout_s: float) -> None:
        self._host, self._port, self._timeout_s = host, port, timeout_s
        self._smtp: aiosmtplib.SMTP | None = None

    async def send(self, message: Email) -> None:
        """Hand `message` to the SMTP server; raises SendFailed with a code when refused."""
        reused = self._smtp is not None
        try:
            try:
                await _send(await self._connection(), message)
            except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                self.drop()
                if not reused:
                    raise
                await _send(await self._connection(), message)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            self.drop()
            raise SendFailed(error_code(exc)) from None
        except BaseException:  # cancelled mid-conversation: the connection's state is unknown
            self.drop()
            raise

    async def _connection(self) -> aiosmtplib.SMTP:
        if self._smtp is None:
            smtp = aiosmtplib.SMTP(
                hostname=self._host,
                port=self._port,
                timeout=self._timeout_s,
                local_hostname=LOCAL_HOSTNAME,
            )
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
