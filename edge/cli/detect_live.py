"""``edge-detect``'s live outputs: their flags, start-up checks and sinks (``--view``, ``--foxglove``;
``docs/live.md``). Kept apart from ``detect.py`` so each stays small."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from stopsign.edge.cli.detect_config import ConfigError, DetectConfig
from stopsign.edge.sinks.base import Sink
from stopsign.edge.sinks.live import missing_libraries, parse_listen_address, track_provider
from stopsign.edge.sinks.view import ViewConfig, ViewSink, view_config_from_flags


def add_live_arguments(parser: argparse.ArgumentParser) -> None:
    live = parser.add_argument_group("live view (docs/live.md)")
    live.add_argument(
        "--view",
        metavar="[HOST:]PORT",
        help="serve a live page (annotated frames, events, health) on HOST:PORT; HOST defaults to "
        "127.0.0.1, any other address needs --view-token-file",
    )
    live.add_argument("--view-fps", type=float, help="frames a second sent to the page at most (default 10)")
    live.add_argument(
        "--view-width",
        type=int,
        help="frames are scaled to this width for the page and for Foxglove (default 640; 0: full size, "
        "~2.7x the CPU)",
    )
    live.add_argument(
        "--view-token-file", help="file holding the token a request must carry (?token= or Bearer)"
    )
    live.add_argument(
        "--foxglove",
        metavar="[HOST:]PORT",
        help="publish image, boxes, events and health over the Foxglove WebSocket protocol (loopback only)",
    )
    live.add_argument("--foxglove-fps", type=float, help="images a second published at most (default 10)")


def check_live(config: DetectConfig) -> None:
    """Errors before anything opens: a missing library, an unreadable or weak token file."""
    problem = missing_libraries(bool(config.view), bool(config.foxglove))
    if problem is not None:
        raise ConfigError(problem)
    if config.view:
        view_config(config)


def view_config(config: DetectConfig) -> ViewConfig:
    """The live page's settings; the token file is read here (errors name it)."""
    try:
        return view_config_from_flags(
            str(config.view), config.view_fps, config.view_token_file, config.view_width
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def make_live_sinks(config: DetectConfig, class_names: Sequence[str], tracker: Any) -> list[Sink]:
    """The live outputs ``config`` asks for; ``tracker`` (or None) gives them its tracks to draw."""
    sinks: list[Sink] = []
    tracks = track_provider(tracker)
    if config.view:
        sinks.append(ViewSink(view_config(config), class_names, tracks))
    if config.foxglove:
        from stopsign.edge.sinks.foxglove import FoxgloveConfig, FoxgloveSink

        host, port = parse_listen_address(config.foxglove, "--foxglove")
        sinks.append(
            FoxgloveSink(
                FoxgloveConfig(host, port, config.foxglove_fps, max_width=config.view_width),
                class_names,
                tracks,
            )
        )
    return sinks
