"""An actor: a named Trio task with a bounded mailbox and a lifecycle.

The `Actor` object is the actor's identity. It outlives each run of its
behaviour: when a supervisor restarts the actor, the new run gets the same
mailbox (messages waiting in it are not lost) and whatever state the behaviour
keeps on its own object. Only the task is new.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import trio

from ..timestamps import to_wire, utcnow

if TYPE_CHECKING:
    from .supervisor import Supervisor

T = TypeVar("T")


class Restart(enum.Enum):
    """OTP restart policies: when a supervisor starts a child again after its run ends."""

    PERMANENT = "permanent"  # always, whether it crashed or returned
    TRANSIENT = "transient"  # only after a crash
    TEMPORARY = "temporary"  # never


class ActorState(enum.Enum):
    STARTING = "starting"  # added to a supervisor, its task not yet running
    RUNNING = "running"
    BACKOFF = "backoff"  # crashed; waiting out the restart delay
    STOPPED = "stopped"  # ended for good (returned, stopped, or shut down)
    FAILED = "failed"  # its supervisor gave up on it


@dataclass
class ActorContext:
    """What one run of a behaviour gets: its actor (name, path, mailbox)."""

    actor: Actor

    @property
    def mailbox(self) -> trio.MemoryReceiveChannel[Any]:
        return self.actor.inbox

    @property
    def path(self) -> str:
        return self.actor.path


# A behaviour runs until it returns (optionally a reason for stopping, e.g. "idle") or raises.
Behaviour = Callable[[ActorContext], Awaitable[str | None]]


@dataclass
class ActorError:
    type: str
    message: str
    at: str | None


@dataclass(eq=False)
class Actor:
    """A supervised actor's identity: name, mailbox, restart policy, state and counters."""

    name: str
    behaviour: Behaviour
    restart: Restart = Restart.PERMANENT
    mailbox_size: int = 64
    # Extra fields for /api/admin/actors (subscribers, stream position...).
    describe_extra: Callable[[], dict[str, Any]] | None = None
    # Called once, when it has ended for good (`terminated` is set): must not block or raise.
    on_terminated: Callable[[], None] | None = None

    parent: Supervisor | None = field(default=None, init=False)
    state: ActorState = field(default=ActorState.STARTING, init=False)
    restarts: int = field(default=0, init=False)
    restart_times: deque[float] = field(default_factory=deque, init=False)
    last_error: ActorError | None = field(default=None, init=False)
    started_at: float | None = field(default=None, init=False)
    stop_reason: str | None = field(default=None, init=False)
    # Set once the actor has ended for good; nothing will run it again.
    terminated: trio.Event = field(default_factory=trio.Event, init=False)
    _scope: trio.CancelScope | None = field(default=None, init=False)
    # The give-ups of senders waiting for an answer (`wait_unless_terminated`), called when it ends for good.
    _waiting: set[Callable[[], None]] = field(default_factory=set, init=False)

    def __post_init__(self) -> None:
        self.outbox, self.inbox = trio.open_memory_channel[Any](self.mailbox_size)

    @property
    def path(self) -> str:
        return f"{self.parent.path}/{self.name}" if self.parent is not None else self.name

    def uptime(self) -> float | None:
        if self.state is not ActorState.RUNNING or self.started_at is None:
            return None
        return trio.current_time() - self.started_at

    def tell(self, message: Any) -> None:
        """Put `message` in the mailbox without waiting; trio.WouldBlock when it is full.

        trio.BrokenResourceError once the actor has ended for good.
        """
        self.outbox.send_nowait(message)

    async def send(self, message: Any) -> None:
        """Put `message` in the mailbox, waiting for room (trio.BrokenResourceError once ended)."""
        await self.outbox.send(message)

    @property
    def backlog(self) -> int:
        """Messages waiting in the mailbox."""
        return self.outbox.statistics().current_buffer_used

    @property
    def waiting_for_mail(self) -> bool:
        """Its run waits on an empty mailbox, and no message is on its way to it."""
        # A message sent to a waiting receiver skips the buffer: the receiver stops waiting at once.
        statistics = self.outbox.statistics()
        return statistics.current_buffer_used == 0 and statistics.tasks_waiting_receive > 0

    def stop(self, reason: str = "stopped") -> None:
        """Stop this actor for good (its supervisor will not restart it); returns at once."""
        self.stop_reason = reason
        if self._scope is not None:
            self._scope.cancel()

    def end_for_good(self) -> None:
        """Mark it ended for good (its supervisor's doing): `terminated` is set, `on_terminated` called."""
        if self.terminated.is_set():
            return
        self.terminated.set()
        for give_up in list(self._waiting):
            give_up()
        if self.on_terminated is not None:
            self.on_terminated()

    async def wait_unless_terminated(self, done: trio.Event, give_up: Callable[[], None]) -> None:
        """Wait for `done`, the answer to a request sent to this actor.

        A request left in the mailbox of an actor that will not come back must not hold its
        sender: if the actor ends for good first, `give_up()` is called, and it must fail the
        request (setting `done`). No task per wait: a join storm makes thousands of them.
        """
        if self.terminated.is_set():
            give_up()
        self._waiting.add(give_up)
        try:
            await done.wait()
        finally:
            self._waiting.discard(give_up)

    def close_mailbox(self) -> None:
        """Refuse further messages: senders get trio.BrokenResourceError."""
        self.inbox.close()

    def _record_error(self, error: BaseException) -> ActorError:
        kind, message = describe_error(error)
        self.last_error = ActorError(kind, message, to_wire(utcnow()))
        return self.last_error

    def describe(self) -> dict[str, Any]:
        """This actor as /api/admin/actors shows it (without children)."""
        uptime = self.uptime()
        info: dict[str, Any] = {
            "name": self.name,
            "path": self.path,
            "state": self.state.value,
            "restart": self.restart.value,
            "restarts": self.restarts,
            "restarts_in_window": len(self.restart_times),
            "uptime_s": round(uptime, 3) if uptime is not None else None,
            "mailbox": self.backlog,
            "last_error": vars(self.last_error) if self.last_error else None,
        }
        if self.describe_extra is not None:
            info.update(self.describe_extra())
        return info


def take_waiting(mailbox: trio.MemoryReceiveChannel[T], batch: list[T], limit: int) -> None:
    """Add to `batch` what waits in `mailbox` now, oldest first, until it holds `limit`.

    How a batching actor takes its next batch: one message awaited, a checkpoint (so senders
    woken in this round of the scheduler queue theirs first), then this.
    """
    while len(batch) < limit:
        try:
            batch.append(mailbox.receive_nowait())
        except trio.WouldBlock:
            break


def describe_error(error: BaseException) -> tuple[str, str]:
    """(type name, message) of an error, looking inside single-exception groups."""
    while isinstance(error, BaseExceptionGroup) and len(error.exceptions) == 1:
        error = error.exceptions[0]
    return type(error).__name__, str(error)
