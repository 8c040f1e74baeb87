"""Large freed buffers stay in the server process: the next image's buffers reuse their
pages instead of faulting in fresh ones."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# An image's buffers, 200 times: the answer, its text, the decoded image and the response
# are alive together, then freed. Prints the page faults the loop took.
_LOOP = """
import resource, sys
from imagegate.allocator import keep_large_buffers
changed = keep_large_buffers() if sys.argv[1] == "tuned" else False
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(200):
    buffers = [bytearray(size) for size in (2_300_000, 2_300_000, 1_700_000, 2_300_000)]
    for buffer in buffers:
        buffer[::4096] = b"x" * len(buffer[::4096])
    del buffers, buffer
print(changed, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str, env: dict[str, str] | None = None) -> tuple[str, int]:
    out = subprocess.run(
        [sys.executable, "-c", _LOOP, mode],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    ).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_large_buffers_are_reused_not_faulted_in_again() -> None:
    changed, tuned = _faults("tuned")
    _, default = _faults("default")
    assert changed == "True"
    # glibc's defaults give back and fault in again a part of every image's pages.
    assert default > 20_000
    assert tuned < default / 10


def test_an_operators_malloc_setting_is_kept() -> None:
    changed, _ = _faults("tuned", {"MALLOC_TRIM_THRESHOLD_": "131072"})
    assert changed == "False"
