"""A session's bounded outbound queue: pushes, runs of events, overflow and batching."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from roomcast.http.ws import frames
from roomcast.http.ws.outbound import OutboundQueue, Overflowed, Stopped


def test_a_run_of_events_is_queued_whole_or_overflows_the_queue() -> None:
    closing = []
    queue = OutboundQueue(4, on_closing=lambda: closing.append(True))
    assert queue.push(b"1") and queue.extend([b"2", b"3"])
    assert queue.take(1 << 20) == [b"1", b"2", b"3"]
    assert queue.extend([b"4", b"5", b"6", b"7"]) and len(queue) == 4
    assert not queue.extend([b"8"])  # one past the limit: the session must close with 1013
    assert queue.overflowed and closing == [True]
    assert not queue.push(b"9")
    with pytest.raises(Overflowed):
        queue.take(1 << 20)


def test_take_hands_over_what_fits_in_one_frame_and_stop_ends_the_writer() -> None:
    queue = OutboundQueue(10)
    queue.extend([b"a" * 10, b"b" * 10, b"c" * 10])
    assert queue.take(22) == [b"a" * 10, b"b" * 10]  # each event counts its newline
    assert queue.take(1) == [b"c" * 10]  # at least one, however big
    queue.stop()
    with pytest.raises(Stopped):
        queue.take(1 << 20)


def test_a_shared_batch_frame_is_built_once_per_list() -> None:
    run = [b'{"seq":1}', b'{"seq":2}']
    frame = frames.shared_batch_frame(run)
    assert frame == frames.batch_frame(run) == frames.text_frame(b'{"seq":1}\n{"seq":2}')
    assert frames.shared_batch_frame(run) is frame
    assert frames.shared_batch_frame(list(run)) is not frame  # another list: built anew


def test_a_catch_up_gets_half_the_queue_counting_what_the_writer_still_writes() -> None:
    queue = OutboundQueue(8)
    assert queue.free_slots() == 4
    queue.extend([b"1", b"2", b"3"])
    assert queue.free_slots() == 1
    assert queue.take(1 << 20) == [b"1", b"2", b"3"]
    assert queue.free_slots() == 1  # taken, but still being written
    queue.push(b"4")  # live events may still use the rest of the queue
    assert queue.free_slots() == 0
    assert queue.take(1 << 20) == [b"4"]  # the first frame is written: its events are gone
    assert queue.free_slots() == 3
    assert queue.take(1 << 20) == []
    assert queue.free_slots() == 4
    queue.stop()
    assert queue.free_slots() == 0


async def test_room_changed_wakes_at_the_writers_next_take_and_at_the_close() -> None:
    queue = OutboundQueue(8)
    queue.extend([b"1", b"2"])
    woken = []

    async def wait() -> None:
        await queue.room_changed()
        woken.append(queue.free_slots())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        assert woken == []
        queue.take(1 << 20)
        await trio.testing.wait_all_tasks_blocked()
        assert woken == [2]
        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        queue.mark_overflowed()
    assert woken == [2, 0]
