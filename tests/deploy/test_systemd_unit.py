"""deploy/{jetson,x86}/edge-detect.service: verified by systemd itself, checked against their
settings, and their edge-detect command lines parsed by edge-detect itself.

`systemd-analyze verify` checks that the commands of ExecStart= and ExecStartPre= exist and are
executable. The units name /opt/stopsign-edge/venv/bin/..., which exists only after an install,
so the tests stage a root folder holding the unit, systemd's own units (for the targets it orders
against) and stub executables at those paths. The stubs exist only to satisfy the verifier's path
check; nothing runs them.
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from stopsign.edge.cli.detect import resolve_config

REPO_ROOT = Path(__file__).resolve().parents[2]
SYSTEMD_HINT = "apt-get install systemd (Debian's package has systemd-analyze)"
UNIT = "edge-detect.service"
STUBS = ("edge-export", "edge-detect")


def unit_entries(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for each assignment of a unit file, in order; keys may repeat."""
    entries = []
    section = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        if stripped.startswith("["):
            section = stripped.strip("[]")
            continue
        key, _, value = stripped.partition("=")
        entries.append((section, key, value))
    return entries


def stage_root(root: Path, unit_text: str, stubs: tuple[str, ...] = STUBS) -> Path:
    """A root for `systemd-analyze verify --root`: the unit, systemd's units, stub commands."""
    (root / "etc/systemd/system").mkdir(parents=True)
    (root / "etc/systemd/system" / UNIT).write_text(unit_text)
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    bin_dir = root / "opt/stopsign-edge/venv/bin"
    bin_dir.mkdir(parents=True)
    for name in stubs:
        stub = bin_dir / name
        # Only for the verifier's "command exists and is executable" check.
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    return root


def verify(systemd_analyze: str, root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [systemd_analyze, "verify", "--man=no", f"--root={root}", UNIT],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture()
def systemd_analyze(require_tool: Callable[[str, str], str]) -> str:
    path = require_tool("systemd-analyze", SYSTEMD_HINT)
    if not Path("/usr/lib/systemd/system").is_dir():
        pytest.skip("no /usr/lib/systemd/system to stage the unit's targets from")
    return path


@pytest.fixture(params=["jetson", "x86"])
def unit_dir(request: pytest.FixtureRequest) -> Path:
    """Each deployment folder holding an edge-detect.service and its edge-detect.env.example."""
    return REPO_ROOT / "deploy" / request.param


def env_example(folder: Path) -> dict[str, str]:
    text = (folder / "edge-detect.env.example").read_text()
    return dict(re.findall(r"^([A-Z_][A-Z0-9_]*)=(.*)$", text, flags=re.MULTILINE))


def test_unit_verifies_clean(systemd_analyze: str, unit_dir: Path, tmp_path: Path) -> None:
    root = stage_root(tmp_path / "root", (unit_dir / UNIT).read_text())
    result = verify(systemd_analyze, root)
    assert result.returncode == 0, result.stderr
    # Unknown keys and bad values are warnings with exit code 0: none are allowed either.
    assert result.stderr == "" and result.stdout == ""


@pytest.mark.parametrize(
    ("change", "stubs", "message"),
    [
        (lambda text: text, ("edge-detect",), "/opt/stopsign-edge/venv/bin/edge-export is not executable"),
        (lambda text: text.replace("WatchdogSec=5", "WatchdogSecs=5"), STUBS, "Unknown key"),
        (lambda text: text.replace("Type=notify", "Type=notifyy"), STUBS, "Failed to parse service type"),
    ],
    ids=["missing-command", "misspelt-key", "bad-value"],
)
def test_verifier_catches_broken_units(
    systemd_analyze: str,
    jetson_dir: Path,
    tmp_path: Path,
    change: Callable[[str], str],
    stubs: tuple[str, ...],
    message: str,
) -> None:
    root = stage_root(tmp_path / "root", change((jetson_dir / UNIT).read_text()), stubs)
    result = verify(systemd_analyze, root)
    assert message in result.stderr


def test_hardening_exposure_is_low(systemd_analyze: str, unit_dir: Path, tmp_path: Path) -> None:
    """systemd's own exposure score (0 = locked down, 10 = fully exposed) stays at 4.5 or below."""
    root = stage_root(tmp_path / "root", (unit_dir / UNIT).read_text())
    result = subprocess.run(
        [
            systemd_analyze,
            "security",
            "--offline=yes",
            f"--root={root}",
            "--threshold=45",
            "--no-pager",
            UNIT,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("Type", "notify"),
        ("WatchdogSec", "5"),
        ("Restart", "on-failure"),
        ("RestartSec", "2"),
        ("User", "stopsign"),
        ("SupplementaryGroups", "video"),
        ("EnvironmentFile", "/etc/stopsign-edge/edge-detect.env"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ReadWritePaths", "/var/lib/stopsign-edge"),
        ("StandardOutput", "journal"),
        ("DevicePolicy", "closed"),
        ("WantedBy", "multi-user.target"),
    ],
)
def test_unit_settings(unit_dir: Path, key: str, expected: str) -> None:
    values = [value for _, k, value in unit_entries((unit_dir / UNIT).read_text()) if k == key]
    assert values == [expected]


def test_unit_commands_and_devices(jetson_dir: Path) -> None:
    entries = unit_entries((jetson_dir / UNIT).read_text())
    settings = {key: value for _, key, value in entries}
    assert settings["ExecStartPre"].startswith("/opt/stopsign-edge/venv/bin/edge-export engine ${ONNX}")
    assert "--if-stale" in settings["ExecStartPre"] and "--out ${ENGINE}" in settings["ExecStartPre"]
    assert settings["ExecStart"].startswith(
        "/opt/stopsign-edge/venv/bin/edge-detect --camera ${CAMERA} --model ${ENGINE} --budget-ms ${BUDGET_MS}"
    )
    devices = [value for _, key, value in entries if key == "DeviceAllow"]
    assert "char-video4linux rw" in devices
    assert any(value.startswith("char-nvhost") for value in devices)


def test_every_variable_of_the_unit_is_in_the_env_example(unit_dir: Path) -> None:
    unit_text = (unit_dir / UNIT).read_text()
    commands = " ".join(value for _, key, value in unit_entries(unit_text) if key.startswith("Exec"))
    used = set(re.findall(r"\$\{?([A-Z_][A-Z0-9_]*)\}?", commands))
    assert used == set(env_example(unit_dir))


def expanded_exec_start(folder: Path) -> list[str]:
    """The unit's ExecStart with the example settings, as systemd expands it: ``${X}`` is one
    argument, ``$X`` splits on spaces (none when empty)."""
    settings = env_example(folder)
    command = next(value for _, key, value in unit_entries((folder / UNIT).read_text()) if key == "ExecStart")
    argv: list[str] = []
    for word in command.split():
        braced = re.fullmatch(r"\$\{([A-Z_][A-Z0-9_]*)\}", word)
        bare = re.fullmatch(r"\$([A-Z_][A-Z0-9_]*)", word)
        if braced:
            argv.append(settings[braced.group(1)])
        elif bare:
            argv += shlex.split(settings[bare.group(1)])
        else:
            argv.append(word)
    return argv


def test_edge_detect_takes_the_units_command_line_with_the_example_settings(unit_dir: Path) -> None:
    """Every flag of the ExecStart line exists and every example value passes edge-detect's
    validation."""
    settings = env_example(unit_dir)
    argv = expanded_exec_start(unit_dir)
    assert argv[0] == "/opt/stopsign-edge/venv/bin/edge-detect"
    config, _ = resolve_config(argv[1:])
    assert config.camera == settings["CAMERA"] and config.tiles == settings["TILES"]
    assert config.budget_ms == float(settings["BUDGET_MS"])


def test_the_x86_unit_runs_edge_detect_on_the_cpu_with_a_persistent_openvino_cache() -> None:
    folder = REPO_ROOT / "deploy" / "x86"
    entries = unit_entries((folder / UNIT).read_text())
    settings = {key: value for _, key, value in entries}
    assert "ExecStartPre" not in settings  # nothing to build on the device: the IR ships
    config, _ = resolve_config(expanded_exec_start(folder)[1:])
    assert (config.backend, config.threads) == ("auto", 0)
    assert config.cache_dir == "/var/lib/stopsign-edge/openvino"  # a state directory of the unit
    assert "stopsign-edge/openvino" in settings["StateDirectory"].split()
    assert [value for _, key, value in entries if key == "DeviceAllow"] == ["char-video4linux rw"]
