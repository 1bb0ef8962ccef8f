"""``--backend-option KEY=VALUE``: parsed, validated, reaching the runtime, and refused where unknown."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import pytest

from stopsign.edge.backends.base import BackendError, BackendOptions, parse_property
from stopsign.edge.cli.detect import resolve_config
from stopsign.edge.cli.detect_config import ConfigError, build_config

SHIPPED = Path(__file__).resolve().parents[3] / "edge" / "assets"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("ENABLE_CPU_PINNING=NO", ("ENABLE_CPU_PINNING", "NO")),
        (" session.intra_op.allow_spinning = 1 ", ("session.intra_op.allow_spinning", "1")),
        ("KEY=a=b", ("KEY", "a=b")),  # only the first '=' splits
    ],
)
def test_a_property_is_key_equals_value(text: str, expected: tuple[str, str]) -> None:
    assert parse_property(text) == expected


@pytest.mark.parametrize("text", ["NO_EQUALS", "=1", "KEY=", " = "])
def test_a_malformed_property_names_the_text(text: str) -> None:
    with pytest.raises(ValueError, match="is not KEY=VALUE"):
        parse_property(text)


def test_options_take_text_pairs_only() -> None:
    with pytest.raises(ValueError, match="text pairs"):
        BackendOptions(properties=(("NUM_STREAMS", 1),))  # type: ignore[arg-type]


def test_flags_override_the_config_file_key_by_key(tmp_path: Path) -> None:
    config_file = tmp_path / "detect.yaml"
    config_file.write_text(
        "source: test://\nbackend_options:\n  NUM_STREAMS: 1\n  ENABLE_CPU_PINNING: 'YES'\n"
    )
    config, _ = resolve_config(["--config", str(config_file), "--backend-option", "ENABLE_CPU_PINNING=NO"])
    assert config.backend_options == {"NUM_STREAMS": "1", "ENABLE_CPU_PINNING": "NO"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["NUM_STREAMS=1"], r"should be dict\[str, str\]"),
        ({"ENABLE_CPU_PINNING": True}, "must be a name and a text or number value"),
        ({"NUM_STREAMS": [1]}, "must be a name and a text or number value"),
    ],
)
def test_bad_config_values_are_named(value: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_config({"source": "test://", "backend_options": value}, {})


def test_a_malformed_flag_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="--backend-option: backend option 'PINNING' is not KEY=VALUE"):
        resolve_config(["--source", "test://", "--backend-option", "PINNING"])


def test_onnxruntime_passes_session_entries_and_refuses_other_keys() -> None:
    from stopsign.edge.backends.onnxruntime import OnnxRuntimeBackend

    backend = OnnxRuntimeBackend()
    backend.load(
        SHIPPED / "stopsign.onnx",
        None,
        BackendOptions(properties=(("session.intra_op.allow_spinning", "1"),)),
    )
    assert backend.describe()["session_config"]["session.intra_op.allow_spinning"] == "1"
    backend.close()
    with pytest.raises(BackendError, match="'intra_op_num_threads' is not a session config entry"):
        OnnxRuntimeBackend().load(
            SHIPPED / "stopsign.onnx", None, BackendOptions(properties=(("intra_op_num_threads", "1"),))
        )


@pytest.mark.parametrize("name", ["torch", "tensorrt"])
def test_backends_without_settings_refuse_them(name: str, tmp_path: Path) -> None:
    from stopsign.edge.backends.base import BACKENDS

    module, _, cls = BACKENDS[name].partition(":")
    backend = getattr(importlib.import_module(module), cls)()
    with pytest.raises(BackendError, match=f"{name} backend takes no --backend-option \\(given: X\\)"):
        backend.load(tmp_path / "model", None, BackendOptions(properties=(("X", "1"),)))
