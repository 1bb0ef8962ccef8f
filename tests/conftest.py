"""Project-wide pytest set-up: the recorded-drive regression plugin (``--drives``, ``replay_check``)."""

pytest_plugins = ["stopsign.edge.replay.pytest_plugin"]
