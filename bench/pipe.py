"""The baseline of the throughput ratio: a bare aiokafka pipe, run as its own process by `bench.run`.

It consumes the inbound topics in batches (its own consumer group, from the earliest offset), decodes each
value with json.loads, produces one message per input to an output topic (same key, the value encoded again),
waits for the broker to confirm the batch and then commits the batch's offsets. That is the least any
at-least-once Kafka service in Python does per event, with the same producer settings as `docloop serve`
(acks=all, idempotence, linger 5 ms), polling as many records at once as serve (bench.run passes serve's poll
size). It prints `pipe ready` once its clients have started and runs until SIGTERM/SIGINT.

    python -m bench.pipe --bootstrap localhost:9092 --group g --topics a,b,c --out-topic o
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def pipe(bootstrap: str, group: str, topics: list[str], out_topic: str, max_records: int) -> int:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    consumer = AIOKafkaConsumer(
        *topics,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="bench-pipe",
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5, client_id="bench-pipe"
    )
    await producer.start()
    await consumer.start()
    print("pipe ready", flush=True)
    handled = 0
    try:
        while not stopping.is_set():
            batches = await consumer.getmany(timeout_ms=200, max_records=max_records)
            if not batches:
                continue
            confirmations = []
            for records in batches.values():
                for record in records:
                    event = json.loads(record.value)
                    value = json.dumps(event).encode()
                    confirmations.append(await producer.send(out_topic, value, key=record.key))
            await asyncio.gather(*confirmations)
            await consumer.commit()
            handled += len(confirmations)
    finally:
        with contextlib.suppress(Exception):
            await consumer.stop()
        with contextlib.suppress(Exception):
            await producer.stop()
        print(f"pipe stopped after {handled} records", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.pipe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", default="localhost:9092")
    parser.add_argument("--group", required=True)
    parser.add_argument("--topics", required=True, help="comma-separated inbound topics")
    parser.add_argument("--out-topic", required=True)
    parser.add_argument(
        "--max-records", type=int, default=500, help="records per batch (bench.run passes serve's poll size)"
    )
    args = parser.parse_args(argv)
    topics = [name for name in args.topics.split(",") if name]
    return asyncio.run(pipe(args.bootstrap, args.group, topics, args.out_topic, args.max_records))


if __name__ == "__main__":
    raise SystemExit(main())
