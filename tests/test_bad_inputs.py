"""Every bad input in bench/bad_inputs.py (the table in docs/reliability.md), run as a user would.

Each case runs the real command in its own process and must end with its expected exit code and
a message that names what is wrong (the file, the value). Full-disk and read-only cases mount a
small tmpfs, so they run only as root (CI runs as root here) and skip with the reason elsewhere.
"""

from __future__ import annotations

import pytest

from tests.bench_scripts import load_bench_script
from tests.edge.helpers import requires_gstreamer

catalogue = load_bench_script("bad_inputs")


@requires_gstreamer
@pytest.mark.parametrize("case", catalogue.CASES, ids=[c.name for c in catalogue.CASES])
def test_bad_input_is_named_and_loses_nothing_else(case) -> None:
    if case.needs_mount and not catalogue.can_mount():
        pytest.skip("needs root to mount a small or read-only tmpfs")
    row = catalogue.run_case(case)
    assert row["code"] == case.code, row
    for text in case.says:
        assert text in row["seen"], (text, row)
    assert "Traceback" not in row["seen"], row
