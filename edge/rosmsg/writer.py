"""Opening a rosbag2 MCAP for writing: a single ``.mcap`` file, or a rosbag2 folder."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rosbags.rosbag2 import StoragePlugin, Writer

# rosbag2 metadata version 9 (Jazzy's); the MCAP file itself is what Foxglove and rosbag2 read.
METADATA_VERSION = 9


@contextmanager
def bag_writer(path: str | Path) -> Iterator[Any]:
    """A ``rosbags`` rosbag2 writer with MCAP storage for ``path``, which must not exist.

    rosbags always writes a folder (``NAME/NAME.mcap`` + ``metadata.yaml``). For a path ending in
    ``.mcap`` the folder is ``PATH.partial`` and, once the writer closed cleanly, its MCAP file
    (which carries the same metadata inside) becomes ``PATH``: one file, as Foxglove and
    ``ros2 bag play PATH`` take it. A run that fails leaves the ``.partial`` folder to inspect.
    """
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path}: exists already; a bag is never overwritten")
    single_file = path.suffix.lower() == ".mcap"
    folder = path.with_name(path.name + ".partial") if single_file else path
    if folder.exists():
        raise FileExistsError(f"{folder}: exists already (left by an earlier, failed run?); remove it")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with Writer(folder, version=METADATA_VERSION, storage_plugin=StoragePlugin.MCAP) as writer:
        yield writer
    if single_file:
        (folder / f"{folder.name}.mcap").replace(path)
        shutil.rmtree(folder)
