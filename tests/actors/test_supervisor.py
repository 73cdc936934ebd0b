"""Supervision (DESIGN.md §5): restarts with backoff, intensity, escalation, structure. All on MockClock."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
import trio
import trio.testing

from roomcast.actors.actor import Actor, ActorContext, ActorState, Restart
from roomcast.actors.backoff import Backoff
from roomcast.actors.supervisor import Supervisor, SupervisorGaveUp
from roomcast.logs import JsonFormatter

from .lifecycle import Lifecycle


@pytest.fixture
def lifecycle(caplog: pytest.LogCaptureFixture) -> Lifecycle:
    return Lifecycle(caplog)


class Flaky:
    """A behaviour that crashes its first `failures` runs, then runs until cancelled."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.runs: list[float] = []
        self.running = trio.Event()

    async def __call__(self, ctx: ActorContext) -> None:
        self.runs.append(trio.current_time())
        if len(self.runs) <= self.failures:
            await trio.sleep(1)
            raise RuntimeError(f"boom {len(self.runs)}")
        self.running.set()
        await trio.sleep_forever()


def no_jitter(base: float = 1.0, cap: float = 60.0) -> Backoff:
    return Backoff(base=base, cap=cap, jitter=0.0)


async def test_a_crashed_child_restarts_after_an_exponential_backoff(
        autojump_clock: trio.testing.MockClock, lifecycle: Lifecycle) -> None:
    root = Supervisor("root", intensity=10, period=100, backoff=no_jitter(base=1.0))
    flaky = Flaky(failures=3)
    async with trio.open_nursery() as nursery:
        await nursery.start(root.serve)
        root.add(Actor("flaky", flaky))
        await flaky.running.wait()
        # Each run lasts 1s before crashing; the delays are 1, 2, 4 seconds.
        assert [round(b - a, 6) for a, b in zip(flaky.runs, flaky.runs[1:], strict=False)] == [2.0, 3.0, 5.0]
        crashes = lifecycle.lines("actor.crashed", path="root/flaky")
        assert [c["restart_in_s"] for c in crashes] == [1.0, 2.0, 4.0]
        assert crashes[0]["error_type"] == "RuntimeError" and crashes[0]["error"] == "boom 1"
        assert [c["restarts"] for c in crashes] == [1, 2, 3]
        # The line carries the crash's traceback: an operator sees where the bug is.
        crash_line = json.loads(JsonFormatter().format(
            next(r for r in lifecycle.caplog.records if r.getMessage() == "actor.crashed")))
        assert crash_line["error"] == "boom 1" and "in __call__" in crash_line["traceback"]
        assert [c["uptime_s"] for c in crashes] == [1.0, 1.0, 1.0]
        assert lifecycle.events("root/flaky") == [
            "actor.started", "actor.crashed", "actor.restarting",
            "actor.started", "actor.crashed", "actor.restarting",
            "actor.started", "actor.crashed", "actor.restarting",
            "actor.started",
        ]
        actor = root.child("flaky")
        assert actor is not None and actor.state is ActorState.RUNNING and actor.restarts == 3
        assert actor.last_error is not None and actor.last_error.message == "boom 3"
        nursery.cancel_scope.cancel()
    assert lifecycle.lines("actor.stopped", path="root/flaky", reason="shutdown")


def test_jitter_keeps_the_delay_within_its_band() -> None:
    backoff = Backoff(base=0.5, cap=4.0, jitter=0.5, rng=random.Random(7))
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)]:
        delays = {backoff.delay(attempt) for _ in range(50)}
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # actually jittered


async def test_more_restarts_than_the_intensity_gives_up_and_escalates(
        autojump_clock: trio.testing.MockClock, lifecycle: Lifecycle) -> None:
    root = Supervisor("root", intensity=1, period=1000, backoff=no_jitter(base=0.5))
    rooms = Supervisor("rooms", intensity=2, period=60, backoff=no_jitter(base=0.5))
    root.add(rooms)
    always = Flaky(failures=10**6)
    rooms.add(Actor("bad", always))
    sibling_runs: list[float] = []

    async def steady(ctx: ActorContext) -> None:
        sibling_runs.append(trio.current_time())
        await trio.sleep_forever()

    rooms.add(Actor("good", steady))
    with pytest.raises(BaseExceptionGroup) as raised:
        async with trio.open_nursery() as nursery:
            await nursery.start(root.serve)
    assert raised.group_contains(SupervisorGaveUp)

    gave_up = lifecycle.lines("actor.gave_up")
    # "rooms" gives up on its 3rd restart; root restarts it once, then gives up itself.
    assert [g["path"] for g in gave_up] == ["root/rooms", "root/rooms", "root"]
    assert gave_up[0]["child"] == "root/rooms/bad" and gave_up[0]["restarts"] == 3
    assert gave_up[0]["intensity"] == 2 and gave_up[0]["error_type"] == "RuntimeError"
    escalated = lifecycle.lines("actor.crashed", path="root/rooms")
    assert escalated[0]["error_type"] == "SupervisorGaveUp"
    # The giving-up supervisor took its other child down with it, and its restart brought it back.
    assert len(sibling_runs) == 2
    assert lifecycle.lines("actor.stopped", path="root/rooms/good", reason="shutdown")
    assert root.actor.state is ActorState.FAILED


async def test_a_crashing_child_never_takes_its_siblings_down(autojump_clock: trio.testing.MockClock) -> None:
    root = Supervisor("root", intensity=100, period=10, backoff=no_jitter(base=0.1))
    ticks: list[float] = []

    async def ticker(ctx: ActorContext) -> None:
        while True:
            ticks.append(trio.current_time())
            await trio.sleep(1)

    flaky = Flaky(failures=5)
    async with trio.open_nursery() as nursery:
        await nursery.start(root.serve)
        root.add(Actor("ticker", ticker))
        root.add(Actor("flaky", flaky))
        await trio.sleep(19.5)  # between ticks: at a whole second, which wakes first is unordered
        nursery.cancel_scope.cancel()
    assert len(flaky.runs) == 6
    assert ticks == [float(i) for i in range(20)]


@pytest.mark.parametrize(
    ("policy", "crash", "runs"),
    [
        (Restart.PERMANENT, False, 3),
        (Restart.PERMANENT, True, 3),
        (Restart.TRANSIENT, False, 1),
        (Restart.TRANSIENT, True, 3),
        (Restart.TEMPORARY, True, 1),
    ],
)
async def test_restart_policies(autojump_clock: trio.testing.MockClock, lifecycle: Lifecycle,
                                policy: Restart, crash: bool, runs: int) -> None:
    root = Supervisor("root", intensity=10, period=1000, backoff=no_jitter(base=1))
    count = 0

    async def ends(ctx: ActorContext) -> str | None:
        nonlocal count
        count += 1
        await trio.sleep(1)
        if crash:
            raise ValueError("crash")
        return "done"

    async with trio.open_nursery() as nursery:
        await nursery.start(root.serve)
        actor = root.add(Actor("child", ends, restart=policy))
        # Runs last 1s; a crash waits 1s then 2s before the restarts, a normal return restarts at once.
        await trio.sleep(5.5 if crash else 2.5)
        assert count == runs
        if runs == 1:
            assert actor.terminated.is_set() and actor not in root.children
            reason = "crashed" if crash else "done"
            assert lifecycle.lines("actor.stopped", path="root/child", reason=reason)
        nursery.cancel_scope.cancel()


async def test_stopping_a_supervisor_stops_its_children_and_stop_ends_an_actor_for_good(
        autojump_clock: trio.testing.MockClock, lifecycle: Lifecycle) -> None:
    root = Supervisor("root")
    inner = Supervisor("inner")
    root.add(inner)
    leaf = Flaky(failures=0)
    other = Flaky(failures=0)
    async with trio.open_nursery() as nursery:
        await nursery.start(root.serve)
        leaf_actor = inner.add(Actor("leaf", leaf))
        other_actor = inner.add(Actor("other", other))
        await leaf.running.wait()
        await other.running.wait()
        other_actor.stop("told to")
        await other_actor.terminated.wait()
        assert lifecycle.lines("actor.stopped", path="root/inner/other", reason="told to")
        with pytest.raises(trio.BrokenResourceError):
            other_actor.tell("hello")

        inner.actor.stop("maintenance")
        await inner.actor.terminated.wait()
        assert leaf_actor.state is ActorState.STOPPED
        assert lifecycle.lines("actor.stopped", path="root/inner/leaf", reason="shutdown")
        assert lifecycle.lines("actor.stopped", path="root/inner", reason="maintenance")
        assert root.running
        nursery.cancel_scope.cancel()


async def test_the_mailbox_is_bounded_and_survives_a_restart(autojump_clock: trio.testing.MockClock) -> None:
    root = Supervisor("root", backoff=no_jitter(base=1))
    seen: list[Any] = []

    async def consumer(ctx: ActorContext) -> None:
        async for message in ctx.mailbox:
            if message == "crash" and "crash" not in seen:
                seen.append(message)
                raise RuntimeError("crash")
            seen.append(message)

    actor = Actor("consumer", consumer, mailbox_size=3)
    for message in ["a", "crash", "b"]:
        actor.tell(message)
    with pytest.raises(trio.WouldBlock):
        actor.tell("overflow")
    async with trio.open_nursery() as nursery:
        await nursery.start(root.serve)
        root.add(actor)
        await trio.sleep(5)
        assert seen == ["a", "crash", "b"]
        nursery.cancel_scope.cancel()


async def test_on_terminated_is_called_once_when_an_actor_ends_for_good_not_on_a_restart(
        autojump_clock: trio.testing.MockClock) -> None:
    root = Supervisor("root", intensity=10, period=100, backoff=no_jitter(base=1.0))
    flaky = Flaky(failures=2)
    ended: list[bool] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(root.serve)
        actor = root.add(Actor("flaky", flaky, on_terminated=lambda: ended.append(actor.terminated.is_set())))
        await flaky.running.wait()
        assert actor.restarts == 2 and ended == []  # two crashes, two restarts: not the end
        actor.stop("told to")
        await actor.terminated.wait()
        assert ended == [True]  # called once, with `terminated` already set
        nursery.cancel_scope.cancel()
    assert ended == [True]


async def test_a_sender_waiting_on_an_actor_that_ends_for_good_is_given_up_not_held(
        autojump_clock: trio.testing.MockClock) -> None:
    root = Supervisor("root", intensity=10, period=100, backoff=no_jitter(base=1.0))

    async def never_answers(ctx: ActorContext) -> None:
        await trio.sleep_forever()

    async def ask(actor: Actor, outcome: list[str], send: bool = True) -> None:
        done = trio.Event()

        def give_up() -> None:
            outcome.append("given up")
            done.set()

        if send:
            await actor.send("a request")
        await actor.wait_unless_terminated(done, give_up)
        assert actor.terminated.is_set()

    async with trio.open_nursery() as nursery:
        await nursery.start(root.serve)
        actor = root.add(Actor("silent", never_answers))
        outcome: list[str] = []
        async with trio.open_nursery() as senders:
            senders.start_soon(ask, actor, outcome)
            await trio.sleep(5)
            assert outcome == []  # held while the actor may still answer
            actor.stop("told to")
        assert outcome == ["given up"]
        assert not actor._waiting  # nothing of the wait is kept
        later: list[str] = []
        await ask(actor, later, send=False)  # ended already: given up at once
        assert later == ["given up"]
        nursery.cancel_scope.cancel()
