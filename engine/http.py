"""A very small HTTP/1.1 server for serve's side port: GET (and HEAD) of a few fixed paths, one request per
connection. It serves probes and metrics scrapes on an internal port, not the public: no keep-alive, no
request bodies, bounded request size and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

log = logging.getLogger("docloop.http")

REQUEST_TIMEOUT_S = 5.0
MAX_HEADER_LINES = 100
LINE_LIMIT = 8192


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any) -> Response:
        return cls(status, json.dumps(payload, sort_keys=True).encode() + b"\n", "application/json")

    @classmethod
    def text(cls, status: int, message: str) -> Response:
        return cls(status, message.encode() + b"\n")


Handler = Callable[[], Awaitable[Response]]


class BadRequest(Exception):
    pass


class HttpServer:
    def __init__(self, host: str, port: int, routes: Mapping[str, Handler]) -> None:
        self.host = host
        self.requested_port = port
        self.routes = dict(routes)
        self._server: asyncio.Server | None = None

    @property
    def port(self) -> int:
        """The bound port (the requested one, or the one the system chose for port 0)."""
        assert self._server is not None and self._server.sockets, "not started"
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.requested_port, limit=LINE_LIMIT)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), timeout=2)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        method = "GET"
        try:
            try:
                method, path = await asyncio.wait_for(self._read_request(reader), REQUEST_TIMEOUT_S)
                response = await self._route(method, path)
            except (BadRequest, ValueError, asyncio.LimitOverrunError, asyncio.IncompleteReadError):
                response = Response.text(HTTPStatus.BAD_REQUEST, "bad request")
            except TimeoutError:
                response = Response.text(HTTPStatus.REQUEST_TIMEOUT, "request timeout")
            await self._write(writer, response, head=method == "HEAD")
        except (ConnectionError, OSError):
            pass  # the client went away
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _read_request(self, reader: asyncio.StreamReader) -> tuple[str, str]:
        request_line = (await reader.readuntil(b"\n")).decode("latin-1").strip()
        parts = request_line.split()
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            raise BadRequest
        for _ in range(MAX_HEADER_LINES):  # headers are read and ignored; there is no body to read
            if (await reader.readuntil(b"\n")).strip() == b"":
                return parts[0].upper(), parts[1]
        raise BadRequest

    async def _route(self, method: str, target: str) -> Response:
        path = target.split("?", 1)[0]
        handler = self.routes.get(path)
        if handler is None:
            return Response.text(HTTPStatus.NOT_FOUND, "not found")
        if method not in ("GET", "HEAD"):
            return Response(HTTPStatus.METHOD_NOT_ALLOWED, b"method not allowed\n", headers={"Allow": "GET, HEAD"})
        try:
            return await handler()
        except Exception as error:
            log.error("http handler failed", extra={"path": path, "error": type(error).__name__})
            return Response.text(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")

    async def _write(self, writer: asyncio.StreamWriter, response: Response, head: bool) -> None:
        reason = HTTPStatus(response.status).phrase
        lines = [
            f"HTTP/1.1 {response.status} {reason}",
            f"Content-Type: {response.content_type}",
            f"Content-Length: {len(response.body)}",
            "Cache-Control: no-store",
            "Connection: close",
            *(f"{name}: {value}" for name, value in response.headers.items()),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if not head:
            writer.write(response.body)
        await writer.drain()
