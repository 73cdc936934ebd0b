"""The GIL switch interval a server process sets (gil.py): by database unless configured."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from roomcast.config import SettingsError, load_settings
from roomcast.gil import NETWORK_DATABASE_INTERVAL_MS, apply_switch_interval, switch_interval_ms


@pytest.fixture(autouse=True)
def restore_interval() -> Iterator[None]:
    """Whatever a test sets is undone for the rest of the process."""
    before = sys.getswitchinterval()
    yield
    sys.setswitchinterval(before)


def test_postgresql_gets_a_short_interval_and_sqlite_keeps_cpythons() -> None:
    assert switch_interval_ms(None, is_sqlite=False) == NETWORK_DATABASE_INTERVAL_MS
    assert switch_interval_ms(None, is_sqlite=True) is None
    assert switch_interval_ms(2.0, is_sqlite=True) == 2.0  # configured: whatever the database


def test_apply_sets_the_process_interval_and_reports_it() -> None:
    cpython = sys.getswitchinterval() * 1000
    assert apply_switch_interval(None, is_sqlite=True) == pytest.approx(cpython)
    assert apply_switch_interval(None, is_sqlite=False) == pytest.approx(NETWORK_DATABASE_INTERVAL_MS)
    assert sys.getswitchinterval() == pytest.approx(NETWORK_DATABASE_INTERVAL_MS / 1000)
    assert apply_switch_interval(3.0, is_sqlite=False) == pytest.approx(3.0)


@pytest.mark.parametrize("value", ["0", "-1", "1001"])
def test_an_out_of_range_setting_is_refused(value: str) -> None:
    with pytest.raises(SettingsError, match="gil_switch_interval_ms"):
        load_settings({}, environ={"ROOMCAST_GIL_SWITCH_INTERVAL_MS": value})
