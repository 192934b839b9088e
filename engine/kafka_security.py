"""Kafka connection security (TLS, SASL PLAIN and SCRAM-SHA-512) from the DOCLOOP_KAFKA_* settings.

One `KafkaSecurity` feeds all three kinds of client: FastStream's KafkaBroker (a `faststream.security` object),
and aiokafka's admin client and producer (keyword arguments). The password comes from
DOCLOOP_KAFKA_SASL_PASSWORD_FILE when set (read once, at start) or else DOCLOOP_KAFKA_SASL_PASSWORD; it never
appears in a message, a log line or a repr.

`check_connection` connects to the bootstrap servers once before anything else starts, so that a wrong
password or a TLS mismatch stops `serve` at once with a message that names the mechanism and the bootstrap
servers, rather than as a retry loop deep inside the Kafka client.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiokafka.conn import collect_hosts, create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    IllegalSaslStateError,
    KafkaConnectionError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.protocol.metadata import MetadataRequest
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram512

from engine.settings import Settings

_AUTH_ERRORS = (
    SaslAuthenticationFailed,
    AuthenticationFailedError,
    AuthenticationMethodNotSupported,
    UnsupportedSaslMechanismError,
)


class KafkaSecurityError(Exception):
    """The security settings are incomplete or contradictory, or a secret file cannot be read."""


class KafkaConnectError(Exception):
    """serve could not connect to (or authenticate with) the bootstrap servers."""


@dataclass(frozen=True)
class KafkaSecurity:
    protocol: str = "PLAINTEXT"
    mechanism: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False)

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaSecurity:
        protocol = settings.kafka_security_protocol
        tls_files = {
            "DOCLOOP_KAFKA_SSL_CAFILE": settings.kafka_ssl_cafile,
            "DOCLOOP_KAFKA_SSL_CERTFILE": settings.kafka_ssl_certfile,
            "DOCLOOP_KAFKA_SSL_KEYFILE": settings.kafka_ssl_keyfile,
        }
        context = None
        if protocol in ("SSL", "SASL_SSL"):
            context = _ssl_context(settings)
        elif given := [name for name, value in tls_files.items() if value is not None]:
            raise KafkaSecurityError(
                f"{', '.join(given)} set, but DOCLOOP_KAFKA_SECURITY_PROTOCOL={protocol} does not use TLS "
                "(use SSL or SASL_SSL)"
            )
        if not protocol.startswith("SASL_"):
            return cls(protocol, ssl_context=context)
        username = settings.kafka_sasl_username
        password = _password(settings)
        missing = [
            name
            for name, value in (
                ("DOCLOOP_KAFKA_SASL_USERNAME", username),
                ("DOCLOOP_KAFKA_SASL_PASSWORD or DOCLOOP_KAFKA_SASL_PASSWORD_FILE", password),
            )
            if not value
        ]
        if missing:
            raise KafkaSecurityError(f"DOCLOOP_KAFKA_SECURITY_PROTOCOL={protocol} needs {' and '.join(missing)}")
        return cls(protocol, settings.kafka_sasl_mechanism, username, password, context)

    def faststream(self) -> BaseSecurity | None:
        """The security object for FastStream's KafkaBroker (None: PLAINTEXT)."""
        if self.uses_sasl:
            assert self.username is not None and self.password is not None
            kind = SASLScram512 if self.mechanism == "SCRAM-SHA-512" else SASLPlaintext
            return kind(self.username, self.password, ssl_context=self.ssl_context, use_ssl=self.uses_tls)
        if self.uses_tls:
            return BaseSecurity(ssl_context=self.ssl_context, use_ssl=True)
        return None

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for aiokafka's clients (AIOKafkaProducer, AIOKafkaAdminClient); {} for PLAINTEXT."""
        if self.protocol == "PLAINTEXT":
            return {}
        options: dict[str, Any] = {"security_protocol": self.protocol}
        if self.uses_tls:
            options["ssl_context"] = self.ssl_context
        if self.uses_sasl:
            options.update(
                sasl_mechanism=self.mechanism,
                sasl_plain_username=self.username,
                sasl_plain_password=self.password,
            )
        return options

    def describe(self) -> str:
        """What is used, for messages: protocol, mechanism and user; never the password."""
        if self.uses_sasl:
            return f"{self.protocol} with SASL {self.mechanism} as user {self.username!r}"
        return self.protocol


def _password(settings: Settings) -> str | None:
    path = settings.kafka_sasl_password_file
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as error:
            raise KafkaSecurityError(
                f"DOCLOOP_KAFKA_SASL_PASSWORD_FILE={path} cannot be read ({type(error).__name__})"
            ) from None
        return text.removesuffix("\n").removesuffix("\r")
    if settings.kafka_sasl_password is not None:
        return settings.kafka_sasl_password.get_secret_value()
    return None


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    cafile, certfile, keyfile = settings.kafka_ssl_cafile, settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile
    if keyfile is not None and certfile is None:
        raise KafkaSecurityError("DOCLOOP_KAFKA_SSL_KEYFILE is set without DOCLOOP_KAFKA_SSL_CERTFILE")
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cafile) if cafile else None)
        if certfile is not None:
            context.load_cert_chain(str(certfile), str(keyfile) if keyfile else None)
    except (OSError, ssl.SSLError) as error:
        # The class and the file names only: an SSL error's text can quote the file's contents.
        files = ", ".join(str(p) for p in (cafile, certfile, keyfile) if p is not None)
        raise KafkaSecurityError(f"cannot load the TLS files ({files}): {type(error).__name__}") from None
    return context


async def check_connection(bootstrap: str, security: KafkaSecurity, timeout: float) -> None:
    """Connect (and authenticate) to the bootstrap servers and ask one for metadata, as the Kafka clients do at
    start; raise KafkaConnectError with a clear reason if none answers. One server that answers is enough.
    """
    failures: list[BaseException] = []
    options = security.aiokafka_kwargs()
    options.pop("security_protocol", None)
    for host, port, _ in collect_hosts(bootstrap, randomize=False):
        try:
            connection = await asyncio.wait_for(
                create_conn(
                    host,
                    port,
                    client_id="docloop-check",
                    request_timeout_ms=int(timeout * 1000),
                    security_protocol=security.protocol,
                    **options,
                ),
                timeout,
            )
        except Exception as error:  # OSError, TimeoutError, ssl.SSLError, KafkaError...
            failures.append(error)
            continue
        try:  # a plaintext connection to a TLS or SASL listener only fails at its first request
            await asyncio.wait_for(connection.send(MetadataRequest([])), timeout)
        except Exception as error:
            failures.append(error)
            continue
        finally:
            connection.close()
        return
    raise KafkaConnectError(_explain(bootstrap, security, failures))


def _explain(bootstrap: str, security: KafkaSecurity, failures: list[BaseException]) -> str:
    where = f"Kafka bootstrap {bootstrap} ({security.describe()})"
    kinds = ", ".join(sorted({type(error).__name__ for error in failures})) or "no server listed"
    if any(isinstance(error, _AUTH_ERRORS) for error in failures):
        variables = "DOCLOOP_KAFKA_SASL_USERNAME and DOCLOOP_KAFKA_SASL_PASSWORD(_FILE)"
        if security.uses_sasl:
            return (
                f"Kafka authentication failed: SASL {security.mechanism} as user {security.username!r} was "
                f"rejected by {bootstrap} ({kinds}); check {variables}, DOCLOOP_KAFKA_SASL_MECHANISM and "
                "DOCLOOP_KAFKA_SECURITY_PROTOCOL"
            )
        return f"{where} asked for authentication ({kinds}); set DOCLOOP_KAFKA_SECURITY_PROTOCOL and {variables}"
    if any(isinstance(error, IllegalSaslStateError) for error in failures):
        return (
            f"{where} refused the SASL handshake ({kinds}): that listener does not use SASL; check "
            "DOCLOOP_KAFKA_SECURITY_PROTOCOL and DOCLOOP_KAFKA_BOOTSTRAP"
        )
    if any(isinstance(error, ssl.SSLError) for error in failures):
        return f"TLS handshake with {where} failed ({kinds}); check DOCLOOP_KAFKA_SSL_CAFILE and the protocol"
    if all(isinstance(error, TimeoutError) for error in failures):
        return f"{where} did not answer in time ({kinds}); a TLS or SASL listener spoken to in plaintext, or down?"
    if any(isinstance(error, KafkaConnectionError | ConnectionResetError) for error in failures):
        return (
            f"{where} closed the connection ({kinds}): does that listener expect another security protocol "
            "(TLS, SASL)? Check DOCLOOP_KAFKA_SECURITY_PROTOCOL"
        )
    return f"cannot connect to {where}: {kinds}"
