from __future__ import annotations

from collections.abc import Iterator
from unittest import mock

import pytest

from imagegate import ids


@pytest.fixture(autouse=True)
def _keep_the_last_id() -> Iterator[None]:
    """These tests set the clock; the ids made after them start from the real one."""
    last = ids._last
    yield
    ids._last = last


def test_ids_made_in_one_millisecond_sort_in_the_order_they_were_made() -> None:
    with mock.patch.object(ids.time, "time", return_value=1_700_000_000.0):
        made = [ids.new_id("job") for _ in range(2000)]
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    assert all(len(one) == len("job_") + 26 for one in made)


def test_an_id_made_after_the_clock_stepped_back_still_sorts_after() -> None:
    with mock.patch.object(ids.time, "time", return_value=1_700_000_001.0):
        first = ids.new_id("job")
    with mock.patch.object(ids.time, "time", return_value=1_700_000_000.0):
        second = ids.new_id("job")
    assert second > first
