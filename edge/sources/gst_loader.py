"""Loading GStreamer through PyGObject, once, with a clear error when it is missing.

Kept apart from the source so that tools that only ask "is GStreamer here, which elements does
it have" (the recorder, the factory, the tests) read a short module.
"""

from __future__ import annotations

import ctypes
import logging
import sys
from collections.abc import Sequence
from typing import Any

from stopsign.edge.sources.launch import KNOWN_ELEMENTS

log = logging.getLogger(__name__)


class GstUnavailableError(ImportError):
    """PyGObject or the GStreamer typelibs are missing; the message says what to install."""


def load_gst() -> Any:
    """Import and initialise GStreamer (``Gst`` module), or raise :class:`GstUnavailableError`."""
    _keep_gcc_unwinder_first()  # before the Gst typelib loads libgstreamer (and libunwind)
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstApp", "1.0")
        from gi.repository import Gst, GstApp  # noqa: F401 - GstApp makes appsink methods callable
    except (ImportError, ValueError) as exc:
        raise GstUnavailableError(
            f"GStreamer through PyGObject is not available ({exc}); install it with "
            "`pip install 'PyGObject<3.51'` (needs apt packages libgirepository1.0-dev, "
            "gir1.2-gstreamer-1.0, gir1.2-gst-plugins-base-1.0)"
        ) from None
    if not Gst.is_initialized():
        Gst.init(None)
    return Gst


def _keep_gcc_unwinder_first() -> None:
    """Put libgcc_s's ``_Unwind_*`` in the global symbol scope before GStreamer loads libunwind.

    libgstreamer-1.0 (Debian/Ubuntu builds) links libunwind, whose ``_Unwind_*`` symbols then
    interpose on libgcc_s's for C++ libraries loaded later: every C++ exception thrown by
    onnxruntime or torch (pybind11) aborts the process instead of reaching Python. Promoting
    libgcc_s to RTLD_GLOBAL first keeps its unwinder in front.
    """
    if sys.platform != "linux":
        return
    try:
        ctypes.CDLL("libgcc_s.so.1", mode=ctypes.RTLD_GLOBAL)
    except OSError as exc:  # musl or an unusual toolchain: nothing to protect
        log.debug("libgcc_s.so.1 not loadable (%s); C++ exceptions rely on the default unwinder", exc)


def gst_available() -> bool:
    try:
        load_gst()
    except GstUnavailableError:
        return False
    return True


def registered_elements(names: Sequence[str] = KNOWN_ELEMENTS) -> frozenset[str]:
    """Which of ``names`` are registered GStreamer element factories."""
    gst = load_gst()
    return frozenset(n for n in names if gst.ElementFactory.find(n) is not None)


def format_bus_error(message: Any) -> str:
    """An ERROR message from a pipeline's bus as one line: the error, then GStreamer's detail."""
    error, debug = message.parse_error()
    detail = (debug or "").strip().replace("\n", " ")
    return f"{error.message} ({detail})" if detail else str(error.message)


def is_fatal_bus_error(bus_error: str) -> bool:
    """A missing or forbidden device fails the same way for every caps choice: no retry helps."""
    markers = ("Cannot identify device", "No such file", "Permission denied", "Could not open")
    return any(m in bus_error for m in markers)


def prefer_decoders(names: Sequence[str]) -> None:
    """Rank these decoders (most preferred first) above every software decoder, so that
    ``decodebin`` picks them; a process-wide registry setting, the same for every pipeline."""
    gst = load_gst()
    registry = gst.Registry.get()
    for offset, name in enumerate(names):
        feature = registry.lookup_feature(name)
        if feature is not None:
            feature.set_rank(int(gst.Rank.PRIMARY) + 100 - offset)


def video_decoder_in(pipeline: Any) -> str | None:
    """The factory name of the video decoder a running pipeline uses (inside ``decodebin`` too),
    or None when it decodes nothing (a raw camera, a test pattern)."""
    iterator = pipeline.iterate_recurse()
    while True:
        result, element = iterator.next()
        if result != load_gst().IteratorResult.OK:
            return None
        factory = element.get_factory()
        klass = factory.get_metadata("klass") if factory is not None else ""
        if "Decoder" in klass and ("Video" in klass or "Image" in klass):  # jpegdec is an image decoder
            return str(factory.get_name())
