"""The running detector: the loop that takes a frame from source to sinks, and what keeps it honest.

- ``loop``: :class:`DetectionLoop`, one straight line per frame (source, checks, infer, track, sinks);
- ``inference``: the inference path chosen once at start-up from the backend's capabilities,
  and the supervisor that re-initialises a failing backend;
- ``events``: the JSON-lines event channel shared by tracker events and status lines;
- ``health``: per-frame stage timings and the 1 Hz health window;
- ``sdnotify``: systemd READY / WATCHDOG notifications.

The runtime sees backends only through their interface (``stopsign.edge.backends.base``).
"""
