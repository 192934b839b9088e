"""Kafka security: the settings map onto FastStream's and aiokafka's security options, and serve connects with
SASL (SCRAM-SHA-512 and PLAIN) to the local broker's SASL_PLAINTEXT listener, or stops at once, with a clear
message, on a wrong password.

The listener comes from `DOCLOOP_KAFKA_SCRAM_PORT=9094 deploy/local/kafka.sh start` (the Makefile does this and
sets DOCLOOP_TEST_KAFKA_SCRAM=localhost:9094). When that variable is set, an unreachable listener fails the
tests instead of skipping them.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram512
from pydantic import SecretStr

from engine.kafka_security import KafkaSecurity, KafkaSecurityError
from engine.settings import Settings
from tests.e2e.conftest import ROOT, Stack
from tests.support.events import claim, npi

USER, PASSWORD = "docloop", "docloop-secret"  # deploy/local/kafka.sh's defaults


def scram_bootstrap() -> str:
    bootstrap = os.environ.get("DOCLOOP_TEST_KAFKA_SCRAM")
    if not bootstrap:
        pytest.skip("DOCLOOP_TEST_KAFKA_SCRAM is not set (run `make test`)")
    host, _, port = bootstrap.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError:
        pytest.fail(
            f"DOCLOOP_TEST_KAFKA_SCRAM={bootstrap} is set but nothing listens there: start the broker with its "
            "SASL listener (`deploy/local/kafka.sh stop; DOCLOOP_KAFKA_SCRAM_PORT=9094 deploy/local/kafka.sh start`)"
        )
    return bootstrap


def sasl_env(bootstrap: str, mechanism: str, **extra: str) -> dict[str, str]:
    return {
        "DOCLOOP_KAFKA_BOOTSTRAP": bootstrap,
        "DOCLOOP_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "DOCLOOP_KAFKA_SASL_MECHANISM": mechanism,
        "DOCLOOP_KAFKA_SASL_USERNAME": USER,
        **extra,
    }


# ---- the mapping (no broker) ---------------------------------------------------------------------------


def test_plaintext_adds_nothing() -> None:
    security = KafkaSecurity.from_settings(Settings())
    assert security.faststream() is None
    assert security.aiokafka_kwargs() == {}


@pytest.mark.parametrize(("mechanism", "kind"), [("SCRAM-SHA-512", SASLScram512), ("PLAIN", SASLPlaintext)])
def test_sasl_settings_map_to_faststream_and_aiokafka(mechanism: str, kind: type[BaseSecurity]) -> None:
    settings = Settings(
        kafka_security_protocol="SASL_PLAINTEXT",
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username="svc",
        kafka_sasl_password=SecretStr("pw"),
    )
    security = KafkaSecurity.from_settings(settings)
    broker_security = security.faststream()
    assert isinstance(broker_security, kind) and not broker_security.use_ssl
    assert (broker_security.username, broker_security.password) == ("svc", "pw")  # type: ignore[attr-defined]
    assert security.aiokafka_kwargs() == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "svc",
        "sasl_plain_password": "pw",
    }
    assert "pw" not in repr(security) and "pw" not in security.describe()


def test_the_password_file_wins_and_tls_gets_a_context(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("from-file\n")
    security = KafkaSecurity.from_settings(
        Settings(
            kafka_security_protocol="SASL_SSL",
            kafka_sasl_username="svc",
            kafka_sasl_password=SecretStr("from-env"),
            kafka_sasl_password_file=secret,
        )
    )
    options = security.aiokafka_kwargs()
    assert options["sasl_plain_password"] == "from-file"
    assert options["security_protocol"] == "SASL_SSL" and options["ssl_context"] is not None
    broker_security = security.faststream()
    assert isinstance(broker_security, SASLScram512) and broker_security.use_ssl
    ssl_only = KafkaSecurity.from_settings(Settings(kafka_security_protocol="SSL"))
    assert type(ssl_only.faststream()) is BaseSecurity and ssl_only.aiokafka_kwargs()["security_protocol"] == "SSL"


@pytest.mark.parametrize(
    ("settings", "complaint"),
    [
        (Settings(kafka_security_protocol="SASL_SSL", kafka_sasl_username="svc"), "DOCLOOP_KAFKA_SASL_PASSWORD"),
        (Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_sasl_password=SecretStr("x")), "USERNAME"),
        (Settings(kafka_ssl_cafile=Path("/ca.pem")), "does not use TLS"),
        (Settings(kafka_security_protocol="SSL", kafka_ssl_cafile=Path("/nonexistent/ca.pem")), "TLS files"),
        (
            Settings(
                kafka_security_protocol="SASL_PLAINTEXT",
                kafka_sasl_username="svc",
                kafka_sasl_password_file=Path("/nonexistent/password"),
            ),
            "cannot be read",
        ),
    ],
)
def test_incomplete_settings_are_refused_with_the_variable_named(settings: Settings, complaint: str) -> None:
    with pytest.raises(KafkaSecurityError, match=complaint):
        KafkaSecurity.from_settings(settings)


# ---- against the broker's SASL_PLAINTEXT listener ------------------------------------------------------


@pytest.mark.kafka
@pytest.mark.postgres
@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "PLAIN"])
async def test_serve_authenticates_and_processes_events_end_to_end(
    stack: Stack, tmp_path: Path, mechanism: str
) -> None:
    bootstrap = scram_bootstrap()
    if mechanism == "SCRAM-SHA-512":  # the password from a secrets file, as mounted in production
        (tmp_path / "kafka-password").write_text(PASSWORD + "\n")
        secret = {"DOCLOOP_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "kafka-password")}
    else:
        secret = {"DOCLOOP_KAFKA_SASL_PASSWORD": PASSWORD}
    stack.partitions = 1
    stack.extra_env = sasl_env(bootstrap, mechanism, **secret)
    service = stack.start()

    provider = npi("123456789")
    denials = [
        claim(
            f"sasl-{i}",
            occurred_at=f"2026-02-0{i + 2}T09:00:00Z",
            service_date=f"2026-01-0{i + 5}",
            provider=provider,
            adjustments=[("CO", "150", "185.00")],
            amount="185.00",
        )
        for i in range(3)
    ]
    await stack.publish([json.dumps(d) for d in denials])  # over the plaintext listener of the same broker
    await stack.wait_until_applied(3)
    notifications = [json.loads(value) for _, value, _ in await stack.read("notifications", 2)]
    assert {(n["kind"], n["audience"]) for n in notifications} == {
        ("pattern_opened", "clinician"),
        ("pattern_opened", "billing"),
    }
    assert stack.stop(service) == 0
    log = stack.log_text()
    assert f"SASL_PLAINTEXT with SASL {mechanism} as user 'docloop'" in log
    assert PASSWORD not in log


@pytest.mark.kafka
@pytest.mark.postgres
async def test_a_wrong_password_stops_serve_at_once_with_a_clear_message(stack: Stack) -> None:
    bootstrap = scram_bootstrap()
    wrong = "not-the-password-41"
    env = stack.env(**sasl_env(bootstrap, "SCRAM-SHA-512", DOCLOOP_KAFKA_SASL_PASSWORD=wrong))
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "engine.cli", "serve"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    elapsed = time.monotonic() - started
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert elapsed < 30, f"took {elapsed:.1f}s"
    assert "Kafka authentication failed" in output
    assert "SCRAM-SHA-512" in output and bootstrap in output
    assert wrong not in output
    assert "docloop serving" not in output
