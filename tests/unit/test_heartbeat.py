"""The node's heartbeat pings each session once per interval, a slice of them at a time."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from roomcast.http.ws.heartbeat import Heartbeat


class Beat:
    def __init__(self) -> None:
        self.times: list[float] = []
        self.heartbeat_slice = 0

    def heartbeat(self, now: float, interval: float) -> None:
        self.times.append(now)


@pytest.fixture
def mock_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_every_session_is_pinged_once_per_interval_never_all_at_once(mock_clock: trio.testing.MockClock) -> None:
    heartbeat = Heartbeat(interval=25.0, slices=5)
    sessions = [Beat() for _ in range(20)]
    for session in sessions:
        heartbeat.add(session)
    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(heartbeat.run)
        await trio.sleep(75.5)  # three intervals
        nursery.cancel_scope.cancel()
    for session in sessions:
        assert len(session.times) == 3
        assert [b - a for a, b in zip(session.times, session.times[1:], strict=False)] == [25.0, 25.0]
    moments: dict[float, int] = {}
    for session in sessions:
        for moment in session.times:
            moments[round(moment - start, 6)] = moments.get(round(moment - start, 6), 0) + 1
    assert max(moments.values()) == 4  # 20 sessions over 5 slices
    assert sorted(moments)[:5] == [5.0, 10.0, 15.0, 20.0, 25.0]


async def test_slices_stay_even_as_sessions_come_and_go(mock_clock: trio.testing.MockClock) -> None:
    heartbeat = Heartbeat(interval=10.0, slices=4)
    sessions = [Beat() for _ in range(8)]
    for session in sessions:
        heartbeat.add(session)
    for session in sessions[:4]:
        heartbeat.discard(session)
    heartbeat.discard(sessions[0])  # twice is harmless
    newcomers = [Beat() for _ in range(4)]
    for session in newcomers:
        heartbeat.add(session)
    assert len(heartbeat) == 8
    async with trio.open_nursery() as nursery:
        nursery.start_soon(heartbeat.run)
        await trio.sleep(10.5)
        nursery.cancel_scope.cancel()
    assert all(not session.times for session in sessions[:4])
    per_moment: dict[float, int] = {}
    for session in sessions[4:] + newcomers:
        assert len(session.times) == 1
        per_moment[session.times[0]] = per_moment.get(session.times[0], 0) + 1
    assert sorted(per_moment.values()) == [2, 2, 2, 2]
