"""Errors of the calibration stage; every message names the file, node or value at fault."""

from __future__ import annotations


class CalibrationError(ValueError):
    """Calibration input that cannot be used (too few or unreadable images, wrong model, bad option)."""


class StaleCacheError(CalibrationError):
    """A TensorRT calibration cache that belongs to another model, algorithm or input size."""
