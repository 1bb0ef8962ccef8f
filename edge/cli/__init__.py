"""The command-line layer, the only one that knows every other: it reads config, builds a source,
a backend, the tracker and the sinks, and hands them to the runtime.

- ``detect`` / ``detect_config``: ``edge-detect`` and its grouped, validated config;
- ``bench`` / ``benchmark``: ``edge-bench`` (model-only and end-to-end latency);
- ``replay``: ``edge-replay``; ``record``: ``edge-record``; ``demo``: ``./run.sh demo``.
"""
