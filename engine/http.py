"""serve's HTTP side port: a Starlette application served by uvicorn inside serve's own event loop.

The side port carries the probes (`/healthz`, `/readyz`) and the Prometheus scrape (`/metrics`), always open
on the internal port, and, only when API tokens are configured, the read API (engine/api.py).

uvicorn runs as one more task of serve's loop rather than as its own process: the probes then see the very
engine they report on, and serve keeps ownership of SIGTERM (uvicorn would otherwise install its own handlers
and stop only the HTTP server).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Generic, TypeVar

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route

log = logging.getLogger("docloop.http")

T = TypeVar("T")
Endpoint = Callable[[Request], Awaitable[Response]]


class CachedCheck(Generic[T]):
    """A check whose result is reused for `ttl` seconds, and which runs at most once at a time.

    Probes come from kubelets, load balancers and dashboards at once; without this, every call costs a
    database query and a broker request, and a burst of calls slows the engine down until checks time out
    and report a false failure. Concurrent callers during a check share that one check (single flight).
    """

    def __init__(self, check: Callable[[], Awaitable[T]], ttl: float, clock: Callable[[], float] = time.monotonic):
        self.check = check
        self.ttl = ttl
        self.clock = clock
        self._result: T | None = None
        self._checked_at: float | None = None
        self._running: asyncio.Task[T] | None = None

    async def get(self) -> T:
        if self._checked_at is not None and self.clock() - self._checked_at < self.ttl:
            return self._result  # type: ignore[return-value]
        if self._running is None:
            self._running = asyncio.create_task(self._run())
        # shield: a caller that goes away (client disconnect) must not cancel the check the others wait for.
        return await asyncio.shield(self._running)

    async def _run(self) -> T:
        try:
            result = await self.check()
            self._result, self._checked_at = result, self.clock()
            return result
        finally:
            self._running = None


async def _internal_error(request: Request, error: Exception) -> Response:
    # The class only: exception texts can quote values (hosts, users, event contents).
    log.error("http handler failed", extra={"path": request.url.path, "error": type(error).__name__})
    return PlainTextResponse("internal error", status_code=500)


def build_app(
    metrics: Endpoint, healthz: Endpoint, readyz: Endpoint, extra_routes: Sequence[BaseRoute] = ()
) -> Starlette:
    """The side port's application. GET routes answer HEAD too; other methods get 405 with an Allow header."""
    routes: list[BaseRoute] = [
        Route("/metrics", metrics, include_in_schema=False),
        Route("/healthz", healthz, include_in_schema=False),
        Route("/readyz", readyz, include_in_schema=False),
        *extra_routes,
    ]
    app = Starlette(routes=routes, exception_handlers={Exception: _internal_error})
    return app


def json_response(status: int, payload: object) -> JSONResponse:
    return JSONResponse(payload, status_code=status, headers={"Cache-Control": "no-store"})


class _ServerWithoutSignals(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # serve owns SIGTERM/SIGINT and stops this server itself


class SidePort:
    """uvicorn serving `app` on host:port as a task of the running loop."""

    def __init__(self, app: Starlette, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.requested_port = port
        self._socket: socket.socket | None = None
        self._server: _ServerWithoutSignals | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (the requested one, or the one the system chose for port 0)."""
        assert self._socket is not None, "not started"
        port: int = self._socket.getsockname()[1]
        return port

    async def start(self) -> None:
        """Bind (raising OSError when the port is taken) and start serving; returns once connections are accepted."""
        family, kind, proto, _, address = socket.getaddrinfo(
            self.host, self.requested_port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
        except OSError:
            sock.close()
            raise
        self._socket = sock
        config = uvicorn.Config(
            self.app,
            log_config=None,  # our JSON logging stays in charge
            access_log=False,  # probes every few seconds would drown the engine's lines
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=2,
            timeout_keep_alive=5,
        )
        self._server = _ServerWithoutSignals(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[sock]))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise OSError("the HTTP server stopped during start")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, timeout=5)
        self._server, self._task, self._socket = None, None, None
