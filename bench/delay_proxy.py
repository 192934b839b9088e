"""A loopback TCP proxy that delays every chunk it forwards, in both directions, by a fixed time: serve and
PostgreSQL on one machine then talk as over a network with that much latency each way (the scale-out phase
puts it between serve and PostgreSQL, so work is I/O-bound as in a real deployment, not bound by 2 cores).

    python -m bench.delay_proxy --listen 127.0.0.1:6433 --to 127.0.0.1:5433 --delay-ms 2

Order is kept per connection and direction (each chunk leaves `delay` after it arrived, in arrival order).
It serves until killed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time


async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float) -> None:
    queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

    async def forward() -> None:
        while True:
            due, chunk = await queue.get()
            if not chunk:
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            writer.write(chunk)
            await writer.drain()

    sender = asyncio.create_task(forward())
    try:
        while chunk := await reader.read(65536):
            queue.put_nowait((time.monotonic() + delay, chunk))
    finally:
        queue.put_nowait((0.0, b""))
        with contextlib.suppress(Exception):
            await sender
        with contextlib.suppress(Exception):
            writer.close()


async def serve(listen: str, target: str, delay: float) -> None:
    host, port = listen.rsplit(":", 1)
    to_host, to_port = target.rsplit(":", 1)

    async def connection(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            server_reader, server_writer = await asyncio.open_connection(to_host, int(to_port))
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pump(client_reader, server_writer, delay), pump(server_reader, client_writer, delay), return_exceptions=True
        )

    server = await asyncio.start_server(connection, host, int(port))
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--to", required=True)
    parser.add_argument("--delay-ms", type=float, default=2.0)
    args = parser.parse_args()
    asyncio.run(serve(args.listen, args.to, args.delay_ms / 1000))


if __name__ == "__main__":
    main()
