"""What a benchmark ran on and what it cost: the machine, library versions, a process's memory."""

from __future__ import annotations

import os
import platform
import resource
import shutil
import subprocess
from pathlib import Path
from typing import Any


def rss_mb() -> float:
    """Current resident set size (Linux /proc), else the peak from getrusage."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass  # not Linux: fall back to the peak below
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def process_stats(pid: int | str = "self") -> dict[str, float]:
    """RSS (MB), threads and open file descriptors of a process, from Linux /proc (soaks, leak checks)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "Threads"):
            fields[key] = int(value.split()[0])
    return {
        "rss_mb": fields["VmRSS"] / 1024,
        "threads": fields["Threads"],
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
    }


def machine_info() -> dict[str, Any]:
    """CPU, OS and, on a Jetson, the power mode and clocks (where the tools answer)."""
    info: dict[str, Any] = {
        "hostname": platform.node(), "platform": platform.platform(), "machine": platform.machine(),
        "processor": platform.processor(), "cpu_count": os.cpu_count(),
    }  # fmt: skip
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass  # not Linux
    for key, command in (("nvpmodel", ["nvpmodel", "-q"]), ("jetson_clocks", ["jetson_clocks", "--show"])):
        if shutil.which(command[0]):
            try:
                info[key] = subprocess.run(command, capture_output=True, text=True, timeout=10).stdout.strip()
            except (OSError, subprocess.SubprocessError) as exc:
                info[key] = f"unreadable: {exc}"
    return info


def library_versions() -> dict[str, str | None]:
    from importlib import metadata

    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in (
        "numpy",
        "opencv-python-headless",
        "onnxruntime",
        "onnxruntime-gpu",
        "openvino",
        "torch",
        "tensorrt",
        "PyGObject",
    ):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
