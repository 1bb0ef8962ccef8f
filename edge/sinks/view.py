"""The live page (``--view [HOST:]PORT``): the annotated frame, the events and the health line.

Served by aiohttp (HTTP and WebSocket in one maintained library, no hand-written HTTP parsing) on
an asyncio loop in a daemon thread of this sink. Two routes and nothing else: ``GET /`` (the page,
``view_page.html``) and ``GET /ws`` (a WebSocket: JPEG frames as binary messages, events and
heartbeats as JSON text). No static folder (so no listing, no path traversal), no CORS header, no
route that takes input: the page cannot change the detector.

Cost to the detection loop: with nobody watching, ``on_frame`` returns at once; while someone
watches it drops a reference to the frame result into a one-slot buffer (:class:`LatestFrame`).
The server's thread takes the newest frame at most ``fps`` times a second, draws and encodes it
once for every client, and gives each client only its newest frame: a slow or stalled client gets
fewer frames, and the loop never waits for any of them.

Safe by default: it binds 127.0.0.1. Any other address needs a token (``--view-token-file``), and
then every request without it (``?token=`` or ``Authorization: Bearer``) is answered 401. A
WebSocket opened from another site's page (an ``Origin`` that is not this server) is refused 403.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import re
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import cv2
import numpy as np

from stopsign.edge.sinks.base import FrameResult, Sink
from stopsign.edge.sinks.draw import annotate
from stopsign.edge.sinks.live import (
    DEFAULT_HOST,
    LatestFrame,
    Snapshot,
    TrackProvider,
    is_loopback,
    parse_listen_address,
    scaled_to_width,
    snapshot_tracks,
    tiles_from_event,
    url_host,
    width_problem,
)

log = logging.getLogger("stopsign.edge.sinks.view")

MIN_TOKEN_CHARS = 16


class ViewConfigError(ValueError):
    """The view cannot start as configured (an open address without a token, a bad token file)."""


@dataclass(frozen=True)
class ViewConfig:
    """``fps``: frames pushed per second at most; ``token``: required when ``host`` is not loopback;
    ``max_clients``: more get 503; ``event_backlog``: events a new client is shown on arrival."""

    host: str = DEFAULT_HOST
    port: int = 8080
    fps: float = 10.0
    token: str | None = None
    max_clients: int = 16
    jpeg_quality: int = 80
    # Frames wider are drawn at full size, then scaled to this width before the JPEG (0: never).
    # A 720p frame costs 5.4 ms of CPU to encode, 2.0 ms halved: CPU the detector shares.
    max_width: int = 640
    event_backlog: int = 100
    client_queue: int = 200  # text messages waiting for one client; the oldest go first

    def __post_init__(self) -> None:
        if not 0 < self.fps <= 60:
            raise ViewConfigError(f"view fps must be in (0, 60], got {self.fps}")
        problem = width_problem(self.max_width, "view")
        if problem is not None:
            raise ViewConfigError(problem)
        if self.token is not None and len(self.token) < MIN_TOKEN_CHARS:
            raise ViewConfigError(
                f"view token has {len(self.token)} characters; use at least {MIN_TOKEN_CHARS} "
                "(e.g. `openssl rand -hex 16`)"
            )
        if self.token is None and not is_loopback(self.host):
            raise ViewConfigError(
                f"--view binds {self.host}, which other machines can reach: give --view-token-file "
                "(or keep the default 127.0.0.1 and use an SSH tunnel)"
            )


def view_config_from_flags(
    address: str, fps: float, token_file: str | None, max_width: int = ViewConfig.max_width
) -> ViewConfig:
    """``--view``, ``--view-fps``, ``--view-token-file``, ``--view-width`` -> :class:`ViewConfig`; the
    token file is read here. Raises ValueError (a ``ViewConfigError`` or ``ListenAddressError``)."""
    host, port = parse_listen_address(address, "--view")
    token = read_token_file(token_file) if token_file else None
    return ViewConfig(host, port, fps, token, max_width=max_width)


def read_token_file(path: str) -> str:
    """The token in ``path`` (surrounding whitespace stripped); errors name the file."""
    try:
        with open(path, encoding="utf-8") as handle:
            token = handle.read().strip()
    except OSError as exc:
        raise ViewConfigError(f"{path}: cannot read the view token ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ViewConfigError(f"{path}: the view token file is not UTF-8 text") from None
    if not token or any(c.isspace() for c in token):
        raise ViewConfigError(f"{path}: the view token must be one word (no spaces or line breaks)")
    return token


def load_page() -> tuple[bytes, str]:
    """The page's bytes and its Content-Security-Policy (its one inline script and style by hash)."""
    page = resources.files("stopsign.edge.sinks").joinpath("view_page.html").read_text("utf-8")

    def digest(text: str) -> str:
        return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"

    scripts = [digest(s) for s in re.findall(r"<script>(.*?)</script>", page, re.S)]
    styles = [digest(s) for s in re.findall(r"<style>(.*?)</style>", page, re.S)]
    policy = (
        f"default-src 'none'; script-src {' '.join(scripts)}; style-src {' '.join(styles)}; "
        "img-src blob:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return page.encode("utf-8"), policy


@dataclass(eq=False)  # kept in a set: hashed by identity
class _Client:
    ws: Any  # aiohttp.web.WebSocketResponse
    texts: deque[str]
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    frame: bytes | None = None  # the newest encoded frame not yet sent; replaced, never queued
    sending: bool = False  # inside a send: a stalled socket keeps it True, and it is sent no frame
    sent_frames: int = 0

    @property
    def ready(self) -> bool:
        """Would take a new frame now: nothing unsent and no send in progress."""
        return self.frame is None and not self.sending


class ViewSink(Sink):
    """See the module docstring. ``tracks``: the tracker's tracks (read on the loop's thread);
    ``announce``: where the URL is printed once the server listens (default: stderr)."""

    name = "view"

    def __init__(
        self,
        config: ViewConfig,
        class_names: Sequence[str],
        tracks: TrackProvider | None = None,
        announce: Callable[[str], None] | None = None,
    ) -> None:
        self.config, self._names, self._tracks = config, list(class_names), tracks
        self._announce = announce or (lambda text: print(text, file=sys.stderr, flush=True))
        self._slot = LatestFrame()
        self._tiles: tuple[tuple[int, int, int, int], ...] = ()
        self._page, self._policy = load_page()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._clients: set[_Client] = set()
        self._backlog: deque[str] = deque(maxlen=config.event_backlog)
        self._last_health: str | None = None
        self._canvas: np.ndarray | None = None
        self.port: int | None = None  # the port bound (``config.port`` 0: the system's choice)
        self.encoded_frames = 0

    # --- the loop's side (never waits) ---------------------------------------------------------

    def on_frame(self, result: FrameResult) -> None:
        if self._slot.wanted.is_set():
            self._slot.put(result, snapshot_tracks(self._tracks))

    def on_event(self, event: dict[str, Any]) -> None:
        tiles = tiles_from_event(event)
        if tiles is not None:
            self._tiles = tiles
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        text = json.dumps(event, separators=(",", ":"), default=str)
        with contextlib.suppress(RuntimeError):  # the server loop closed under us: nobody to tell
            loop.call_soon_threadsafe(self._publish, text, event.get("event") == "heartbeat")

    # --- life cycle --------------------------------------------------------------------------

    def open(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self.port = None
        started = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(
            target=self._serve, args=(started, failure), name="view-server", daemon=True
        )
        self._thread.start()
        if not started.wait(10.0):
            raise OSError(f"--view {self.config.host}:{self.config.port}: server did not start in 10 s")
        if failure or self.port is None:
            raise OSError(
                f"--view {self.config.host}:{self.config.port}: {failure[0] if failure else 'no port'}"
            )
        auth = " (token required)" if self.config.token else ""
        self._announce(f"edge-detect view: http://{url_host(self.config.host)}:{self.port}/{auth}")

    def close(self) -> None:
        loop, stopping, thread = self._loop, self._stopping, self._thread
        if loop is not None and stopping is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)
        if thread is not None:
            thread.join(timeout=5.0)
            if thread.is_alive():
                log.warning("view: server thread still running 5 s after close")
        self._thread = None
        self._slot.clear()

    def _serve(self, started: threading.Event, failure: list[BaseException]) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main(started, failure))
        except Exception as exc:  # reported by open(), or logged when it comes later
            failure.append(exc)
            log.error("view: server stopped: %s: %s", type(exc).__name__, exc)
        finally:
            self._loop = None
            loop.close()
            started.set()

    async def _main(self, started: threading.Event, failure: list[BaseException]) -> None:
        from aiohttp import web

        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_get("/", self._handle_page)
        app.router.add_get("/ws", self._handle_ws)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.config.host, self.config.port)
            await site.start()
        except OSError as exc:
            failure.append(exc)
            await runner.cleanup()
            started.set()
            return
        self.port = int(runner.addresses[0][1])
        started.set()
        pusher = asyncio.ensure_future(self._push_frames())
        await self._stopping.wait()
        pusher.cancel()
        for client in list(self._clients):
            await client.ws.close()
        await runner.cleanup()

    # --- HTTP --------------------------------------------------------------------------------

    def _authorised(self, request: Any) -> bool:
        token = self.config.token
        if token is None:
            return True
        given = request.query.get("token", "")
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            given = header[len("Bearer ") :]
        return hmac.compare_digest(given.encode(), token.encode())

    def _headers(self) -> dict[str, str]:
        return {
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",  # the token may be in the page's URL
            "X-Frame-Options": "DENY",
        }

    async def _handle_page(self, request: Any) -> Any:
        from aiohttp import web

        if not self._authorised(request):
            return web.Response(status=401, text="401: a token is required", headers=self._headers())
        headers = {**self._headers(), "Content-Security-Policy": self._policy}
        return web.Response(body=self._page, content_type="text/html", charset="utf-8", headers=headers)

    async def _handle_ws(self, request: Any) -> Any:
        from aiohttp import web

        if not self._authorised(request):
            return web.Response(status=401, text="401: a token is required", headers=self._headers())
        origin = request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != request.host:
            # Browsers let any page open a WebSocket anywhere; only this server's own page may.
            return web.Response(status=403, text="403: foreign origin", headers=self._headers())
        if len(self._clients) >= self.config.max_clients:
            return web.Response(status=503, text="503: too many viewers", headers=self._headers())
        ws = web.WebSocketResponse(heartbeat=10.0, compress=False, max_msg_size=4096)
        await ws.prepare(request)
        client = _Client(ws, deque(maxlen=self.config.client_queue))
        client.texts.extend(self._backlog)
        if self._last_health is not None:
            client.texts.append(self._last_health)
        client.wake.set()
        self._clients.add(client)
        self._slot.wanted.set()
        sender = asyncio.ensure_future(self._send_to(client))
        try:
            async for _message in ws:  # the page sends nothing; reading notices the close
                pass
        finally:
            self._clients.discard(client)
            if not self._clients:
                self._slot.wanted.clear()
                self._slot.clear()
            sender.cancel()
        return ws

    # --- the server's thread: encode once, give each client its newest ------------------------

    def _publish(self, text: str, heartbeat: bool) -> None:
        if heartbeat:
            self._last_health = text
        else:
            self._backlog.append(text)
        for client in self._clients:
            client.texts.append(text)
            client.wake.set()

    async def _push_frames(self) -> None:
        loop = asyncio.get_running_loop()
        period = 1.0 / self.config.fps
        taken, next_at = 0, loop.time()
        while True:
            next_at = max(next_at + period, loop.time())
            await asyncio.sleep(next_at - loop.time())
            if not any(client.ready for client in self._clients):
                continue  # nobody watching, or only stalled viewers: encoding would be wasted CPU
            snapshot = self._slot.take(taken)
            if snapshot is None:
                continue
            taken = snapshot.sequence
            try:
                jpeg = self._encode(snapshot)
            except Exception as exc:  # a frame that cannot be drawn must not end the server
                log.warning("view: frame %d not encoded: %s", snapshot.result.frame.index, exc)
                continue
            for client in self._clients:
                client.frame = jpeg
                client.wake.set()

    def _encode(self, snapshot: Snapshot) -> bytes:
        image = snapshot.result.frame.image
        if self._canvas is None or self._canvas.shape != image.shape:
            self._canvas = np.empty_like(image)
        np.copyto(self._canvas, image)
        annotate(self._canvas, snapshot.result, self._names, snapshot.tracks, self._tiles)
        shown, _ = scaled_to_width(self._canvas, self.config.max_width)
        ok, data = cv2.imencode(".jpg", shown, [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality])
        if not ok:
            raise ValueError(f"cv2.imencode failed on a {image.shape} frame")
        self.encoded_frames += 1
        return data.tobytes()

    async def _send_to(self, client: _Client) -> None:
        """One client's sender: waits on that client's socket only (a stalled one stalls here)."""
        from aiohttp import ClientConnectionResetError

        try:
            while not client.ws.closed:
                await client.wake.wait()
                client.wake.clear()
                client.sending = True
                while client.texts:
                    await client.ws.send_str(client.texts.popleft())
                frame, client.frame = client.frame, None
                if frame is not None:
                    await client.ws.send_bytes(frame)
                    client.sent_frames += 1
                client.sending = False
        except (ClientConnectionResetError, ConnectionError) as exc:
            log.info("view: client gone (%s)", exc)
            await client.ws.close()
