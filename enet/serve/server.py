"""Running the app under uvicorn: loopback unless a token guards it, one access-log line per
request on stderr, and a stop (Ctrl-C, SIGTERM) that finishes the requests in flight."""

from __future__ import annotations

import ipaddress
import logging
import signal
import socket
import sys
from types import FrameType

import uvicorn

from ..deploy.segmenter import Segmenter
from ..errors import UsageError
from .app import Limits, create_app, log

__all__ = ["check_token", "serve"]


def check_token(host: str, token: str | None) -> None:
    """Off the loopback address, anyone who reaches the port could use the model: a token
    is required there."""
    if token is not None and not token.strip():
        raise UsageError("--token: empty (give a secret string, or set ENET_TOKEN)")
    if token is None and not _loopback(host):
        raise UsageError(
            f"--host {host}: other machines can reach it, so a token is required (--token "
            "SECRET or ENET_TOKEN=SECRET; clients send Authorization: Bearer SECRET)"
        )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    segmenter: Segmenter,
    *,
    name: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    limits: Limits | None = None,
    token: str | None = None,
) -> None:
    """Serve until stopped; the requests in flight are answered first (up to the request
    timeout). ``port`` 0: any free port (the line printed names it)."""
    check_token(host, token)
    listening = _listen(host, port)
    port = listening.getsockname()[1]
    limits = limits or Limits()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    app = create_app(segmenter, name=name, limits=limits, token=token)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=max(1, round(limits.timeout_s)),
        ws_max_size=limits.max_body_bytes + 1024,
        # connections beyond these are answered 503 by uvicorn before the app sees them
        limit_concurrency=max(64, 4 * limits.queue),
    )
    server = _Server(config)
    where = f"http://{'localhost' if host == '127.0.0.1' else host}:{port}"
    print(
        f"enet serve: {name} on {segmenter.backend}, {segmenter.predictor.precision}, at "
        f"{where} (the page: {where}/, the API: {where}/v1; Ctrl-C stops)",
        file=sys.stderr,
        flush=True,
    )
    try:
        server.run(sockets=[listening])
    finally:
        log.removeHandler(handler)
        listening.close()


def _listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound here so that a port in use is one line, not uvicorn's exit."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        family, kind, protocol, _, address = found
        # the protocol named (TCP), not 0: asyncio turns Nagle's algorithm off only on sockets
        # that say TCP, and with it on, every answer waited ~40 ms for the client's delayed ACK
        listening = socket.socket(family, kind, protocol)
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listening.bind(address)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UsageError(
            f"{host}:{port}: cannot listen there ({reason}; try another --port)"
        ) from None
    return listening


class _Server(uvicorn.Server):
    """uvicorn's server, but a stop by signal ends the command normally (exit 0) instead of
    raising the signal again once the requests in flight are answered."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True  # a second Ctrl-C: stop without waiting
        self.should_exit = True
