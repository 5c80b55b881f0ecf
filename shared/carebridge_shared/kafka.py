"""Kafka clients with the settings the delivery guarantees need, and the security (SASL/SCRAM,
TLS) every one of them uses (ADR 0011)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from itertools import chain
from typing import TYPE_CHECKING, Any, Literal

from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    KafkaConnectionError,
    TopicAuthorizationFailedError,
)
from aiokafka.helpers import create_ssl_context
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from carebridge_shared.logging import get_logger

if TYPE_CHECKING:
    from carebridge_shared.settings import ServiceSettings

log = get_logger(__name__)

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"]


class KafkaSettingsError(ValueError):
    """The Kafka security settings contradict each other or name files that cannot be read."""


class KafkaUnreachable(RuntimeError):
    """No broker accepted a connection with these settings; the message says why."""


@dataclass(frozen=True)
class KafkaSecurity:
    """How a client proves who it is to the brokers and protects the traffic. Every Kafka client
    carebridge makes takes its options from here: producers, consumers, the admin client and
    FastStream's broker."""

    protocol: SecurityProtocol = "PLAINTEXT"
    sasl_mechanism: SaslMechanism = "SCRAM-SHA-512"
    username: str = ""
    password: str = field(default="", repr=False)
    cafile: str = ""
    certfile: str = ""
    keyfile: str = ""
    key_password: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        if self.uses_sasl and not (self.username and self.password):
            raise KafkaSettingsError(
                f"CAREBRIDGE_KAFKA_SECURITY_PROTOCOL={self.protocol} logs in with SASL: set "
                "CAREBRIDGE_KAFKA_SASL_USERNAME and CAREBRIDGE_KAFKA_SASL_PASSWORD"
            )
        tls_files = [f for f in (self.cafile, self.certfile, self.keyfile) if f]
        if tls_files and not self.uses_tls:
            raise KafkaSettingsError(
                f"TLS files are set but CAREBRIDGE_KAFKA_SECURITY_PROTOCOL={self.protocol} does "
                "not use TLS: choose SSL or SASL_SSL, or unset CAREBRIDGE_KAFKA_SSL_*"
            )
        if self.keyfile and not self.certfile:
            raise KafkaSettingsError(
                "CAREBRIDGE_KAFKA_SSL_KEYFILE needs CAREBRIDGE_KAFKA_SSL_CERTFILE (its certificate)"
            )

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> KafkaSecurity:
        return cls(
            protocol=settings.kafka_security_protocol,
            sasl_mechanism=settings.kafka_sasl_mechanism,
            username=settings.kafka_sasl_username,
            password=settings.kafka_sasl_password.get_secret_value(),
            cafile=settings.kafka_ssl_cafile,
            certfile=settings.kafka_ssl_certfile,
            keyfile=settings.kafka_ssl_keyfile,
            key_password=settings.kafka_ssl_key_password.get_secret_value(),
        )

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    def describe(self) -> str:
        """For logs and errors: the protocol, mechanism and user, never a secret."""
        if self.uses_sasl:
            return f"{self.protocol} {self.sasl_mechanism} as {self.username!r}"
        return self.protocol

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context (broker certificate and host name checked), or None without TLS."""
        if not self.uses_tls:
            return None
        try:
            context: ssl.SSLContext = create_ssl_context(
                cafile=self.cafile or None,
                certfile=self.certfile or None,
                keyfile=self.keyfile or None,
                password=self.key_password or None,
            )
            return context
        except (OSError, ssl.SSLError) as exc:
            raise KafkaSettingsError(
                f"cannot load the Kafka TLS files (CAREBRIDGE_KAFKA_SSL_CAFILE/CERTFILE/KEYFILE): "
                f"{exc}"
            ) from exc

    def client_options(self) -> dict[str, Any]:
        """Keyword arguments for any aiokafka client (producer, consumer, admin, bare client)."""
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_tls:
            options["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            options.update(
                sasl_mechanism=self.sasl_mechanism,
                sasl_plain_username=self.username,
                sasl_plain_password=self.password,
            )
        return options

    def faststream_security(self) -> BaseSecurity | None:
        """The same settings as FastStream's KafkaBroker takes them."""
        if self.uses_sasl:
            login = {
                "SCRAM-SHA-512": SASLScram512, "SCRAM-SHA-256": SASLScram256, "PLAIN": SASLPlaintext
            }[self.sasl_mechanism]  # fmt: skip
            return login(
                self.username, self.password, ssl_context=self.ssl_context(), use_ssl=self.uses_tls
            )
        if self.uses_tls:
            return BaseSecurity(ssl_context=self.ssl_context(), use_ssl=True)
        return None


PLAINTEXT = KafkaSecurity()
"""No login, no TLS: only for a broker started without security (``CAREBRIDGE_KAFKA_AUTH=none``)
or a test that shows such a client is refused. Every other client takes `env_security()`."""


def env_security() -> KafkaSecurity:
    """The Kafka login and TLS settings of this process's environment
    (``CAREBRIDGE_KAFKA_SECURITY_PROTOCOL``, ``_SASL_*``, ``_SSL_*``), read as a service reads
    them: the one source for every client that is not a service (tools, tests, test helpers,
    the chaos oracle, the bench). A client given no explicit security uses this."""
    from carebridge_shared.settings import ServiceSettings

    return KafkaSecurity.from_settings(ServiceSettings())


def kafka_client_options(settings: ServiceSettings | None = None) -> dict[str, Any]:
    """``bootstrap_servers`` plus the security options of `settings` (default: the environment),
    for any aiokafka client: ``AIOKafkaConsumer(*topics, **kafka_client_options(), ...)``."""
    if settings is None:
        from carebridge_shared.settings import ServiceSettings

        settings = ServiceSettings()
    return {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        **KafkaSecurity.from_settings(settings).client_options(),
    }


def security_options(security: KafkaSecurity | None = None) -> dict[str, Any]:
    """The security keyword arguments of an aiokafka client: `security`'s, or the
    environment's (`env_security`). ``AIOKafkaConsumer(..., **security_options())``."""
    return (security or env_security()).client_options()


def make_producer(
    bootstrap_servers: str,
    client_id: str,
    *,
    transactional_id: str | None = None,
    security: KafkaSecurity | None = None,
) -> AIOKafkaProducer:
    """Idempotent producer that waits for every in-sync replica (no loss, no reordering).

    With `transactional_id` it is transactional: starting it fences an older producer with
    the same id and aborts that producer's open transaction.
    """
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        transactional_id=transactional_id,
        enable_idempotence=True,
        acks="all",
        linger_ms=5,
        request_timeout_ms=30_000,
        retry_backoff_ms=200,
        **security_options(security),
    )


def make_probe_client(
    bootstrap_servers: str, client_id: str, *, security: KafkaSecurity | None = None
) -> AIOKafkaClient:
    """A bare client for cheap metadata requests (the readiness probe)."""
    return AIOKafkaClient(
        bootstrap_servers=bootstrap_servers,
        client_id=client_id,
        request_timeout_ms=5_000,
        **security_options(security),
    )


REFUSED_CREATION = (TopicAuthorizationFailedError.errno, ClusterAuthorizationFailedError.errno)


class TopicsNotProvisioned(RuntimeError):
    """Topics a client needs do not exist (or its login may not see them), and its login may
    not create them: they are made, with the ACLs, by provisioning with admin credentials."""

    def __init__(self, topics: list[str], security: KafkaSecurity) -> None:
        self.topics = topics
        super().__init__(
            f"Kafka topic(s) {', '.join(topics)} do not exist or are not visible to "
            f"{security.describe()}, which may not create them. Next step: provision the "
            "cluster with admin credentials (`carebridge kafka provision`, see its --help), "
            "which creates every topic, the service logins and their ACLs."
        )


async def ensure_topics(
    bootstrap_servers: str,
    topics: list[str],
    *,
    partitions: int,
    replication_factor: int,
    configs: dict[str, str] | None = None,
    security: KafkaSecurity | None = None,
) -> list[str]:
    """Create the topics that do not exist yet; returns the ones created. The first Kafka call
    a service makes, so it says why no broker took the connection (KafkaUnreachable), and
    why a topic it needs is missing when its login may not create it (TopicsNotProvisioned).
    A login sees only the topics its ACLs let it describe: ask only for topics it uses."""
    security = security or env_security()
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap_servers,
        client_id="carebridge-admin",
        **security.client_options(),
    )
    try:
        await admin.start()
    except KafkaConnectionError as exc:
        await admin.close()
        raise KafkaUnreachable(await connection_problem(bootstrap_servers, security)) from exc
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in topics if t not in existing]
        if missing:
            response = await admin.create_topics(
                [
                    NewTopic(
                        name=t,
                        num_partitions=partitions,
                        replication_factor=replication_factor,
                        topic_configs=configs or {},
                    )
                    for t in missing
                ]
            )
            refused = sorted(
                str(error[0]) for error in response.topic_errors if error[1] in REFUSED_CREATION
            )
            if refused:
                raise TopicsNotProvisioned(refused, security)
            log.info("topics_created", topics=missing)
        return missing
    finally:
        await admin.close()


def bootstrap_list(bootstrap_servers: str) -> list[str]:
    """``"a:9092, b:9092"`` as ``["a:9092", "b:9092"]`` (KAFKA_BOOTSTRAP_SERVERS lists brokers)."""
    return [host.strip() for host in bootstrap_servers.split(",") if host.strip()]


async def connection_problem(bootstrap_servers: str, security: KafkaSecurity) -> str:
    """Why clients with `security` cannot use the brokers, found by connecting to each one
    directly (aiokafka's own bootstrap error only says "Unable to bootstrap")."""
    from aiokafka.conn import create_conn  # no public equivalent
    from aiokafka.protocol.metadata import MetadataRequest

    problems: list[str] = []
    for server in bootstrap_list(bootstrap_servers):
        host, _, port = server.rpartition(":")
        try:
            conn = await create_conn(
                host, int(port), request_timeout_ms=10_000, **security.client_options()
            )
        except Exception as exc:
            problems.append(f"{server} refused the connection: {_why(exc)}")
            continue
        try:
            await conn.send(MetadataRequest([]))  # a SASL or TLS listener hangs up on this
        except Exception as exc:
            problems.append(f"{server} hung up ({_why(exc)}), as a SASL or TLS listener does")
        else:
            problems.append(f"{server} answers now (it did not a moment ago)")
        finally:
            conn.close()
    return (
        f"cannot use Kafka at {bootstrap_servers} with {security.describe()}: "
        + "; ".join(problems)
        + ". Next step: check the broker is up and that CAREBRIDGE_KAFKA_SECURITY_PROTOCOL, "
        "CAREBRIDGE_KAFKA_SASL_* and CAREBRIDGE_KAFKA_SSL_* match its listener."
    )


def _why(exc: BaseException) -> str:
    text, name = str(exc), type(exc).__name__
    return text if name in text else f"{name}: {text}"


def wait_for_records(subscriber: Any, *, max_records: int, wait_ms: int) -> None:
    """Make a FastStream batch subscriber wait for records instead of spinning.

    FastStream 0.7 polls with `batch_timeout_ms` and, after an empty poll, sleeps as long
    again: a short timeout keeps latency low but wakes every idle consumer ~50 times a second
    (most of an idle service's CPU, issue 16), a long one delays a record by up to the sleep.
    aiokafka's `getmany` already returns as soon as its background fetch (a broker long poll,
    `fetch_max_wait_ms`) brings records, so waiting up to `wait_ms` in it, with no sleep after,
    costs no latency; stopping the consumer wakes it too.
    """

    async def get_msg(consumer: AIOKafkaConsumer) -> tuple[ConsumerRecord[Any, Any], ...]:
        polled = await consumer.getmany(timeout_ms=wait_ms, max_records=max_records)
        return tuple(chain.from_iterable(polled.values()))

    subscriber.get_msg = get_msg
