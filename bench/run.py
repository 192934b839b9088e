"""`make bench`: throughput, latency, scaling and memory of `docloop serve` on the local Kafka and PostgreSQL.

    python -m bench.run            # from the repository root, with the project's virtual environment

Phases (BENCH_PHASES, comma separated, default all: throughput,replay,scale,latency,poison,scaleout):

throughput  BENCH_EVENTS simulated events (first N lines of a seeded simulator file) are produced beforehand to
            fresh inbound topics (6 partitions, keyed by NPI). Then, one after the other, each consumer runs in
            its own process with its own consumer group, timed from "ready" until its group's committed offsets
            cover every inbound partition (lag 0):
            - the baseline: a bare aiokafka pipe (bench/pipe.py: consume, json.loads, produce one message per
              input, commit);
            - `docloop serve` on a fresh PostgreSQL database, ready = its "docloop serving" log line; done =
              lag 0 AND the outbox drained (no row with published_at IS NULL, none waiting to be routed). Its
              peak RSS (VmHWM) is the memory figure.
            ratio = engine events/s / pipe events/s.
replay      `docloop replay` of the same N events on SQLite (a subprocess, wall time), events/s.
scale       BENCH_SCALE_EVENTS events through serve on an empty store and on a store pre-loaded with
            BENCH_SCALE_CASES cases (and their patterns, bench/preload.py; loaded once into a template database,
            copied for each run), back to back; scale_ratio = loaded / empty.
latency     a fresh serve and database process BENCH_WARMUP events first; then simulator events are offered at
            BENCH_RATE events/s for BENCH_LATENCY_SECONDS, with BENCH_PROBES probe patterns interleaved: for a
            fresh provider NPI two claim denials (CO-150/M25 on 99215), then, about 2 s later, the third, which
            opens the pattern. Latency = when a consumer of the notifications topic receives that pattern's
            pattern_opened (matched by pattern.provider_npi) minus when the third denial was handed to the
            producer. Probes count toward the offered rate. Then the same again with DOCLOOP_TASK_IDLE_MS=0
            (unless it is 0 already): the engine's own path, reported without a target. Then the default again
            at BENCH_LOW_RATE events/s (default 5; 0: skipped), a small hospital's feed, where a record's own
            quiet inputs and other tasks' held-back records decide (reported without a target).
scaleout    BENCH_SCALEOUT_EVENTS events (default BENCH_EVENTS) through serve with 1 replica and
            with 3 replicas in one consumer group (6 partitions: 6 tasks), each run on fresh topics and a fresh
            database reached through a loopback proxy that delays every chunk by BENCH_PROXY_DELAY_MS (default
            2) each way (bench/delay_proxy.py), so that the work is I/O-bound as over a real network, and each
            replica limited to BENCH_REPLICA_CPU cores (default 0.3; 0: no limit) by a cgroup CPU quota, as a
            Kubernetes CPU limit does, so that the 2 cores shared here are not the limit (3 x 0.3 leaves the
            rest for Kafka and PostgreSQL; needs root and the cgroup v1 cpu controller, else it says so). The
            replicas start on empty topics; once the group is stable (every task assigned, unchanged for 2 s)
            the events are produced, and the run is timed from the first produced to drained (the group's joins
            are left out: they cost the same whatever the replicas can do). What is left of fixed cost (the
            first records wait DOCLOOP_TASK_IDLE_MS for the quiet reviews input, the last replica to drain holds
            the most events) is seconds, so the run must be long enough to measure capacity: at 30,000 events
            it was a fifth of the 3-replica run. scaleout_ratio = events/s with 3 replicas / with 1; target >= 2.4
            (issue #13).
poison      the throughput phase's BENCH_EVENTS events, and the same events with one hostile record per 1,000
            (BENCH_POISON_EVERY) mixed in, each next to a real event under its key (cases from the test corpus,
            tests/support/hostile.py, starting with JSON nested 10,000 deep); serve runs over each, alternating,
            BENCH_REPEAT times. poison_ratio = events/s with poison / events/s without (records/s, hostile
            records included); target >= 0.8 (issue #10).

throughput and scale run BENCH_REPEAT times (default 3), alternating their two sides, and report the median
run of each side (a shared 2-core machine is noisy); every run is in the JSON.

Writes BENCH_OUT/bench.json (default bench-out/), prints a table, and as the very last line
`ratio=R p99_ms=L scale_ratio=S rss_mb=M poison_ratio=P scaleout_ratio=X`.
Topics, consumer groups and databases are fresh per run and
deleted at the end (BENCH_KEEP=1 keeps them). Other knobs: BENCH_SEED, BENCH_DAYS, BENCH_RUN_TIMEOUT (per
serve/pipe run, seconds, default 300: a run that times out reports the rate it managed as a lower bound),
BENCH_SCALE_OPEN_SHARE (see bench/preload.py), BENCH_KAFKA, BENCH_PG_URL, BENCH_OUT. Any DOCLOOP_* variable in
the environment reaches serve (e.g. DOCLOOP_BATCH_MAX_RECORDS), except the ones the harness sets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy.engine import make_url

from bench import report
from bench.preload import DEPARTMENTS, preload
from schemas import npi_is_valid
from tests.support.hostile import corpus, deep_nesting

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("throughput", "replay", "scale", "latency", "poison", "scaleout")
INBOUND = ("claims", "notes", "acks", "reviews")
KIND = {
    "claim.denied": "claims",
    "note.signed": "notes",
    "feedback.acknowledged": "acks",
    "feedback.reviewed": "reviews",
}


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


@dataclass
class Config:
    events: int = 100_000
    scale_events: int = 50_000
    scale_cases: int = 1_000_000
    scale_open_share: float = 0.0
    rate: int = 200
    low_rate: int = 5
    latency_seconds: int = 60
    probes: int = 150
    warmup: int = 5_000
    seed: int = 1
    days: int = 90
    run_timeout: float = 300.0
    repeat: int = 3
    kafka: str = "localhost:9092"
    pg_url: str = "postgresql+asyncpg://docloop:docloop@127.0.0.1:5433/docloop"
    out: Path = ROOT / "bench-out"
    phases: tuple[str, ...] = PHASES
    keep: bool = False
    partitions: int = 6
    poison_every: int = 1000
    scaleout_events: int = 100_000
    proxy_delay_ms: float = 2.0
    replica_cpu: float = 0.3

    @classmethod
    def from_env(cls) -> Config:
        events = _int("BENCH_EVENTS", 100_000)
        phases = tuple(p.strip() for p in os.environ.get("BENCH_PHASES", ",".join(PHASES)).split(",") if p.strip())
        unknown = set(phases) - set(PHASES)
        if unknown:
            raise SystemExit(f"BENCH_PHASES: unknown phase(s) {sorted(unknown)}; known: {', '.join(PHASES)}")
        cfg = cls(
            events=events,
            scale_events=_int("BENCH_SCALE_EVENTS", min(events, 50_000)),
            scaleout_events=_int("BENCH_SCALEOUT_EVENTS", events),
            proxy_delay_ms=_float("BENCH_PROXY_DELAY_MS", 2.0),
            replica_cpu=_float("BENCH_REPLICA_CPU", 0.3),
            scale_cases=_int("BENCH_SCALE_CASES", 1_000_000),
            scale_open_share=_float("BENCH_SCALE_OPEN_SHARE", 0.0),
            rate=_int("BENCH_RATE", 200),
            low_rate=_int("BENCH_LOW_RATE", 5),
            latency_seconds=_int("BENCH_LATENCY_SECONDS", 60),
            probes=_int("BENCH_PROBES", 150),
            warmup=_int("BENCH_WARMUP", 5_000),
            seed=_int("BENCH_SEED", 1),
            days=_int("BENCH_DAYS", 90),
            run_timeout=_float("BENCH_RUN_TIMEOUT", 300.0),
            repeat=max(1, _int("BENCH_REPEAT", 3)),
            kafka=os.environ.get("BENCH_KAFKA") or os.environ.get("DOCLOOP_TEST_KAFKA") or "localhost:9092",
            pg_url=os.environ.get("BENCH_PG_URL", "postgresql+asyncpg://docloop:docloop@127.0.0.1:5433/docloop"),
            out=Path(os.environ.get("BENCH_OUT", ROOT / "bench-out")),
            phases=phases,
            keep=os.environ.get("BENCH_KEEP", "") not in ("", "0", "false"),
            poison_every=max(2, _int("BENCH_POISON_EVERY", 1000)),
        )
        for host in [h.rsplit(":", 1)[0] for h in cfg.kafka.split(",")] + [make_url(cfg.pg_url).host or ""]:
            if host not in ("localhost", "127.0.0.1", "::1", "[::1]"):
                raise SystemExit(f"the benchmark runs on localhost only, not on {host!r}")
        return cfg


# ---- simulated events ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    value: bytes
    kind: str  # claims | notes | acks | reviews
    key: bytes
    occurred_at: datetime


def parse_event(value: bytes) -> Event:
    event = json.loads(value)
    kind = KIND.get(event.get("event_type"), "claims")
    if kind == "claims":
        who = (event.get("rendering_provider") or {}).get("npi")
    elif kind == "notes":
        who = (event.get("author") or {}).get("npi")
    else:
        who = (event.get("pattern_key") or {}).get("provider_npi") or (event.get("acknowledged_by") or {}).get("id")
    return Event(value, kind, str(who).encode(), datetime.fromisoformat(event["occurred_at"]))


async def stable_assignment(logs: Sequence[Path], partitions: int, timeout: float = 120) -> None:
    """Wait until the replicas' latest "partitions assigned" lines cover every task once, unchanged for 2 s."""
    deadline = time.monotonic() + timeout
    last: list[list[int]] | None = None
    since = time.monotonic()
    while time.monotonic() < deadline:
        latest = []
        for path in logs:
            tasks: list[int] = []
            for line in path.read_text(errors="replace").splitlines():
                if '"partitions assigned"' in line:
                    with contextlib.suppress(ValueError, KeyError):
                        tasks = json.loads(line)["tasks"]
            latest.append(tasks)
        if latest != last:
            last, since = latest, time.monotonic()
        elif sorted(t for tasks in latest for t in tasks) == list(range(partitions)) and time.monotonic() - since >= 2:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"the consumer group did not settle in {timeout:.0f} s: {last}")


def simulated(cfg: Config, count: int) -> tuple[Path, list[Event]]:
    """The first `count` events of a seeded simulator file sized for them (cached under BENCH_OUT/sim)."""
    sim = cfg.out / "sim"
    sim.mkdir(parents=True, exist_ok=True)
    providers = max(2, math.ceil(count * 1.05 / 620))  # about 660 events per provider over 90 days
    for _ in range(6):
        path = sim / f"sim-seed{cfg.seed}-p{providers}-d{cfg.days}.jsonl"
        if not path.exists():
            log(f"simulating {providers} providers x {cfg.days} days (seed {cfg.seed}) -> {path.name}")
            partial = path.with_suffix(".partial")
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "engine.simulate",
                    "--seed",
                    str(cfg.seed),
                    "--providers",
                    str(providers),
                    "--days",
                    str(cfg.days),
                    "--out",
                    str(partial),
                ],
                cwd=ROOT,
                check=True,
                stderr=subprocess.DEVNULL,
                timeout=900,
            )
            partial.rename(path)
        lines = [line for line in path.read_bytes().splitlines() if line.strip()]
        if len(lines) >= count:
            return path, [parse_event(line) for line in lines[:count]]
        providers = math.ceil(providers * 1.1 * count / max(1, len(lines)))
    raise SystemExit(f"the simulator did not give {count} events")


# ---- Kafka ------------------------------------------------------------------------------------------


@dataclass
class Topics:
    """One set of fresh topic names: inbound, the engine's outbound, the pipe's output."""

    prefix: str

    def name(self, what: str) -> str:
        return f"{self.prefix}{what}"

    @property
    def inbound(self) -> list[str]:
        return [self.name(k) for k in INBOUND]

    @property
    def all(self) -> list[str]:
        return [self.name(k) for k in (*INBOUND, "notifications", "escalations", "dlq", "pipe-out")]


class Kafka:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.bootstrap = cfg.kafka
        self.created: list[str] = []
        self.admin: AIOKafkaAdminClient | None = None

    async def start(self) -> None:
        self.admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="docloop-bench")
        await self.admin.start()

    async def close(self) -> None:
        if self.admin is not None:
            await self.admin.close()

    async def create(self, topics: Topics) -> None:
        assert self.admin is not None
        names = topics.all
        # Inbound topics as serve declares its own: stamped by the broker (a task's idle allowance runs from
        # the append time; engine/consumer.py). The pipe reads them too.
        stamped = {"message.timestamp.type": "LogAppendTime"}
        await self.admin.create_topics(
            [NewTopic(n, self.cfg.partitions, 1, topic_configs=stamped if n in topics.inbound else {}) for n in names]
        )
        self.created += names
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # every partition has a leader before anyone produces
            with contextlib.suppress(Exception):
                described = await self.admin.describe_topics(names)
                leaders = [p.get("leader", -1) for d in described for p in d.get("partitions", [])]
                if len(leaders) == len(names) * self.cfg.partitions and min(leaders) >= 0:
                    return
            await asyncio.sleep(0.2)
        raise RuntimeError("topics without partition leaders after 30 s")

    async def delete_created(self) -> None:
        if not self.created or self.admin is None:
            return
        try:
            await self.admin.delete_topics(self.created, timeout_ms=30_000)
            log(f"deleted {len(self.created)} bench topics")
        except Exception as error:  # never hide the results because of the cleanup
            log(f"could not delete bench topics: {type(error).__name__}: {error}")

    async def produce(self, topics: Topics, events: Sequence[Event]) -> dict[TopicPartition, int]:
        """Publish the events in order (keyed by NPI) and return the end offsets of the inbound partitions."""
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=20,
            max_batch_size=256 * 1024,
            client_id="docloop-bench-producer",
        )
        await producer.start()
        try:
            pending = []
            for event in events:
                pending.append(await producer.send(topics.name(event.kind), event.value, key=event.key))
                if len(pending) >= 5000:
                    await asyncio.gather(*pending)
                    pending = []
            await asyncio.gather(*pending)
        finally:
            await producer.stop()
        ends = await self.end_offsets(topics.inbound)
        if sum(ends.values()) != len(events):
            raise RuntimeError(f"produced {len(events)} events but the topics hold {sum(ends.values())}")
        return ends

    async def end_offsets(self, names: list[str]) -> dict[TopicPartition, int]:
        partitions = [TopicPartition(n, p) for n in names for p in range(self.cfg.partitions)]
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            ends: dict[TopicPartition, int] = await consumer.end_offsets(partitions)
        finally:
            await consumer.stop()
        return ends

    async def committed(self, group: str, ends: dict[TopicPartition, int]) -> int:
        """How many of the records below `ends` the group's committed offsets cover."""
        assert self.admin is not None
        offsets = await self.admin.list_consumer_group_offsets(group)
        done = 0
        for tp, end in ends.items():
            meta = offsets.get(tp)
            done += min(max(meta.offset, 0), end) if meta is not None else 0
        return done


# ---- PostgreSQL ---------------------------------------------------------------------------------------


class Databases:
    def __init__(self, cfg: Config, run_id: str) -> None:
        self.cfg = cfg
        self.run_id = run_id
        self.created: list[str] = []

    def url(self, name: str) -> str:
        """SQLAlchemy URL (for serve)."""
        return make_url(self.cfg.pg_url).set(database=name).render_as_string(hide_password=False)

    def dsn(self, name: str | None = None) -> str:
        """libpq URL (for asyncpg)."""
        url = make_url(self.cfg.pg_url).set(drivername="postgresql")
        if name:
            url = url.set(database=name)
        return url.render_as_string(hide_password=False)

    async def wait_up(self, timeout: float = 120) -> None:
        """Wait until PostgreSQL accepts connections (tests of others may restart the shared cluster)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                conn = await asyncpg.connect(self.dsn(), timeout=5)
                await conn.close()
                return
            except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError):
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)

    async def create(self, label: str, template: str | None = None) -> str:
        """A fresh database; from `template` (a file-level copy, fast) when given."""
        name = f"bench_{self.run_id}_{label}"
        await self.wait_up()
        conn = await asyncpg.connect(self.dsn())
        try:
            # FILE_COPY: a checkpoint and a file-level copy, instead of WAL-logging every page of the template.
            copy = f' TEMPLATE "{template}" STRATEGY FILE_COPY' if template else ""
            await conn.execute(f'CREATE DATABASE "{name}"{copy}')
        finally:
            await conn.close()
        self.created.append(name)
        return name

    async def drop_created(self) -> None:
        if not self.created:
            return
        try:
            conn = await asyncpg.connect(self.dsn())
            try:
                for name in self.created:
                    await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()
            log(f"dropped {len(self.created)} bench databases")
        except Exception as error:
            log(f"could not drop bench databases: {type(error).__name__}: {error}")

    async def scalar(self, name: str, query: str) -> Any:
        """One value; retried for a while, since the shared PostgreSQL may be restarted by someone's tests."""
        for attempt in range(20):
            try:
                conn = await asyncpg.connect(self.dsn(name), timeout=10)
                try:
                    return await conn.fetchval(query)
                finally:
                    await conn.close()
            except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError):
                if attempt == 19:
                    raise
                await asyncio.sleep(0.5)


# ---- processes ----------------------------------------------------------------------------------------


class Processes:
    """Every subprocess the harness starts, so that none outlives it."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.running: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> tuple[subprocess.Popen[bytes], Path]:
        path = self.logs / f"{name}.log"
        with path.open("wb") as out:
            process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.running.append(process)
        return process, path

    @staticmethod
    async def ready(process: subprocess.Popen[bytes], path: Path, marker: str, timeout: float = 120) -> float:
        """Wall time when `marker` appeared in the log (serve's JSON `ts` when the line has one)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = path.read_text(errors="replace")
            if marker in text:
                seen = time.time()
                for line in text.splitlines():
                    if marker in line and line.startswith("{"):
                        with contextlib.suppress(ValueError, KeyError):
                            return min(seen, datetime.fromisoformat(json.loads(line)["ts"]).timestamp())
                return seen
            if process.poll() is not None:
                raise RuntimeError(f"{path.stem} exited early (code {process.returncode}):\n{text[-3000:]}")
            await asyncio.sleep(0.02)
        raise RuntimeError(f"{path.stem} not ready in {timeout} s:\n{path.read_text(errors='replace')[-3000:]}")

    async def stop(self, process: subprocess.Popen[bytes], timeout: float = 60) -> int | None:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while process.poll() is None and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            if process.poll() is None:
                process.kill()
                process.wait()
        with contextlib.suppress(ValueError):
            self.running.remove(process)
        return process.returncode

    def kill_all(self) -> None:
        for process in self.running:
            if process.poll() is None:
                process.kill()
                process.wait()
        self.running.clear()


def serve_poll_size(partitions: int) -> int:
    """How many records serve asks Kafka for at once (DOCLOOP_BATCH_MAX_RECORDS, or its default, per partition
    number): the pipe polls as many."""
    from engine.settings import Settings

    return Settings().batch_max_records * partitions


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# Per table: rows, sequential vs index scans, (auto)analyze counts: a plan that scans a growing table per batch
# shows here.
TABLE_STATS = """
SELECT json_object_agg(relname, json_build_object('rows', n_live_tup, 'seq_scan', seq_scan, 'idx_scan', idx_scan,
       'autoanalyze', autoanalyze_count, 'autovacuum', autovacuum_count))
FROM pg_stat_user_tables
"""


def batch_timing(path: Path) -> dict[str, Any]:
    """From serve's log: batches applied and the time between consecutive ones (median, p95, max, seconds)."""
    stamps, sizes = [], []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{") and '"batch applied"' in line:
            with contextlib.suppress(ValueError, KeyError):
                entry = json.loads(line)
                stamps.append(datetime.fromisoformat(entry["ts"]).timestamp())
                sizes.append(entry.get("records", 0))
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    return {
        "count": len(stamps),
        "mean_records": sum(sizes) / len(sizes) if sizes else None,
        "gap_median_s": report.percentile(gaps, 50),
        "gap_p95_s": report.percentile(gaps, 95),
        "gap_max_s": max(gaps) if gaps else None,
    }


def warnings_in(path: Path) -> list[str]:
    """serve's warning and error log messages (a store outage during a run disturbs its numbers)."""
    found = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith("{") and ('"level": "warning"' in line or '"level": "error"' in line):
            with contextlib.suppress(ValueError, KeyError):
                found.append(json.loads(line)["msg"])
    return found


def pressure_totals() -> dict[str, int]:
    """Linux PSI: microseconds during which some task waited for CPU / IO / memory (cumulative)."""
    totals = {}
    for kind in ("cpu", "io", "memory"):
        try:
            line = Path(f"/proc/pressure/{kind}").read_text().splitlines()[0]
            totals[kind] = int(line.rsplit("total=", 1)[1])
        except (OSError, IndexError, ValueError):
            continue
    return totals


def pressure_pct(before: dict[str, int], seconds: float | None) -> dict[str, float]:
    """Share of the run's wall time during which some task stalled on CPU / IO / memory (another load shows)."""
    if not seconds:
        return {}
    after = pressure_totals()
    return {k: round((after[k] - before[k]) / 1e6 / seconds * 100, 1) for k in before if k in after}


async def settle() -> None:
    """Write dirty pages back before a measured run, so one run's writeback does not land in the next."""
    await asyncio.to_thread(os.sync)


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a live process so far (contention shows as wall time, not as CPU time)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM (peak resident set) of a live process, in MiB."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(r"^VmHWM:\s+(\d+)\s+kB", status, re.MULTILINE)
    return int(match.group(1)) / 1024 if match else None


# ---- the harness ----------------------------------------------------------------------------------------


@dataclass
class Drain:
    seconds: float | None  # ready -> lag 0 (and outbox drained), None on timeout
    done: int  # records covered by committed offsets at the end
    first_progress_s: float | None  # ready -> first committed offset
    timed_out: bool = False
    pending_outbox: int | None = None


class CpuLimits:
    """Per-process CPU quotas (cgroup v1 `cpu` controller, as a Kubernetes CPU limit sets them), so that each
    serve replica has cores of its own as on its own node, and the machine's 2 cores stop being the limit.
    Where the controller cannot be written (not root, cgroup v2 only) it says so once and limits nothing."""

    ROOT = Path("/sys/fs/cgroup/cpu")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.made: list[Path] = []
        self.available: bool | None = None

    def limit(self, name: str, pid: int, cores: float) -> None:
        group = self.ROOT / f"{self.prefix}-{name}"
        try:
            group.mkdir(exist_ok=True)
            self.made.append(group)
            period = int((group / "cpu.cfs_period_us").read_text())
            (group / "cpu.cfs_quota_us").write_text(str(int(period * cores)))
            (group / "cgroup.procs").write_text(str(pid))
            self.available = True
        except OSError as error:
            if self.available is None:
                log(f"warning: no CPU limit per replica ({type(error).__name__}: {error}); the cores are shared")
            self.available = False

    def remove_all(self) -> None:
        for group in self.made:
            with contextlib.suppress(OSError):
                group.rmdir()  # empty once its processes exited
        self.made = []


@dataclass
class Bench:
    cfg: Config
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    results: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.logs = self.cfg.out / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        for old in self.logs.glob("*.log"):
            old.unlink()
        self.kafka = Kafka(self.cfg)
        self.dbs = Databases(self.cfg, self.run_id)
        self.procs = Processes(self.logs)
        self.cpu_limits = CpuLimits(f"docloop-bench-{self.run_id}")
        self.topic_sets: dict[int, tuple[Topics, dict[TopicPartition, int]]] = {}

    # -- shared pieces --

    async def inbound(self, count: int) -> tuple[Topics, dict[TopicPartition, int], Path]:
        """Fresh inbound topics holding the first `count` simulated events (one set per count)."""
        path, events = simulated(self.cfg, count)
        if count not in self.topic_sets:
            topics = Topics(f"bench.{self.run_id}.n{count}.")
            await self.kafka.create(topics)
            started = time.monotonic()
            ends = await self.kafka.produce(topics, events)
            log(f"produced {count} events to {topics.prefix}* in {time.monotonic() - started:.1f} s")
            self.topic_sets[count] = (topics, ends)
        topics, ends = self.topic_sets[count]
        return topics, ends, path

    def serve_env(self, topics: Topics, group: str, database: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "DOCLOOP_CRASH_AT"}
        env.update(
            {
                "DOCLOOP_KAFKA_BOOTSTRAP": self.cfg.kafka,
                "DOCLOOP_DATABASE_URL": self.dbs.url(database),
                "DOCLOOP_GROUP_ID": group,
                "DOCLOOP_TOPIC_CLAIMS_DENIED": topics.name("claims"),
                "DOCLOOP_TOPIC_NOTES_SIGNED": topics.name("notes"),
                "DOCLOOP_TOPIC_ACKS": topics.name("acks"),
                "DOCLOOP_TOPIC_REVIEWS": topics.name("reviews"),
                "DOCLOOP_TOPIC_NOTIFICATIONS": topics.name("notifications"),
                "DOCLOOP_TOPIC_ESCALATIONS": topics.name("escalations"),
                "DOCLOOP_TOPIC_DLQ": topics.name("dlq"),
                "DOCLOOP_TOPIC_SILENCES": topics.name("silences"),
                "DOCLOOP_TOPIC_PARTITIONS": str(self.cfg.partitions),
                "DOCLOOP_LOG_LEVEL": "INFO",  # the readiness line is an INFO record
                # A configured key, as in production: an unset one makes serve warn, which marks the run disturbed.
                "DOCLOOP_PHI_HASH_KEY": os.environ.get("DOCLOOP_PHI_HASH_KEY", "bench-key"),
                # The HTTP side port stays on (it is part of serve), on localhost and a free port, so that it
                # cannot clash with another serve on the default 8080.
                "DOCLOOP_HTTP_HOST": "127.0.0.1",
                "DOCLOOP_HTTP_PORT": str(free_port()),
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    async def drain(
        self,
        group: str,
        ends: dict[TopicPartition, int],
        ready: float,
        process: subprocess.Popen[bytes],
        database: str | None,
        timeout: float,
    ) -> Drain:
        """Poll until the group's committed offsets reach `ends` (and the outbox is drained, for serve)."""
        total = sum(ends.values())
        first: float | None = None
        done = 0
        pending: int | None = None
        while True:
            with contextlib.suppress(Exception):  # a transient admin error is retried at the next poll
                done = await self.kafka.committed(group, ends)
            now = time.time()
            if first is None and done > 0:
                first = now - ready
            if done >= total:
                # Offsets are committed only after the batch's outbox rows are, so the outbox check comes second.
                pending = (
                    0
                    if database is None
                    else await self.dbs.scalar(
                        database,
                        "SELECT (SELECT count(*) FROM outbox WHERE published_at IS NULL)"
                        " + (SELECT count(*) FROM routing_queue)",
                    )
                )
                if pending == 0:
                    return Drain(time.time() - ready, done, first, pending_outbox=0)
            if process.poll() is not None:
                raise RuntimeError(f"process exited during the run (code {process.returncode}); see {self.logs}")
            if now - ready > timeout:
                log(f"timeout after {timeout:.0f} s: {done}/{total} records committed")
                return Drain(None, done, first, timed_out=True, pending_outbox=pending)
            await asyncio.sleep(0.1)

    def _rate(self, drain: Drain, total: int) -> float | None:
        if drain.seconds is not None:
            return report.rate(total, drain.seconds)
        return report.rate(drain.done, self.cfg.run_timeout)  # a lower bound: what it managed in the time

    async def run_pipe(self, topics: Topics, ends: dict[TopicPartition, int], label: str) -> dict[str, Any]:
        group = f"{topics.prefix}{label}"
        argv = [
            sys.executable,
            "-m",
            "bench.pipe",
            "--bootstrap",
            self.cfg.kafka,
            "--group",
            group,
            "--topics",
            ",".join(topics.inbound),
            "--out-topic",
            topics.name("pipe-out"),
            "--max-records",
            str(serve_poll_size(self.cfg.partitions)),
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        await settle()
        process, path = self.procs.start(label, argv, env)
        try:
            ready = await Processes.ready(process, path, "pipe ready")
            cpu_at_ready, psi = cpu_seconds(process.pid), pressure_totals()
            drain = await self.drain(group, ends, ready, process, None, self.cfg.run_timeout)
            stalls = pressure_pct(psi, time.time() - ready)
            rss = peak_rss_mb(process.pid)
            cpu = _delta(cpu_seconds(process.pid), cpu_at_ready)
        finally:
            await self.procs.stop(process)
        return self._figures(drain, sum(ends.values()), cpu, rss, stalls)

    def _figures(
        self, drain: Drain, total: int, cpu: float | None, rss: float | None, stalls: dict[str, float]
    ) -> dict[str, Any]:
        """What every timed run reports, pipe and serve alike."""
        return {
            "stall_pct": stalls,
            "cpu_s": cpu,
            "events_per_cpu_s": report.rate(total, cpu) if not drain.timed_out else None,
            "events": total,
            "seconds": drain.seconds,
            "events_per_s": self._rate(drain, total),
            "first_commit_s": drain.first_progress_s,
            "timed_out": drain.timed_out,
            "peak_rss_mb": rss,
        }

    async def run_serve(
        self, label: str, topics: Topics, ends: dict[TopicPartition, int], template: str | None = None
    ) -> dict[str, Any]:
        """One `docloop serve` on a fresh database (a copy of `template` when given) over the topics' events;
        events/s from ready to drained."""
        database = await self.dbs.create(label, template)
        result: dict[str, Any] = {"database": database, "template": template}
        group = f"{topics.prefix}{label}.engine"
        await settle()
        process, path = self.procs.start(
            f"serve-{label}", [sys.executable, "-m", "engine.cli", "serve"], self.serve_env(topics, group, database)
        )
        try:
            ready = await Processes.ready(process, path, '"docloop serving"')
            cpu_at_ready, psi = cpu_seconds(process.pid), pressure_totals()
            drain = await self.drain(group, ends, ready, process, database, self.cfg.run_timeout)
            stalls = pressure_pct(psi, time.time() - ready)
            rss = peak_rss_mb(process.pid)
            cpu = _delta(cpu_seconds(process.pid), cpu_at_ready)
            applied = await self.dbs.scalar(database, "SELECT count(*) FROM processed_events")
            dlq = await self.dbs.scalar(database, "SELECT count(*) FROM outbox WHERE stream = 'dlq'")
            outbox = await self.dbs.scalar(database, "SELECT count(*) FROM outbox")
            tables = await self.dbs.scalar(database, TABLE_STATS)
        finally:
            code = await self.procs.stop(process)
        total = sum(ends.values())
        disturbed = warnings_in(path)
        if disturbed:
            log(f"warning: serve logged {len(disturbed)} warnings in run {label} (e.g. {disturbed[0]!r}): disturbed")
        result.update({"warnings": len(disturbed), "warning_kinds": sorted(set(disturbed))})
        result.update(self._figures(drain, total, cpu, rss, stalls))
        result.update(
            {
                "applied_events": applied,
                "dlq": dlq,
                "outbox_rows": outbox,
                "exit_code": code,
                "loadavg_after": os.getloadavg(),
                "batches": batch_timing(path),
                "tables": json.loads(tables) if tables else None,
            }
        )
        if dlq:
            log(f"warning: {dlq} events went to the DLQ in run {label}")
        return result

    async def preloaded_template(self, cases: int) -> dict[str, Any]:
        """A migrated database holding `cases` cases and their patterns, to copy for each loaded run."""
        database = await self.dbs.create("preloaded")
        subprocess.run(
            [sys.executable, "-m", "engine.cli", "db", "upgrade", "--database-url", self.dbs.url(database)],
            cwd=ROOT,
            check=True,
            capture_output=True,
            timeout=300,
        )
        for attempt in range(5):  # one transaction: a PostgreSQL restart midway leaves nothing behind
            try:
                loaded = await preload(self.dbs.dsn(database), cases, open_share=self.cfg.scale_open_share)
                break
            except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError) as error:
                if attempt == 4:
                    raise
                log(f"pre-load interrupted ({type(error).__name__}: PostgreSQL restarted?); again")
                await self.dbs.wait_up()
        log(f"pre-loaded {loaded.cases} cases / {loaded.patterns} patterns in {loaded.seconds:.1f} s")
        return {"database": database, "cases": loaded.cases, "patterns": loaded.patterns, "seconds": loaded.seconds}

    # -- phases --

    async def throughput(self) -> None:
        n, repeat = self.cfg.events, self.cfg.repeat
        topics, ends, _ = await self.inbound(n)
        pipes, engines = [], []
        for r in range(repeat):  # alternating, so slow spells of the machine hit both sides alike
            log(f"throughput {r + 1}/{repeat}: bare aiokafka pipe over {n} events")
            pipes.append(await self.run_pipe(topics, ends, f"pipe{r}"))
            log(f"  pipe: {describe(pipes[-1])}")
            log(f"throughput {r + 1}/{repeat}: docloop serve over {n} events")
            engines.append(await self.run_serve(f"tp{r}", topics, ends))
            log(f"  serve: {describe(engines[-1])}")
        engine, pipe = report.median_run(engines), report.median_run(pipes)
        self.results["throughput"] = {
            "events": n,
            "repeat": repeat,
            "engine": engine,
            "pipe": pipe,
            "ratio": report.ratio(engine["events_per_s"], pipe["events_per_s"]),
            "engine_runs": engines,
            "pipe_runs": pipes,
        }
        peaks = [run["peak_rss_mb"] for run in engines if run["peak_rss_mb"] is not None]
        self.results["memory"] = {
            "rss_mb": max(peaks) if peaks else None,
            "source": "VmHWM (peak RSS) of serve, highest over the throughput runs",
        }

    async def replay(self) -> None:
        n = self.cfg.events
        path, events = simulated(self.cfg, n)
        source = self.cfg.out / "replay-input.jsonl"
        source.write_bytes(b"".join(e.value + b"\n" for e in events))
        out = self.cfg.out / "replay"
        log(f"replay: docloop replay of {n} events on SQLite")
        await settle()
        started = time.monotonic()
        completed = subprocess.run(
            [sys.executable, "-m", "engine.cli", "replay", str(source), "--out", str(out)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=max(600.0, self.cfg.run_timeout),
        )
        seconds = time.monotonic() - started
        (self.logs / "replay.log").write_text(completed.stdout + completed.stderr)
        if completed.returncode != 0:
            raise RuntimeError(f"replay failed ({completed.returncode}):\n{completed.stderr[-3000:]}")
        self.results["replay"] = {
            "events": n,
            "seconds": seconds,
            "events_per_s": report.rate(n, seconds),
            "store": "sqlite",
            "includes": "process start, migrations, output files",
        }
        log(f"  replay: {report.fmt(report.rate(n, seconds), 0)} events/s ({seconds:.1f} s)")

    async def scale(self) -> None:
        n, cases, repeat = self.cfg.scale_events, self.cfg.scale_cases, self.cfg.repeat
        topics, ends, _ = await self.inbound(n)
        template = await self.preloaded_template(cases)
        empties, loadeds = [], []
        for r in range(repeat):  # back to back, alternating: same events, same conditions
            log(f"scale {r + 1}/{repeat}: docloop serve over {n} events, empty store")
            empties.append(await self.run_serve(f"empty{r}", topics, ends))
            log(f"  empty: {describe(empties[-1])}")
            log(f"scale {r + 1}/{repeat}: docloop serve over {n} events, {cases} cases stored")
            loadeds.append(await self.run_serve(f"loaded{r}", topics, ends, template=template["database"]))
            log(f"  loaded: {describe(loadeds[-1])}")
        empty, loaded = report.median_run(empties), report.median_run(loadeds)
        self.results["scale"] = {
            "events": n,
            "cases": cases,
            "repeat": repeat,
            "open_share": self.cfg.scale_open_share,
            "preload": template,
            "empty": empty,
            "preloaded": loaded,
            "scale_ratio": report.ratio(loaded["events_per_s"], empty["events_per_s"]),
            "empty_runs": empties,
            "preloaded_runs": loadeds,
        }

    async def poison(self) -> None:
        n, repeat = self.cfg.events, self.cfg.repeat
        clean_topics, clean_ends, _ = await self.inbound(n)
        _, events = simulated(self.cfg, n)
        mixed = with_poison(events, self.cfg.poison_every)
        hostile = len(mixed) - len(events)
        topics = Topics(f"bench.{self.run_id}.poison{n}.")
        await self.kafka.create(topics)
        ends = await self.kafka.produce(topics, mixed)
        log(f"produced {n} events with {hostile} hostile ones mixed in to {topics.prefix}*")
        cleans, poisoned = [], []
        for r in range(repeat):  # alternating, so slow spells of the machine hit both sides alike
            log(f"poison {r + 1}/{repeat}: docloop serve over {n} events")
            cleans.append(await self.run_serve(f"clean{r}", clean_topics, clean_ends))
            log(f"  clean: {describe(cleans[-1])}")
            log(f"poison {r + 1}/{repeat}: docloop serve over {n} events and {hostile} hostile ones")
            poisoned.append(await self.run_serve(f"poison{r}", topics, ends))
            log(f"  poisoned: {describe(poisoned[-1])}; {poisoned[-1]['dlq']} in the DLQ")
        clean, poison = report.median_run(cleans), report.median_run(poisoned)
        self.results["poison"] = {
            "events": n,
            "hostile": hostile,
            "repeat": repeat,
            "clean": clean,
            "poisoned": poison,
            "poison_ratio": report.ratio(poison["events_per_s"], clean["events_per_s"]),
            "clean_runs": cleans,
            "poisoned_runs": poisoned,
        }

    async def run_replicas(self, label: str, n: int, replicas: int, proxy_port: int) -> dict[str, Any]:
        """`replicas` serve processes in one group on a fresh, migrated database reached through the delaying
        proxy, started on fresh empty topics; once the group is stable (every task assigned, no rebalance in
        sight) the first `n` simulated events are produced, and events/s runs from the first one produced to
        drained (lag 0 and outbox published). The group's joins are left out: they cost the same seconds
        whatever the replicas can do, and scale-out is about what they can do."""
        _, events = simulated(self.cfg, n)
        topics = Topics(f"bench.{self.run_id}.{label}.")
        await self.kafka.create(topics)
        database = await self.dbs.create(label)
        subprocess.run(
            [sys.executable, "-m", "engine.cli", "db", "upgrade", "--database-url", self.dbs.url(database)],
            cwd=ROOT,
            check=True,
            capture_output=True,
            timeout=300,
        )
        url = make_url(self.dbs.url(database)).set(host="127.0.0.1", port=proxy_port)
        group = f"{topics.prefix}engine"
        await settle()
        started = []
        for index in range(replicas):
            env = self.serve_env(topics, group, database)
            env["DOCLOOP_DATABASE_URL"] = url.render_as_string(hide_password=False)
            env["DOCLOOP_MIGRATE_ON_START"] = "false"
            started.append(
                self.procs.start(f"serve-{label}-{index}", [sys.executable, "-m", "engine.cli", "serve"], env)
            )
            if self.cfg.replica_cpu:
                self.cpu_limits.limit(f"{label}-{index}", started[-1][0].pid, self.cfg.replica_cpu)
        try:
            for process, path in started:
                await Processes.ready(process, path, '"docloop serving"')
            await stable_assignment([path for _, path in started], self.cfg.partitions)
            begun = time.time()
            ends = await self.kafka.produce(topics, events)
            drain = await self.drain(group, ends, begun, started[0][0], database, self.cfg.run_timeout)
        finally:
            for process, _ in started:
                await self.procs.stop(process)
            self.cpu_limits.remove_all()
        return {"database": database, "replicas": replicas, **self._figures(drain, sum(ends.values()), None, None, {})}

    async def scaleout(self) -> None:
        n, repeat = self.cfg.scaleout_events, self.cfg.repeat
        target = make_url(self.cfg.pg_url)
        port = free_port()
        proxy = self.procs.start(
            "delay-proxy",
            [
                sys.executable,
                "-m",
                "bench.delay_proxy",
                "--listen",
                f"127.0.0.1:{port}",
                "--to",
                f"{target.host}:{target.port}",
                "--delay-ms",
                str(self.cfg.proxy_delay_ms),
            ],
            dict(os.environ),
        )[0]
        try:
            await asyncio.sleep(1.0)
            ones, threes = [], []
            for r in range(repeat):  # alternating, so slow spells of the machine hit both sides alike
                log(f"scaleout {r + 1}/{repeat}: 1 replica over {n} events, {self.cfg.proxy_delay_ms} ms each way")
                ones.append(await self.run_replicas(f"one{r}", n, 1, port))
                log(f"  1 replica: {describe(ones[-1])}")
                log(f"scaleout {r + 1}/{repeat}: 3 replicas over {n} events")
                threes.append(await self.run_replicas(f"three{r}", n, 3, port))
                log(f"  3 replicas: {describe(threes[-1])}")
        finally:
            await self.procs.stop(proxy)
        one, three = report.median_run(ones), report.median_run(threes)
        self.results["scaleout"] = {
            "events": n,
            "repeat": repeat,
            "proxy_delay_ms": self.cfg.proxy_delay_ms,
            "replica_cpu": self.cfg.replica_cpu if self.cpu_limits.available else None,
            "one": one,
            "three": three,
            "scaleout_ratio": report.ratio(three["events_per_s"], one["events_per_s"]),
            "one_runs": ones,
            "three_runs": threes,
        }

    async def latency(self) -> None:
        """With the configured DOCLOOP_TASK_IDLE_MS (the figure with a target), then with 0: what the engine's
        own path costs when nothing waits for a quiet input (Kafka Streams' default); then at a low rate, where
        a record's own inputs are quiet too (what a small hospital's feed sees)."""
        self.results["latency"] = await self._latency_run(None)
        if os.environ.get("DOCLOOP_TASK_IDLE_MS", "") != "0":
            self.results["latency_no_wait"] = await self._latency_run("0")
        if self.cfg.low_rate:
            self.results["latency_low_rate"] = await self._latency_run(None, self.cfg.low_rate)

    async def _latency_run(self, idle_ms: str | None, rate: int | None = None) -> dict[str, Any]:
        cfg = self.cfg
        rate = rate or cfg.rate
        slots = rate * cfg.latency_seconds
        probes = min(cfg.probes, max(1, slots // 12))
        background_count = slots - 3 * probes
        _, events = simulated(cfg, cfg.warmup + background_count)
        warm, background = events[: cfg.warmup], events[cfg.warmup :]
        run = ("lat" if idle_ms is None else f"lat{idle_ms}") + ("" if rate == cfg.rate else f"r{rate}")
        topics = Topics(f"bench.{self.run_id}.{run}.")
        await self.kafka.create(topics)
        ends = await self.kafka.produce(topics, warm)
        database = await self.dbs.create(run)
        group = f"{topics.prefix}engine"
        log(f"latency: warm-up of {len(warm)} events")
        await settle()
        env = self.serve_env(topics, group, database)
        if idle_ms is not None:
            env["DOCLOOP_TASK_IDLE_MS"] = idle_ms
            log(f"latency: again with DOCLOOP_TASK_IDLE_MS={idle_ms}")
        process, path = self.procs.start(
            f"serve-latency{'' if idle_ms is None else '-idle' + idle_ms}{'' if rate == cfg.rate else f'-rate{rate}'}",
            [sys.executable, "-m", "engine.cli", "serve"],
            env,
        )
        try:
            ready = await Processes.ready(process, path, '"docloop serving"')
            warmed = await self.drain(group, ends, ready, process, database, cfg.run_timeout)
            if warmed.timed_out:
                raise RuntimeError("serve did not finish the warm-up in time")
            log(
                f"  warm-up done in {warmed.seconds:.1f} s; offering {rate} events/s for "
                f"{cfg.latency_seconds} s with {probes} probe patterns"
            )
            cpu_before, offer_started = cpu_seconds(process.pid), time.monotonic()
            measured = await self._offer(topics, background, probes, process, rate)
            cpu = _delta(cpu_seconds(process.pid), cpu_before)
            # serve's share of one core while offered the rate: what a steady hospital feed costs it
            measured["serve_cpu_share"] = None if cpu is None else cpu / (time.monotonic() - offer_started)
            measured["warmup_events"] = len(warm)
            measured["warmup_seconds"] = warmed.seconds
            measured["peak_rss_mb"] = peak_rss_mb(process.pid)
        finally:
            await self.procs.stop(process)
        disturbed = warnings_in(path)
        measured["warnings"] = len(disturbed)
        measured["warning_kinds"] = sorted(set(disturbed))
        if disturbed:
            log(
                f"warning: serve logged {len(disturbed)} warnings in the latency run (e.g. {disturbed[0]!r}): disturbed"
            )
        log(
            f"  p50 {report.fmt(measured['p50_ms'], 1)} ms, p95 {report.fmt(measured['p95_ms'], 1)} ms, "
            f"p99 {report.fmt(measured['p99_ms'], 1)} ms, missing {measured['probes_missing']}; serve used "
            f"{report.fmt((measured['serve_cpu_share'] or 0) * 100, 0)}% of a core"
        )
        measured["task_idle_ms"] = idle_ms
        return measured

    async def _offer(
        self, topics: Topics, background: list[Event], probes: int, process: subprocess.Popen[bytes], rate: int
    ) -> dict[str, Any]:
        cfg = self.cfg
        slots = len(background) + 3 * probes
        lead = max(2, int(rate * 2))  # the first two denials go out about 2 s before the third
        npis = [probe_npi(k) for k in range(probes)]
        # Where each probe event goes in the stream: the third denials spread evenly after the lead.
        plan: dict[int, tuple[int, int]] = {}

        def place(slot: int, item: tuple[int, int]) -> None:
            while slot in plan:
                slot += 1
            plan[slot] = item

        span = max(1, slots - lead - 3 - int(rate))  # leave the last second free of third denials
        for k in range(probes):
            third = lead + 2 + (k * span) // probes
            place(third - lead, (k, 1))
            place(third - lead + 1, (k, 2))
            place(third, (k, 3))
        # The stream, slot by slot: a probe denial (k, j) or a background event (None only if background ran out).
        sequence: list[tuple[int, int] | Event | None] = []
        queue = iter(background)
        left = len(plan)
        while left or len(sequence) < slots:
            item: tuple[int, int] | Event | None = plan.get(len(sequence))
            if item is not None:
                left -= 1
            else:
                item = next(queue, None)
                if item is None and not left:
                    break
            sequence.append(item)
        consumer = AIOKafkaConsumer(bootstrap_servers=cfg.kafka, enable_auto_commit=False, group_id=None)
        await consumer.start()
        partitions = [TopicPartition(topics.name("notifications"), p) for p in range(cfg.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)
        producer = AIOKafkaProducer(
            bootstrap_servers=cfg.kafka, acks="all", enable_idempotence=True, client_id="docloop-bench-load"
        )
        await producer.start()
        sent: dict[str, float] = {}
        received: dict[str, float] = {}
        early: set[str] = set()
        wanted = set(npis)
        stop_reading = asyncio.Event()

        async def read() -> None:
            while not stop_reading.is_set():
                batches = await consumer.getmany(timeout_ms=100)
                now = time.time()
                for records in batches.values():
                    for record in records:
                        message = json.loads(record.value)
                        npi = (message.get("pattern") or {}).get("provider_npi")
                        if message.get("kind") == "pattern_opened" and npi in wanted and npi not in received:
                            received[npi] = now
                            if npi not in sent:
                                early.add(npi)

        reader = asyncio.create_task(read())
        service_dates: dict[int, date] = {}
        clock = background[0].occurred_at if background else datetime.now(UTC) - timedelta(days=300)
        confirmations = []
        started = time.monotonic()
        total = sum(item is not None for item in sequence)
        try:
            for i, item in enumerate(sequence):
                delay = started + i / rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                if item is None:
                    continue
                if isinstance(item, Event):
                    clock = max(clock, item.occurred_at)
                    topic, value, key = topics.name(item.kind), item.value, item.key
                else:
                    k, j = item
                    at = clock + timedelta(seconds=1)  # probes come just after the stream's current event time
                    base = service_dates.setdefault(k, at.date() - timedelta(days=30))
                    department = DEPARTMENTS[k % len(DEPARTMENTS)]
                    topic, key = topics.name("claims"), npis[k].encode()
                    value = probe_claim(self.run_id, k, j, npis[k], department, at, base + timedelta(days=j))
                    if j == 3:
                        sent[npis[k]] = time.time()
                confirmations.append(await producer.send(topic, value, key=key))
                if len(confirmations) >= 1000:
                    await asyncio.gather(*confirmations)
                    confirmations = []
                    if process.poll() is not None:
                        raise RuntimeError("serve exited during the latency run")
            await asyncio.gather(*confirmations)
            offered_seconds = time.monotonic() - started
            deadline = time.monotonic() + 30
            while len(received) < len(wanted) and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
        finally:
            stop_reading.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(reader, timeout=5)
            await producer.stop()
            await consumer.stop()
        latencies = [
            (received[npi] - sent[npi]) * 1000 if npi in received and npi not in early else math.inf
            for npi in npis
            if npi in sent
        ]
        values = {f"p{q}": report.percentile(latencies, q) for q in (50, 95, 99)}
        finite = [v for v in latencies if not math.isinf(v)]
        result: dict[str, Any] = {
            "offered_rate": rate,
            "achieved_rate": total / offered_seconds if offered_seconds > 0 else None,
            "seconds": offered_seconds,
            "events": total,
            "probes": probes,
            "probes_answered": len(finite),
            "probes_missing": len(latencies) - len(finite),
            "probes_opened_early": len(early),
            "max_ms": max(finite) if finite else None,
            "mean_ms": sum(finite) / len(finite) if finite else None,
            "latencies_ms": [round(v, 1) for v in sorted(finite)],
        }
        for name, value in values.items():
            result[f"{name}_ms"] = report.json_number(value)
            result[f"{name}_unbounded"] = value is not None and math.isinf(value)
        return result

    # -- the whole run --

    async def run(self) -> None:
        cfg = self.cfg
        self.results.update(
            {
                "run_id": self.run_id,
                "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "config": {
                    "events": cfg.events,
                    "scale_events": cfg.scale_events,
                    "scale_cases": cfg.scale_cases,
                    "scale_open_share": cfg.scale_open_share,
                    "rate": cfg.rate,
                    "low_rate": cfg.low_rate,
                    "latency_seconds": cfg.latency_seconds,
                    "probes": cfg.probes,
                    "warmup": cfg.warmup,
                    "seed": cfg.seed,
                    "days": cfg.days,
                    "run_timeout": cfg.run_timeout,
                    "repeat": cfg.repeat,
                    "phases": list(cfg.phases),
                    "partitions": cfg.partitions,
                    "poison_every": cfg.poison_every,
                    "kafka": cfg.kafka,
                    "docloop_env": {k: v for k, v in os.environ.items() if k.startswith("DOCLOOP_") and "URL" not in k},
                },
                "host": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "machine": platform.machine(),
                    "loadavg_at_start": os.getloadavg(),
                },
                "targets": {
                    "ratio": report.TARGET_RATIO,
                    "p99_ms": report.TARGET_P99_MS,
                    "scale_ratio": report.TARGET_SCALE_RATIO,
                    "rss_mb": report.TARGET_RSS_MB,
                    "poison_ratio": report.TARGET_POISON_RATIO,
                    "scaleout_ratio": report.TARGET_SCALEOUT_RATIO,
                },
                "errors": {},
            }
        )
        started = time.monotonic()
        await self.kafka.start()
        try:
            for phase in PHASES:
                if phase not in cfg.phases:
                    continue
                try:
                    await getattr(self, phase)()
                except Exception as error:  # one failed phase still leaves the others' numbers
                    log(f"phase {phase} failed: {type(error).__name__}: {error}")
                    self.results["errors"][phase] = f"{type(error).__name__}: {error}"[:4000]
                    self.procs.kill_all()
        finally:
            self.procs.kill_all()
            if not cfg.keep:
                await self.kafka.delete_created()
                await self.dbs.drop_created()
            await self.kafka.close()
        self.results["total_seconds"] = time.monotonic() - started


def describe(run: dict[str, Any]) -> str:
    text = (
        f"{report.fmt(run['events_per_s'], 0)} events/s ({report.fmt(run['seconds'], 1)} s"
        f"{', TIMED OUT' if run['timed_out'] else ''}), {report.fmt(run['cpu_s'], 1)} CPU s "
        f"({report.fmt(run['events_per_cpu_s'], 0)} events per CPU s), peak RSS {report.fmt(run['peak_rss_mb'], 1)} MB"
    )
    batches = run.get("batches")
    if batches:
        text += (
            f"; {batches['count']} batches, median {report.fmt(batches['gap_median_s'], 2)} s apart, "
            f"max {report.fmt(batches['gap_max_s'], 2)} s"
        )
    return text + f"; stalled % of wall time {run.get('stall_pct')}"


def _delta(after: float | None, before: float | None) -> float | None:
    return None if after is None or before is None else after - before


def probe_npi(k: int) -> str:
    prefix = f"19998{k:04d}"
    return next(prefix + d for d in "0123456789" if npi_is_valid(prefix + d))


def probe_claim(run_id: str, k: int, j: int, npi: str, department: str, at: datetime, service_date: date) -> bytes:
    """Denial j (1..3) of probe pattern k: CO-150 + M25 on 99215, em_level_unsupported, a clinician cause."""
    ident = f"{run_id}-{k}-{j}"
    event = {
        "event_type": "claim.denied",
        "schema_version": 1,
        "event_id": f"bench-{ident}",
        "occurred_at": at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": "bench",
        "claim_id": f"BENCH-CLM-{ident}",
        "encounter_id": f"BENCH-ENC-{ident}",
        "patient_ref": f"MRN-B{k:05d}{j}",
        "payer": {"id": "MCR01", "name": "Medicare Part B"},
        "rendering_provider": {"npi": npi, "name": "Bench Probe", "department": department},
        "service_date": service_date.isoformat(),
        "lines": [
            {
                "line_number": 1,
                "procedure_code": "99215",
                "modifiers": [],
                "diagnosis_codes": ["E11.9"],
                "billed_amount": "210.00",
                "paid_amount": "0.00",
                "adjustments": [{"group_code": "CO", "reason_code": "150", "amount": "210.00"}],
                "remark_codes": ["M25"],
            }
        ],
    }
    return json.dumps(event).encode()


def with_poison(events: Sequence[Event], every: int) -> list[Event]:
    """`events` with a hostile record after every `every`-th one, on the same topic and key as that event (so
    it lands in a batch of real work); the hostile values cycle through the test corpus, deep nesting first."""
    hostile = [deep_nesting()] + [case.raw for case in corpus()]
    mixed: list[Event] = []
    for index, event in enumerate(events, start=1):
        mixed.append(event)
        if index % every == 0:
            mixed.append(Event(hostile[(index // every - 1) % len(hostile)], event.kind, event.key, event.occurred_at))
    return mixed


def disturbed_runs(results: dict[str, Any]) -> list[str]:
    """Runs during which serve logged warnings (a store outage, say): their numbers are not clean."""
    tp, sc, po = results.get("throughput") or {}, results.get("scale") or {}, results.get("poison") or {}
    runs = [*(tp.get("engine_runs") or []), *(sc.get("empty_runs") or []), *(sc.get("preloaded_runs") or [])]
    runs += [*(po.get("clean_runs") or []), *(po.get("poisoned_runs") or [])]
    named = [(run.get("database", "?"), run) for run in runs]
    if results.get("latency"):
        named.append(("latency", results["latency"]))
    return [f"{name} ({', '.join(run['warning_kinds'])})" for name, run in named if run.get("warnings")]


def summarize(results: dict[str, Any]) -> tuple[str, str]:
    """The table and the last line."""
    lat = results.get("latency") or {}
    p99 = lat.get("p99_ms")
    if p99 is None and lat.get("p99_unbounded"):
        p99 = math.inf
    line = report.summary_line(
        (results.get("throughput") or {}).get("ratio"),
        p99,
        (results.get("scale") or {}).get("scale_ratio"),
        (results.get("memory") or {}).get("rss_mb"),
        (results.get("poison") or {}).get("poison_ratio"),
        (results.get("scaleout") or {}).get("scaleout_ratio"),
    )
    return report.render_table(report.build_rows(results)), line


def main() -> int:
    cfg = Config.from_env()
    cfg.out.mkdir(parents=True, exist_ok=True)
    if urlsplit(f"//{cfg.kafka.split(',')[0]}").port is None:
        raise SystemExit("BENCH_KAFKA needs host:port")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup on SIGTERM too
    # Fresh topics answer NotLeaderForPartition for a moment; aiokafka retries, no need to print each one.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    bench = Bench(cfg)
    log(
        f"run {bench.run_id}: events={cfg.events} scale_events={cfg.scale_events} scale_cases={cfg.scale_cases} "
        f"rate={cfg.rate}/s for {cfg.latency_seconds}s probes={cfg.probes} phases={','.join(cfg.phases)}"
    )
    try:
        asyncio.run(bench.run())
    finally:
        bench.procs.kill_all()
        table, line = summarize(bench.results)
        (cfg.out / "bench.json").write_text(json.dumps(bench.results, indent=2, default=str) + "\n")
        print()
        print(table)
        disturbed = disturbed_runs(bench.results)
        if disturbed:
            print("disturbed (serve logged warnings; rerun for clean numbers): " + "; ".join(disturbed))
        if bench.results.get("errors"):
            print(f"errors: {json.dumps(bench.results['errors'])[:2000]}")
        print(f"wrote {cfg.out / 'bench.json'}; logs in {cfg.out / 'logs'}")
        print(line, flush=True)
    return 1 if bench.results.get("errors") else 0


if __name__ == "__main__":
    sys.exit(main())
