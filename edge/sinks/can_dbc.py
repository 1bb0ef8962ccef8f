"""The CAN messages of ``deploy/can/stopsign.dbc``: loading a DBC, checking it has what the sender
needs, and encoding frames with cantools, each with an alive counter and a CRC-8.

The CRC is CRC-8 SAE J1850 (polynomial 0x1D, initial value 0xFF, final XOR 0xFF, not reflected;
the CRC AUTOSAR's ``Crc_CalculateCRC8`` computes and E2E Profile 1 builds on), taken over every
payload byte except the one that holds ``Crc8`` itself. It is not a full E2E profile: no data ID
enters the CRC, so a receiver checks the frame ID on its own.

Frames are encoded twice by cantools, first with ``Crc8`` = 0 to get the bytes the CRC covers,
then with the CRC: no byte is packed by hand, so a user DBC that moves a signal still works.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cantools
from crccheck.crc import Crc8SaeJ1850

EVENT_MESSAGE = "StopSignEvent"
STATUS_MESSAGE = "DetectorStatus"
CRC_SIGNAL = "Crc8"
COUNTER_SIGNAL = "AliveCounter"
# "Signal not available": the raw value a DBC names SNA for a field the detector does not know.
SNA = "SNA"

# What the sender writes; a user DBC (--can-dbc) must have these names, wherever it puts them.
REQUIRED_SIGNALS: dict[str, tuple[str, ...]] = {
    EVENT_MESSAGE: (
        CRC_SIGNAL,
        COUNTER_SIGNAL,
        "EventKind",
        "TrackId",
        "Distance",
        "TimeToSign",
        "Confidence",
        "BoxCentreX",
        "BoxCentreY",
        "BoxHeight",
    ),
    STATUS_MESSAGE: (CRC_SIGNAL, COUNTER_SIGNAL, "State", "Fps", "LatencyP99", "TrackedSigns"),
}
STATES = ("starting", "ok", "stalled_source", "over_budget", "backend_error", "stopping")
# Value-table entries the sender encodes by name.
REQUIRED_CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    (EVENT_MESSAGE, "EventKind"): ("stop_sign_ahead", "stop_sign_lost"),
    (EVENT_MESSAGE, "Distance"): (SNA,),
    (EVENT_MESSAGE, "TimeToSign"): (SNA,),
    (EVENT_MESSAGE, "BoxCentreX"): (SNA,),
    (EVENT_MESSAGE, "BoxCentreY"): (SNA,),
    (EVENT_MESSAGE, "BoxHeight"): (SNA,),
    (STATUS_MESSAGE, "State"): STATES,
    (STATUS_MESSAGE, "LatencyP99"): (SNA,),
}
DEFAULT_DBC = Path(__file__).resolve().parents[1] / "assets" / "stopsign.dbc"


class DbcError(ValueError):
    """The DBC cannot be read, or lacks a message, signal or value the sender needs (all named)."""


def crc8_sae_j1850(data: bytes) -> int:
    """CRC-8 SAE J1850 of ``data`` (check value of b"123456789": 0x4B)."""
    return int(Crc8SaeJ1850.calc(data))


def crc_byte_index(message: Any) -> int:
    """Payload byte that holds ``Crc8`` (the DBC must give it a whole byte)."""
    signal = message.get_signal_by_name(CRC_SIGNAL)
    return int(signal.start) // 8


def crc_of_frame(message: Any, data: bytes) -> int:
    """The CRC a frame of ``message`` should carry: over every byte but the CRC's own."""
    index = crc_byte_index(message)
    return crc8_sae_j1850(bytes(data[:index]) + bytes(data[index + 1 :]))


def load_dbc(path: str | Path) -> Any:
    """The cantools database of ``path``, checked for everything the sender needs.

    Raises :class:`DbcError` naming the file and every missing message, signal or value.
    """
    path = Path(path)
    if not path.is_file():
        raise DbcError(f"{path}: no such DBC file")
    try:
        database = cantools.database.load_file(str(path), database_format="dbc", strict=True)
    except (cantools.database.UnsupportedDatabaseFormatError, ValueError, OSError) as exc:
        raise DbcError(f"{path}: not a valid DBC ({exc})") from None
    problems = missing_in(database)
    if problems:
        raise DbcError(f"{path} lacks what edge-detect sends: " + "; ".join(problems))
    return database


def missing_in(database: Any) -> list[str]:
    """What ``database`` lacks, one phrase per message (empty when it has everything)."""
    problems: list[str] = []
    for name, signals in REQUIRED_SIGNALS.items():
        try:
            message = database.get_message_by_name(name)
        except KeyError:
            problems.append(f"message {name} (signals {', '.join(signals)})")
            continue
        present = {signal.name for signal in message.signals}
        absent = [signal for signal in signals if signal not in present]
        if absent:
            problems.append(f"{name} has no signal {', '.join(absent)}")
            continue
        crc = message.get_signal_by_name(CRC_SIGNAL)
        if crc.length != 8 or crc.start % 8 or crc.byte_order != "little_endian":
            problems.append(
                f"{name}.{CRC_SIGNAL} must fill one byte (start a multiple of 8, length 8, Intel)"
            )
        for (owner, signal_name), names in REQUIRED_CHOICES.items():
            if owner != name:
                continue
            choices = message.get_signal_by_name(signal_name).choices or {}
            have = {str(text) for text in choices.values()}
            lacking = [text for text in names if text not in have]
            if lacking:
                problems.append(f"{name}.{signal_name} has no value {', '.join(lacking)} in its VAL_ table")
    return problems


@dataclass(frozen=True)
class EncodedFrame:
    """One CAN frame: ``data`` is the whole payload (``message.length`` bytes)."""

    message: str
    frame_id: int
    data: bytes
    extended: bool
    fd: bool


class FrameEncoder:
    """Encodes the two messages with their counters; one instance per sender (not thread-safe).

    Values outside a signal's [min, max] are saturated to the bound (a 300 m sign reads 127 m);
    ``None`` is sent as the signal's SNA value.
    """

    def __init__(self, database: Any) -> None:
        self._messages = {name: database.get_message_by_name(name) for name in REQUIRED_SIGNALS}
        self._counters = dict.fromkeys(REQUIRED_SIGNALS, 0)

    def message(self, name: str) -> Any:
        return self._messages[name]

    def encode(self, name: str, values: Mapping[str, float | str | None]) -> EncodedFrame:
        """``values``: physical values (or value-table names) of every signal but counter and CRC."""
        message = self._messages[name]
        counter_signal = message.get_signal_by_name(COUNTER_SIGNAL)
        fields: dict[str, float | str] = {COUNTER_SIGNAL: self._counters[name], CRC_SIGNAL: 0}
        for signal_name, value in values.items():
            fields[signal_name] = self._physical(message.get_signal_by_name(signal_name), value)
        data = message.encode(fields, strict=True)
        fields[CRC_SIGNAL] = crc_of_frame(message, data)
        data = message.encode(fields, strict=True)
        self._counters[name] = (self._counters[name] + 1) % (1 << counter_signal.length)
        return EncodedFrame(name, message.frame_id, bytes(data), message.is_extended_frame, message.is_fd)

    @staticmethod
    def _physical(signal: Any, value: float | str | None) -> float | str:
        if value is None or (isinstance(value, float) and not math.isfinite(value)):
            return SNA
        if isinstance(value, str):
            return value
        low = signal.minimum if signal.minimum is not None else -math.inf
        high = signal.maximum if signal.maximum is not None else math.inf
        return min(max(float(value), low), high)
