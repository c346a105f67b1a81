"""The HTTP API, the live socket and the web page as one ASGI app (Starlette). Every request
that carries an image holds one of ``Limits.queue`` places from its first byte to its answer's
last, so memory stays bounded however many clients come: the others are told 503 at once."""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from importlib.resources import files
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, HTTPConnection, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..deploy.segmenter import Segmentation, Segmenter
from ..errors import DataError, ImageTooLargeError, NotAnImageError, UsageError
from ..images import rgb_from_bytes
from .answers import Answer, Question, answer, figures, question_of
from .jobs import JobQueue

__all__ = ["Limits", "create_app", "log"]

log = logging.getLogger("enet.serve")

#: media types taken as an image's bytes in a request body (PIL tells what they hold)
RAW_TYPES = ("image/", "application/octet-stream")


@dataclass(frozen=True)
class Limits:
    """``max_body_bytes``: the largest upload (413 above); ``max_pixels``: the largest image,
    refused before it is decoded (413); ``queue``: requests with an image in the server at
    once, being read, waiting, segmented or answered (503 with Retry-After above);
    ``timeout_s``: the most one request may take (408 while its upload arrives, 504 after)."""

    max_body_bytes: int = 20 * 2**20
    max_pixels: int = 16_000_000
    queue: int = 16
    timeout_s: float = 30.0


class Refusal(Exception):
    """A request answered with an error status and one line of why."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def _status_of(exc: Exception) -> int:
    if isinstance(exc, NotAnImageError):
        return 415
    if isinstance(exc, ImageTooLargeError):
        return 413
    return 400


class _Service:
    """What the routes share: the model, its queue, the limits and the count of places."""

    def __init__(
        self, segmenter: Segmenter, *, name: str, limits: Limits, token: str | None
    ) -> None:
        self.segmenter = segmenter
        self.name = name
        self.limits = limits
        self.token = token
        self.jobs: JobQueue | None = None
        self.active = 0  # requests holding a place (the event loop's thread alone counts)
        self.page = (files("enet.serve") / "page" / "index.html").read_text(encoding="utf-8")

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self.jobs = JobQueue(self.segmenter)
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(self.jobs.close)

    # --- admission, authentication -----------------------------------------------------------

    def authorized(self, conn: HTTPConnection) -> bool:
        """With a token set, /v1 wants ``Authorization: Bearer <token>`` (or ``?token=``,
        which browsers' WebSockets need)."""
        if self.token is None:
            return True
        given = conn.headers.get("authorization", "")
        given = given[7:] if given.lower().startswith("bearer ") else ""
        given = given or conn.query_params.get("token", "")
        return hmac.compare_digest(given.encode(), self.token.encode())

    def require_token(self, request: Request) -> None:
        if not self.authorized(request):
            raise Refusal(401, "a token is needed", {"WWW-Authenticate": "Bearer"})

    @contextlib.contextmanager
    def place(self) -> Iterator[None]:
        """One of the queue's places for the request, or a 503 refusal at once."""
        if self.active >= self.limits.queue:
            raise Refusal(
                503,
                f"busy: {self.limits.queue} requests are in progress (retry in a second)",
                {"Retry-After": "1"},
            )
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1

    async def segment_bytes(self, data: bytes, question: Question) -> tuple[Segmentation, Answer]:
        """Decode, segment and encode one image (decoding and encoding on worker threads)."""
        assert self.jobs is not None
        rgb = await anyio.to_thread.run_sync(
            lambda: rgb_from_bytes(data, source="the image", max_pixels=self.limits.max_pixels)
        )
        result = await self.jobs.segment(rgb)
        backend = self.segmenter.backend
        reply = await anyio.to_thread.run_sync(lambda: answer(result, question, backend=backend))
        return result, reply

    # --- routes -------------------------------------------------------------------------------

    async def index(self, request: Request) -> Response:
        return HTMLResponse(self.page)

    async def health(self, request: Request) -> Response:
        return JSONResponse(
            {"status": "ok", "requests": self.active, "capacity": self.limits.queue}
        )

    async def model(self, request: Request) -> Response:
        self.require_token(request)
        seg = self.segmenter
        classes = seg.classes
        return JSONResponse(
            {
                "model": self.name,
                "backend": seg.backend,
                "precision": seg.predictor.precision,
                "input_size": list(seg.input_size) if seg.input_size else None,
                "parallel": seg.parallel,
                "batch_size": seg.batch_size,
                "classes": [
                    {"id": i, "name": n, "color": list(map(int, classes.palette[i]))}
                    for i, n in enumerate(classes.names)
                ],
                "limits": asdict(self.limits),
            }
        )

    async def segment(self, request: Request) -> Response:
        self.require_token(request)
        question = question_of(dict(request.query_params))
        with self.place():
            deadline = time.monotonic() + self.limits.timeout_s
            try:
                with anyio.fail_after(self.limits.timeout_s):
                    data = await self._upload(request)
            except TimeoutError:
                message = f"the upload took longer than {self.limits.timeout_s:g} s"
                raise Refusal(408, message) from None
            try:
                with anyio.fail_after(max(deadline - time.monotonic(), 0.001)):
                    result, reply = await self.segment_bytes(data, question)
            except TimeoutError:
                raise Refusal(
                    504, f"not answered within {self.limits.timeout_s:g} s (the server is busy)"
                ) from None
        timing = f"model;dur={result.latency_ms:.1f}"
        return Response(reply.body, media_type=reply.media_type, headers={"Server-Timing": timing})

    async def _upload(self, request: Request) -> bytes:
        """The image's bytes: the body, or the file of a multipart form."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        multipart = kind == "multipart/form-data"
        if kind and not multipart and not kind.startswith(RAW_TYPES):
            raise Refusal(
                415,
                f"content type {kind}: send the image's bytes as the body (e.g. Content-Type: "
                "image/jpeg) or as the file of a multipart form",
            )
        body = await self._body(request)
        if not multipart:
            return body

        async def replay() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(request.scope, replay).form(max_files=1, max_fields=16)
        except Exception as exc:
            raise Refusal(400, f"unreadable multipart form ({exc})") from None
        uploads = [v for v in form.values() if hasattr(v, "read")]
        if not uploads:
            raise Refusal(400, "the form has no file (send the image as a file field, 'image')")
        data = await uploads[0].read()
        await form.close()
        return data

    async def _body(self, request: Request) -> bytes:
        limit = self.limits.max_body_bytes
        too_large = Refusal(
            413,
            f"the upload is larger than {limit / 2**20:.3g} MiB, the limit (send a smaller image)",
        )
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_large
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
        if not size:
            raise Refusal(400, "the request has no image (send the image's bytes as the body)")
        return b"".join(chunks)

    async def live(self, ws: WebSocket) -> None:
        """Frames in as binary messages (JPEG or PNG); for each, a text message of figures
        (size, latency, shares) and, unless ``answer=json``, the answer's bytes. Errors are a
        text message ``{"error": ..., "status": ...}`` and the socket stays open."""
        if not self.authorized(ws):
            await ws.close(code=1008, reason="a token is needed")
            return
        try:
            question = question_of({"answer": "color", **dict(ws.query_params)})
        except UsageError as exc:
            await ws.close(code=1008, reason=str(exc)[:120])
            return
        await ws.accept()
        ws.state.frames = 0
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            data = message.get("bytes")
            if data is None:
                reason = "send each frame as a binary message (JPEG or PNG bytes)"
                await ws.send_text(json.dumps({"error": reason, "status": 415}))
                continue
            try:
                with self.place(), anyio.fail_after(self.limits.timeout_s):
                    if len(data) > self.limits.max_body_bytes:
                        limit_mb = self.limits.max_body_bytes / 2**20
                        raise ImageTooLargeError(f"the frame is larger than {limit_mb:.3g} MiB")
                    result, reply = await self.segment_bytes(data, question)
            except (Refusal, DataError, TimeoutError) as exc:
                await ws.send_text(json.dumps(_live_error(exc, self.limits.timeout_s)))
                continue
            try:
                figures_ = figures(result, backend=self.segmenter.backend)
                await ws.send_text(json.dumps({**figures_, "media_type": reply.media_type}))
                if question.kind != "json":
                    await ws.send_bytes(reply.body)
            except WebSocketDisconnect:
                return
            ws.state.frames += 1


def _live_error(exc: Exception, timeout_s: float) -> dict[str, Any]:
    if isinstance(exc, Refusal):
        return {"error": str(exc), "status": exc.status, "retry_after_s": 1}
    if isinstance(exc, TimeoutError):
        return {"error": f"not answered within {timeout_s:g} s", "status": 504}
    return {"error": str(exc), "status": _status_of(exc)}


class AccessLog:
    """One line per request, after its answer: client, method, path, status, bytes, time (a
    WebSocket's line comes when it closes, with the frames it carried)."""

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status, size = 0, 0

        async def sending(message: dict) -> None:
            nonlocal status, size
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
            elif kind == "http.response.body":
                size += len(message.get("body", b""))
            elif kind == "websocket.send":
                size += len(message.get("bytes") or b"") + len(message.get("text") or "")
            elif kind == "websocket.accept":
                status = 101
            elif kind == "websocket.close" and not status:
                status = 403
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            client = scope.get("client") or ("-", 0)
            method = scope.get("method", "WS")
            extra = ""
            if scope["type"] == "websocket":
                extra = f" {scope.get('state', {}).get('frames', 0)} frames"
            ms = (time.perf_counter() - start) * 1e3
            path = scope["path"]
            log.info(f"{client[0]} {method} {path} {status or 499} {size} B{extra} {ms:.1f} ms")


def create_app(
    segmenter: Segmenter,
    *,
    name: str = "model",
    limits: Limits | None = None,
    token: str | None = None,
) -> AccessLog:
    """The ASGI app serving ``segmenter``: ``/`` (the page), ``/healthz``, ``/v1/model``,
    ``POST /v1/segment`` and the ``/v1/live`` WebSocket. ``token``: required by /v1."""
    service = _Service(segmenter, name=name, limits=limits or Limits(), token=token)

    async def refused(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Refusal)
        return _error(exc.status, str(exc), exc.headers)

    async def bad_input(request: Request, exc: Exception) -> Response:
        return _error(_status_of(exc), " ".join(str(exc).split()))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return _error(exc.status_code, exc.detail, exc.headers)

    async def gone(request: Request, exc: Exception) -> Response:
        return Response(status_code=499)  # nobody reads it: the client left mid-upload

    app = Starlette(
        routes=[
            Route("/", service.index),
            Route("/healthz", service.health),
            Route("/v1/model", service.model),
            Route("/v1/segment", service.segment, methods=["POST"]),
            WebSocketRoute("/v1/live", service.live),
        ],
        lifespan=service.lifespan,
        exception_handlers={
            Refusal: refused,
            UsageError: bad_input,
            DataError: bad_input,
            HTTPException: http_error,
            ClientDisconnect: gone,
        },
    )
    app.state.service = service
    return AccessLog(app)
