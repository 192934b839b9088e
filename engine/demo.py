"""`docloop demo`: the whole loop on the local Kafka, in a few minutes.

A simulated quarter of a mid-size group is published to Kafka; `docloop serve` (on an embedded SQLite store)
turns it into feedback; a console consumer shows what a notification service would receive; the report
closes the run. Topics carry a per-run prefix, so runs never see each other's messages, and are deleted at
the end; the serve process is stopped with SIGTERM (a clean drain), so nothing is left running.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from engine.domain.routing import Routed
from engine.errors import EXIT_UNREACHABLE, CliError, ExampleHelpFormatter, examples
from engine.kafka_security import KafkaConnectError, KafkaSecurity, check_connection
from engine.simulate import SimulationConfig, generate
from engine.store import tables as t
from engine.volume import render_text, volume
from schemas import EscalationRaised, FeedbackDigest, FeedbackNotification

EXAMPLES_PER_KIND = 1


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="the whole loop on a local Kafka: simulate, serve, watch, report",
        epilog=examples("docloop demo", "DOCLOOP_KAFKA_BOOTSTRAP=broker:9092 docloop demo --providers 80 --out demo"),
        formatter_class=ExampleHelpFormatter,
    )
    parser.add_argument("--seed", type=int, default=7, help="simulator seed")
    parser.add_argument("--providers", type=int, default=40, help="providers in the simulated group")
    parser.add_argument("--days", type=int, default=90, help="days of visits (a quarter)")
    parser.add_argument("--out", default="demo-out", help="folder for the store, logs and report.html")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    return asyncio.run(Demo(args).run())


class Demo:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.out = Path(args.out).resolve()
        self.bootstrap = os.environ.get("DOCLOOP_KAFKA_BOOTSTRAP", "localhost:9092")
        self.prefix = f"demo{int(time.time())}."
        self.store = self.out / "docloop.db"
        self.url = f"sqlite+aiosqlite:///{self.store}"
        self.seen: Counter[str] = Counter()
        self.deliveries: Counter[str] = Counter()
        self.received: list[Routed] = []

    def topic(self, name: str) -> str:
        return self.prefix + name

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DOCLOOP_KAFKA_BOOTSTRAP": self.bootstrap,
            "DOCLOOP_DATABASE_URL": self.url,
            "DOCLOOP_GROUP_ID": self.topic("engine"),
            "DOCLOOP_TOPIC_CLAIMS_DENIED": self.topic("claims.denied.v1"),
            "DOCLOOP_TOPIC_NOTES_SIGNED": self.topic("notes.signed.v1"),
            "DOCLOOP_TOPIC_ACKS": self.topic("feedback.acks.v1"),
            "DOCLOOP_TOPIC_REVIEWS": self.topic("feedback.reviewed.v1"),
            "DOCLOOP_TOPIC_NOTIFICATIONS": self.topic("feedback.notifications.v1"),
            "DOCLOOP_TOPIC_ESCALATIONS": self.topic("feedback.escalations.v1"),
            "DOCLOOP_TOPIC_DLQ": self.topic("docloop.dlq.v1"),
            "DOCLOOP_TOPIC_SILENCES": self.topic("feedback.silence.v1"),
            "DOCLOOP_HTTP_PORT": "0",
        }

    async def run(self) -> int:
        try:
            await check_connection(self.bootstrap, KafkaSecurity(), timeout=10)
        except KafkaConnectError as error:
            raise CliError(f"{error} (the demo needs a Kafka broker: `make up`)", EXIT_UNREACHABLE) from None
        self.out.mkdir(parents=True, exist_ok=True)
        for old in self.out.glob("docloop.db*"):
            old.unlink()
        started = time.monotonic()
        config = SimulationConfig(seed=self.args.seed, providers=self.args.providers, days=self.args.days)
        events = list(generate(config))
        print(f"1/5 simulated {len(events):,} events: {self.args.providers} providers, {self.args.days} days of visits")

        serve = subprocess.Popen(
            [sys.executable, "-m", "engine.cli", "serve"],
            env=self.env(),
            stdout=(self.out / "serve.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        try:
            await self.wait_for_serve(serve)
            where = f"topics {self.prefix}*, store {self.store.name}, log {self.out.name}/serve.log"
            print(f"2/5 docloop serve is up ({where})")
            watcher = asyncio.create_task(self.watch())
            await self.publish(events)
            await self.wait_until_processed(len(events))
            await asyncio.sleep(1.0)  # let the console consumer catch the last messages
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        finally:
            if serve.poll() is None:
                serve.send_signal(signal.SIGTERM)
                serve.wait(timeout=90)
            await self.delete_topics()
        self.print_counts()
        print("5/5 report")
        report = subprocess.run(
            [sys.executable, "-m", "engine.cli", "report", "--database-url", self.url, "--limit", "12"],
            capture_output=True,
            text=True,
            check=True,
        )
        print(report.stdout)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "engine.cli",
                "report",
                "--database-url",
                self.url,
                "--format",
                "html",
                "--out",
                str(self.out / "report.html"),
            ],
            capture_output=True,
            check=True,
        )
        print(f"HTML report: {self.out / 'report.html'}  (demo took {time.monotonic() - started:.0f} s)")
        return 0

    async def wait_for_serve(self, serve: subprocess.Popen[bytes]) -> None:
        log = self.out / "serve.log"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if '"docloop serving"' in log.read_text(errors="replace"):
                return
            if serve.poll() is not None:
                raise SystemExit(f"docloop serve exited; see {log}")
            await asyncio.sleep(0.2)
        raise SystemExit(f"docloop serve did not start within 60 s; see {log}")

    async def publish(self, events: list[dict[str, Any]]) -> None:
        topics = {
            "claim.denied": self.topic("claims.denied.v1"),
            "note.signed": self.topic("notes.signed.v1"),
            "feedback.acknowledged": self.topic("feedback.acks.v1"),
            "feedback.reviewed": self.topic("feedback.reviewed.v1"),
        }
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=20)
        await producer.start()
        try:
            pending = []
            for index, event in enumerate(events, start=1):
                # Keyed by provider NPI like every inbound topic: an answer by its pattern's provider.
                who = (
                    event.get("rendering_provider")
                    or event.get("author")
                    or event.get("pattern_key")
                    or event.get("acknowledged_by")
                    or {}
                )
                key = str(who.get("npi") or who.get("provider_npi") or who.get("id")).encode()
                value = json.dumps(event, separators=(",", ":")).encode()
                pending.append(await producer.send(topics[event["event_type"]], value, key=key))
                if index % 10_000 == 0 or index == len(events):
                    await asyncio.gather(*pending)
                    pending = []
                    print(f"3/5 published {index:,}/{len(events):,} events")
        finally:
            await producer.stop()

    async def wait_until_processed(self, total: int) -> None:
        from sqlalchemy import func, select

        from engine.database import connect

        database = connect(self.url)
        last = -1
        try:
            while True:
                async with database.connect() as conn:
                    applied = await conn.scalar(select(func.count()).select_from(t.processed_events)) or 0
                    pending = await conn.scalar(
                        select(func.count()).select_from(t.outbox).where(t.outbox.c.published_at.is_(None))
                    )
                    queued = await conn.scalar(select(func.count()).select_from(t.routing_queue))
                    pending = (pending or 0) + (queued or 0)
                if applied != last:
                    escalations = sum(v for k, v in self.seen.items() if k.startswith("escalation:"))
                    notifications = sum(self.seen.values()) - escalations
                    print(
                        f"4/5 engine applied {applied:,}/{total:,} events; received so far: "
                        f"{notifications:,} notifications, {escalations:,} escalations"
                    )
                    last = applied
                if applied >= total and pending == 0:
                    return
                await asyncio.sleep(1.0)
        finally:
            await database.dispose()

    async def watch(self) -> None:
        """A console notification service: what arrives, for whom, in which words (first of each kind)."""
        consumer = AIOKafkaConsumer(
            self.topic("feedback.notifications.v1"),
            self.topic("feedback.escalations.v1"),
            bootstrap_servers=self.bootstrap,
            auto_offset_reset="earliest",
            group_id=None,
        )
        await consumer.start()
        try:
            async for record in consumer:
                message = json.loads(record.value)
                escalation = "escalation_id" in message
                self.received.append(_typed(message))
                kind = f"escalation:{message['reason']}" if escalation else f"{message['kind']}:{message['audience']}"
                self.seen[kind] += 1
                self.deliveries[message["delivery"]] += 1
                # What a person reads: digests and what is sent on its own (the rest is for systems).
                if message["delivery"] == "send" and self.seen[kind] <= EXAMPLES_PER_KIND:
                    (show_escalation if escalation else show_notification)(message)
        finally:
            await consumer.stop()

    def print_counts(self) -> None:
        print("\nWhat the notification service received (every message; it delivers those marked send):")
        for kind, count in sorted(self.seen.items()):
            if count:
                print(f"  {kind:<32} {count:>6,}")
        print("  by delivery: " + ", ".join(f"{k} {v:,}" for k, v in sorted(self.deliveries.items())))
        print("\nWhat people received, per recipient (engine/volume.py):")
        print(render_text(volume(self.received)), end="")

    async def delete_topics(self) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            names = [n for n in await admin.list_topics() if n.startswith(self.prefix)]
            if names:
                await admin.delete_topics(names)
        finally:
            await admin.close()


def _wrap(text: str) -> str:
    return textwrap.fill(text, width=100, initial_indent="      ", subsequent_indent="      ")


def _typed(message: dict[str, Any]) -> Routed:
    if "escalation_id" in message:
        return EscalationRaised.model_validate(message)
    if message.get("kind") == "digest":
        return FeedbackDigest.model_validate(message)
    return FeedbackNotification.model_validate(message)


def show_notification(message: dict[str, Any]) -> None:
    recipient = message["recipient"]
    who = {"provider": f"clinician NPI {recipient['id']}", "team": f"team '{recipient['id']}'"}.get(
        recipient["type"], f"{recipient['type']} {recipient['id']}"
    )
    print(f"\n  -> {message['kind']} to {who}")
    print(_wrap(f"{message['title']}"))
    for line in message["body"].splitlines()[:6]:
        print(_wrap(line))
    if "guidance" in message:
        print(_wrap(f"Guidance: {message['guidance']}"))


def show_escalation(message: dict[str, Any]) -> None:
    target = message["target"]
    print(
        f"\n  !! escalation level {message['level']} ({message['reason']}) to {target['role']}, {target['department']}"
    )
    print(_wrap(message["summary"]))
