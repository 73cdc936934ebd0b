"""OTP-style one_for_one supervision on Trio nurseries.

A supervisor runs each child in its own task inside one nursery. When a child
crashes only that child is restarted (after an exponential backoff with jitter);
its siblings keep running. More than `intensity` restarts within `period` seconds
(counted over all children, as in OTP) and the supervisor gives up: it logs
`actor.gave_up`, its nursery cancels every child, and it raises SupervisorGaveUp
to its own parent, which treats that as a crash of the supervisor. Cancelling a
supervisor cancels its children, so no child outlives it.

Children survive a restart of their supervisor: the next run starts every child
that was not meant to end (Restart.TEMPORARY children and those that ended for
good are dropped), and each child keeps its mailbox and its own state.
"""

from __future__ import annotations

import contextvars
import logging
from collections import deque
from typing import Any

import trio

from ..logs import log_event
from .actor import Actor, ActorContext, ActorState, Restart, describe_error
from .backoff import Backoff

log = logging.getLogger("roomcast.actors")


class SupervisorGaveUp(Exception):
    """A supervisor saw more restarts than its intensity allows within its period."""

    def __init__(self, path: str, child: str, restarts: int, period: float) -> None:
        super().__init__(f"{path} gave up after {restarts} restarts in {period:g}s (last: {child})")
        self.path = path
        self.child = child


def _rounded(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


class Supervisor:
    """Supervises actors one_for_one. Its own `actor` is what its parent supervises."""

    def __init__(self, name: str, *, intensity: int = 5, period: float = 10.0, backoff: Backoff | None = None,
                 restart: Restart = Restart.PERMANENT) -> None:
        self.intensity = intensity
        self.period = period
        self.backoff = backoff or Backoff()
        # Keyed by identity: an actor that is ending and its successor may briefly share a name.
        self.children: dict[Actor, None] = {}
        self.actor = Actor(name, self.run, restart=restart, mailbox_size=1, describe_extra=self._describe_children)
        self._restart_times: deque[float] = deque()
        self.restarts_total = 0  # restarts of its children since start, ended ones included (for metrics)
        self._nursery: trio.Nursery | None = None
        # The supervisor's own context: a child added on demand (from a request that needed it) starts
        # in it, not in the requester's, whose log fields and acting user are not the child's.
        self._context: contextvars.Context | None = None

    @property
    def path(self) -> str:
        return self.actor.path

    @property
    def running(self) -> bool:
        return self._nursery is not None

    def add(self, child: Actor | Supervisor) -> Actor:
        """Supervise `child`: it starts now if this supervisor runs, else when it next runs."""
        actor = child.actor if isinstance(child, Supervisor) else child
        if actor in self.children or actor.terminated.is_set():
            raise ValueError(f"{actor.name!r} is already supervised or has ended")
        actor.parent = self
        actor.state = ActorState.STARTING
        self.children[actor] = None
        if self._context is not None:
            self._context.run(self._start, actor)
        return actor

    def _start(self, actor: Actor) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(self._supervise, actor, name=actor.path)

    async def run(self, ctx: ActorContext) -> None:
        """One run of this supervisor (its behaviour as an actor): until cancelled or it gives up."""
        await self._run()

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run as the root of a tree: nobody restarts it, and giving up raises to the caller."""
        actor = self.actor
        actor.state = ActorState.RUNNING
        actor.started_at = trio.current_time()
        log_event(log, "actor.started", path=self.path, restarts=0)
        outcome = "shutdown"
        try:
            await self._run(task_status)
        except Exception as exc:
            outcome = "gave_up"
            actor.state = ActorState.FAILED
            actor._record_error(exc)
            raise
        finally:
            if actor.state is not ActorState.FAILED:
                actor.state = ActorState.STOPPED
            log_event(log, "actor.stopped", path=self.path, reason=outcome, restarts=0,
                      uptime_s=_rounded(trio.current_time() - (actor.started_at or 0.0)))
            actor.end_for_good()

    async def _run(self, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        # A fresh run starts with a fresh restart budget, as in OTP.
        self._restart_times.clear()
        for child in list(self.children):
            if child.restart is Restart.TEMPORARY and child.state is not ActorState.STARTING:
                self._forget(child)
        self._context = contextvars.copy_context()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            try:
                for child in list(self.children):
                    child.state = ActorState.STARTING
                    nursery.start_soon(self._supervise, child, name=child.path)
                task_status.started()
                await trio.sleep_forever()
            finally:
                self._nursery = None

    async def _supervise(self, actor: Actor) -> None:
        """Run `actor` and restart it by its policy until it ends for good."""
        while True:
            if actor.stop_reason is not None:
                self._finish(actor, actor.stop_reason, None)
                return
            scope = trio.CancelScope()
            actor._scope = scope
            actor.state = ActorState.RUNNING
            started = actor.started_at = trio.current_time()
            log_event(log, "actor.started", path=actor.path, restarts=len(actor.restart_times))
            error: Exception | None = None
            outcome = "shutdown"
            reason: str | None = None
            try:
                with scope:
                    reason = await actor.behaviour(ActorContext(actor))
                outcome = "returned"
            except Exception as exc:  # a crash; trio.Cancelled is a BaseException and goes on up
                error = exc
                outcome = "crashed"
            finally:
                actor._scope = None
                if outcome == "shutdown":  # this supervisor is being cancelled: the child goes with it
                    actor.state = ActorState.STOPPED
                    log_event(log, "actor.stopped", path=actor.path, reason="shutdown",
                              restarts=len(actor.restart_times), uptime_s=_rounded(trio.current_time() - started))
            uptime = trio.current_time() - started

            if outcome == "returned":
                if scope.cancelled_caught:
                    self._finish(actor, actor.stop_reason or "stopped", uptime)
                    return
                if actor.restart is not Restart.PERMANENT:
                    self._finish(actor, reason or "normal", uptime)
                    return
            else:
                assert error is not None
                actor._record_error(error)
                if actor.restart is Restart.TEMPORARY:
                    self._log_crash(actor, error, None, uptime)
                    self._finish(actor, "crashed", uptime)
                    return

            self._count_restart(actor)
            if len(self._restart_times) > self.intensity:
                self._give_up(actor, error)
            delay = self.backoff.delay(len(actor.restart_times)) if error is not None else 0.0
            if error is not None:
                self._log_crash(actor, error, delay, uptime)
            else:
                log_event(log, "actor.stopped", path=actor.path, reason=reason or "normal",
                          restarts=len(actor.restart_times), uptime_s=_rounded(uptime))
            actor.state = ActorState.BACKOFF
            waited = False
            try:
                with trio.CancelScope() as waiting:
                    actor._scope = waiting  # stop() during the delay ends the actor
                    await trio.sleep(delay)
                waited = True
            finally:
                actor._scope = None
                if not waited:
                    actor.state = ActorState.STOPPED
                    log_event(log, "actor.stopped", path=actor.path, reason="shutdown",
                              restarts=len(actor.restart_times), uptime_s=None)
            if actor.stop_reason is None:
                log_event(log, "actor.restarting", path=actor.path, restarts=len(actor.restart_times),
                          after_s=_rounded(delay))

    def _count_restart(self, actor: Actor) -> None:
        now = trio.current_time()
        for times in (self._restart_times, actor.restart_times):
            times.append(now)
            while times and times[0] <= now - self.period:
                times.popleft()
        actor.restarts += 1
        self.restarts_total += 1

    def _give_up(self, actor: Actor, error: Exception | None) -> None:
        actor.state = ActorState.FAILED
        kind, message = describe_error(error) if error is not None else ("", "")
        log_event(log, "actor.gave_up", logging.ERROR, path=self.path, child=actor.path,
                  restarts=len(self._restart_times), intensity=self.intensity, period_s=self.period,
                  error_type=kind or None, error=message or None)
        raise SupervisorGaveUp(self.path, actor.path, len(self._restart_times), self.period) from error

    def _log_crash(self, actor: Actor, error: Exception, delay: float | None, uptime: float) -> None:
        kind, message = describe_error(error)
        # With its traceback: a crash is a bug (what is expected, such as an outage, is waited out).
        log_event(log, "actor.crashed", logging.WARNING, path=actor.path, error_type=kind, error=message,
                  exc_info=error, restart_in_s=_rounded(delay), restarts=len(actor.restart_times),
                  uptime_s=_rounded(uptime))

    def _finish(self, actor: Actor, reason: str, uptime: float | None) -> None:
        """`actor` ended for good: log it, drop it, refuse further messages."""
        actor.state = ActorState.STOPPED
        log_event(log, "actor.stopped", path=actor.path, reason=reason, restarts=len(actor.restart_times),
                  uptime_s=_rounded(uptime))
        self._forget(actor)

    def _forget(self, actor: Actor) -> None:
        self.children.pop(actor, None)
        actor.close_mailbox()
        actor.end_for_good()

    def child(self, name: str) -> Actor | None:
        """The supervised actor called `name`, if any (the newest one)."""
        found = None
        for actor in self.children:
            if actor.name == name:
                found = actor
        return found

    def _describe_children(self) -> dict[str, Any]:
        return {"children": [child.describe() for child in list(self.children)]}
