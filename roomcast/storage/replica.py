"""Reads from a PostgreSQL streaming replica, and the rule that keeps them honest.

With `database_read_url` set, `Database.replica_read` hands a client-facing read (a history page,
a room list, the replay of a subscription) to the replica when the replica may serve it, and to
the primary otherwise. The rule: **a client never reads older state than it has seen**, as far as
the server can know what it has seen (docs/architecture.md, "Reads from a replica"):

- **Its own writes** (read-your-writes). The node counts the write transactions it commits; a
  user's fence is that count after their last write through this node (`ReadReplica.committed`,
  `wrote`). Every `database_read_probe_s` the prober pairs the count with the primary's WAL insert
  position, then asks the replica how far it has replayed: once it has replayed the position paired
  with a user's fence, everything that user wrote through this node is on it. Until then, their
  reads go to the primary. Nothing is added to a write but an increment.
- **The positions it passes**: `after` / `before` a seq, a subscription's `since`, a list cursor.
  The read checks, in its own transaction on the replica, that the replica holds the position (a
  room's last seq at least the seq, the cursor's row as new as the cursor says): `require_replayed`,
  which raises ReplicaBehind when it does not, and the read runs again on the primary.
- **Refusals**: a read the replica refuses (no such room, not a member) may only mean that the
  replica has not replayed the change yet; it is asked again of the primary.

And node-wide: a replica that does not answer, is not in recovery, has not yet replayed anything
the prober saw the primary write, or lacks WAL the primary had more than `database_read_max_lag_s`
ago is not used (`state`); /readyz and /metrics say which, and the primary serves meanwhile.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from typing import TypeVar

import trio
from sqlalchemy import Engine, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from ..availability import Availability
from ..config import Settings
from ..errors import ApiError, DependencyUnavailable
from ..logs import log_event
from .database import POOL_OVERFLOW, create_database_engine, describe_error, is_unavailable
from .prompt_limiter import PromptLimiter

T = TypeVar("T")

log = logging.getLogger("roomcast.replica")

_ON_REPLICA = "roomcast_on_replica"
# Unreplayed samples kept while the replica is behind; past it, middle ones go (the oldest dates the lag).
_MAX_SAMPLES = 1024
# Users with a fence; past it they collapse into one node-wide fence (bounded memory in a long outage).
_MAX_FENCES = 10_000
# A probe the replica has not answered within this long counts as the replica down (a dead network
# path answers nothing at all); its thread is left to finish on its own.
_PROBE_TIMEOUT_S = 2.0
# SQLSTATEs a hot standby cancels a query with when replay needs what it holds: the primary answers it.
_RECOVERY_CONFLICTS = ("40001", "40P01")

# Why a read the replica could have served went to the primary (the metric's labels, in this order).
FALLBACK_REASONS = ("unavailable", "starting", "lagging", "own_write", "behind", "refused", "conflict", "error")

# The user this context acts for: set when a REST request or a /ws connection authenticates.
_acting_user: ContextVar[int | None] = ContextVar("roomcast_acting_user", default=None)


def act_for(user_id: int) -> None:
    """Reads and writes from here on in this context (this task, and the tasks it starts) are `user_id`'s."""
    _acting_user.set(user_id)


class ReplicaBehind(Exception):
    """The replica has not replayed what this read must see: run it on the primary."""


def on_replica(session: Session) -> bool:
    """Whether `session` reads the replica (a read that may see older state than the primary's)."""
    return bool(session.info.get(_ON_REPLICA))


def require_replayed(session: Session, replayed: Callable[[], bool]) -> None:
    """In a read that may run on the replica: ReplicaBehind unless `replayed()`, which says whether the
    replica holds a position the client has seen (a room's last seq at least the seq it gave, say).
    On the primary nothing, and `replayed` is not called: it may cost a query."""
    if on_replica(session) and not replayed():
        raise ReplicaBehind("the replica has not replayed what the client has seen")


class _Unusable(Exception):
    """The replica could not serve this read (`reason`); the primary will."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ReadReplica:
    """The replica's engine, whether it may serve reads (probed), and who must wait for it (fences)."""

    def __init__(self, engine: Engine, pool_size: int, *, max_lag_s: float, probe_s: float) -> None:
        self.engine = engine
        self.limiter = trio.CapacityLimiter(pool_size + POOL_OVERFLOW)
        self._slots = PromptLimiter(self.limiter).for_trio()
        self.availability = Availability("database_read")
        self.max_lag_s = max_lag_s
        self.probe_s = probe_s
        # Seconds since the primary had WAL the replica has not replayed (0: none); None until the
        # replica has replayed something the prober saw, so a replica far behind at start is not used.
        self.lag_s: float | None = None
        self.in_recovery = True
        self.commits = 0  # write transactions this node has committed
        self.served = 0  # reads the replica answered
        self.fallbacks: Counter[str] = Counter()  # reads it did not, by why
        self._fences: dict[int, int] = {}  # user -> `commits` after their last write through this node
        self._floor = 0  # the fence of every user, once too many had one
        self._visible = -1  # `commits` whose WAL the replica has replayed
        self._samples: deque[tuple[float, int, int]] = deque()  # (when, commits, primary's WAL position), unreplayed
        self._reported = "starting"
        self._last_error: str | None = None  # the last error that was no outage, logged once

    @classmethod
    def from_settings(cls, settings: Settings) -> ReadReplica | None:
        """The replica `database_read_url` names, or None when it is unset."""
        if not settings.database_read_url:
            return None
        pool_size = settings.database_pool_size
        return cls(create_database_engine(settings.database_read_url, pool_size), pool_size,
                   max_lag_s=settings.database_read_max_lag_s, probe_s=settings.database_read_probe_s)

    def describe(self) -> dict[str, object]:
        """For /api/admin/actors: the state, the lag and where reads went."""
        return {"replica": self.state, "lag_s": None if self.lag_s is None else round(self.lag_s, 3),
                "served": self.served, "fallbacks": dict(self.fallbacks)}

    # ------------------------------------------------------------------ may it serve?

    @property
    def state(self) -> str:
        """`ok` (serving reads), or why it is not: `unavailable`, `starting` (nothing replayed yet), `lagging`."""
        if self.availability.is_down or not self.in_recovery:
            return "unavailable"
        if self.lag_s is None:
            return "starting"
        return "lagging" if self.lag_s > self.max_lag_s else "ok"

    def refusal(self, user_id: int | None) -> str | None:
        """Why a read for `user_id` (None: no client's) must go to the primary now, or None."""
        state = self.state
        if state != "ok":
            return state
        if user_id is not None and max(self._floor, self._fences.get(user_id, 0)) > self._visible:
            return "own_write"
        return None

    def committed(self) -> None:
        """A write transaction committed, on the event loop, in the context of whoever it was for."""
        self.commits += 1
        user_id = _acting_user.get()
        if user_id is not None:
            self._fence(user_id)

    def wrote(self, user_ids: Iterable[int]) -> None:
        """These users' writes have just committed (the committer writes for many in one transaction)."""
        for user_id in user_ids:
            self._fence(user_id)

    def _fence(self, user_id: int) -> None:
        if len(self._fences) >= _MAX_FENCES and user_id not in self._fences:
            self._floor = self.commits  # everyone waits for all this node has written: correct, coarser
            self._fences.clear()
        self._fences[user_id] = self.commits

    # ------------------------------------------------------------------ reading

    async def read(self, primary_read: Callable[[], Awaitable[T]], work: Callable[[Session], T]) -> T:
        """`work(session)` on the replica if it may serve it and holds what it must see, else `primary_read()`."""
        reason = self.refusal(_acting_user.get())
        if reason is None:
            try:
                result = await self._run(work)
            except ReplicaBehind:
                reason = "behind"
            except ApiError:
                reason = "refused"
            except _Unusable as exc:
                reason = exc.reason
            else:
                self.served += 1
                return result
        self.fallbacks[reason] += 1
        return await primary_read()

    async def _run(self, work: Callable[[Session], T], *, probe: bool = False) -> T:
        """`work` on the replica; _Unusable when the replica fails it. No database error of the
        replica's goes further: the primary answers the read, and runs into any bug of its own."""
        started = trio.current_time()
        try:
            if probe:
                result = await self._within(_PROBE_TIMEOUT_S, work)
            else:
                result = await trio.to_thread.run_sync(self._transaction, work, limiter=self._slots)
        except (sa_exc.DBAPIError, sa_exc.TimeoutError) as exc:
            if getattr(getattr(exc, "orig", None), "sqlstate", None) in _RECOVERY_CONFLICTS and not probe:
                raise _Unusable("conflict") from exc
            detail = describe_error(exc)
            # A probe that fails, whatever the error (no such database, a password refused), means
            # the replica cannot be used: it stays out until a probe goes through.
            if probe or is_unavailable(exc):
                self.availability.failed(exc, started, detail)
                self._report()
                raise _Unusable("unavailable") from exc
            self._note_error(detail)  # a replica unlike its primary (a schema missing, say)
            raise _Unusable("error") from exc
        self.availability.succeeded(started)
        return result

    async def _within(self, timeout_s: float, work: Callable[[Session], T]) -> T:
        """`work` in a worker thread, left to finish on its own when it has not answered within `timeout_s`."""
        with trio.move_on_after(timeout_s):
            return await trio.to_thread.run_sync(self._transaction, work, limiter=self._slots,
                                                 abandon_on_cancel=True)
        raise sa_exc.TimeoutError(f"no answer within {timeout_s:g} s")

    def _note_error(self, detail: str) -> None:
        """Log an error that is no outage once, not on every read or probe that meets it again."""
        if detail != self._last_error:
            log_event(log, "replica.error", logging.WARNING, error=detail)
            self._last_error = detail

    def _transaction(self, work: Callable[[Session], T]) -> T:
        with Session(self.engine, expire_on_commit=False) as session:
            session.info[_ON_REPLICA] = True
            with session.begin():
                return work(session)

    # ------------------------------------------------------------------ probing

    async def run(self, primary_position: Callable[[], Awaitable[int]]) -> None:
        """Probe every `probe_s` until cancelled (the `read_replica` actor)."""
        while True:
            await self.probe(primary_position)
            await trio.sleep(self.probe_s)

    async def probe(self, primary_position: Callable[[], Awaitable[int]]) -> None:
        """Pair this node's commit count with the primary's WAL position, then see how far the replica
        has replayed: what the lag, the visible commits and the state come from."""
        commits = self.commits  # all committed before the primary is asked: its position is past them
        try:
            position = await primary_position()
        except DependencyUnavailable:
            pass  # the primary's gateway reports its outage; the replica may still serve what it has
        except sa_exc.DBAPIError as exc:  # database_url names a standby, say: no sample, and no crash
            self._note_error(describe_error(exc))
        else:
            self._sample(trio.current_time(), commits, position)
        try:
            in_recovery, replayed = await self._run(_replay_position, probe=True)
        except _Unusable:
            return
        if in_recovery != self.in_recovery:
            self.in_recovery = in_recovery
            if not in_recovery:  # promoted, or database_read_url names a primary: its data may have forked
                log_event(log, "replica.not_in_recovery", logging.WARNING)
        if replayed is not None:
            self._replayed(trio.current_time(), replayed)
        self._report()

    def _sample(self, now: float, commits: int, position: int) -> None:
        samples = self._samples
        if samples and samples[-1][1:] == (commits, position):
            return  # nothing written since: the older sample dates the lag
        if len(samples) >= _MAX_SAMPLES:
            del samples[1]
        samples.append((now, commits, position))

    def _replayed(self, now: float, position: int) -> None:
        samples = self._samples
        while samples and samples[0][2] <= position:
            self._visible = max(self._visible, samples.popleft()[1])
        if self._visible >= 0:
            self.lag_s = now - samples[0][0] if samples else 0.0
            if self._fences:  # users whose writes the replica now has wait no more
                self._fences = {user: fence for user, fence in self._fences.items() if fence > self._visible}

    def _report(self) -> None:
        """Log a change of state once (outages are logged by `availability`)."""
        state = self.state
        if state == self._reported:
            return
        if state == "lagging":
            log_event(log, "replica.lagging", logging.WARNING, lag_s=round(self.lag_s or 0.0, 3),
                      max_lag_s=self.max_lag_s)
        elif state == "ok":
            log_event(log, "replica.in_use", lag_s=round(self.lag_s or 0.0, 3))
        self._reported = state

    async def aclose(self) -> None:
        await trio.to_thread.run_sync(self.engine.dispose)


def _replay_position(session: Session) -> tuple[bool, int | None]:
    """Whether the server is a replica, and how far it has replayed the primary's WAL (bytes)."""
    row = session.execute(text("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn() - '0/0'::pg_lsn")).one()
    return bool(row[0]), None if row[1] is None else int(row[1])


def primary_position(session: Session) -> int:
    """The primary's WAL insert position (bytes): past the commit record of every transaction committed."""
    return int(session.execute(text("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn")).scalar_one())
