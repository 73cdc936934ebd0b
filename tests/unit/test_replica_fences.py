"""The read replica's bookkeeping: its lag and state from the prober's samples, and users' fences.

Read-your-writes in full, against a real replica, is in tests/replica/; here the arithmetic, with
the prober's observations handed in directly.
"""

from __future__ import annotations

import contextvars

import pytest
from sqlalchemy import create_engine

from roomcast.storage import replica as replica_module
from roomcast.storage.replica import ReadReplica, act_for


def make_replica() -> ReadReplica:
    # Never connected: the engine is only there to be disposed.
    return ReadReplica(create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none"), 2, max_lag_s=5.0, probe_s=0.2)


def write_for(replica: ReadReplica, user_id: int | None) -> None:
    """A write transaction committed in the context of a request by `user_id` (None: an actor's)."""

    def commit() -> None:
        if user_id is not None:
            act_for(user_id)
        replica.committed()

    contextvars.copy_context().run(commit)


def test_unused_until_it_has_replayed_something_the_primary_was_seen_writing() -> None:
    replica = make_replica()
    assert replica.refusal(None) == "starting"
    replica._sample(10.0, replica.commits, 1000)
    replica._replayed(10.1, 999)  # far behind at start: its lag is not known, so it is not used
    assert (replica.state, replica.lag_s) == ("starting", None)
    replica._replayed(10.2, 1000)
    assert (replica.state, replica.lag_s, replica.refusal(None)) == ("ok", 0.0, None)


def test_a_users_reads_wait_until_the_replica_has_their_writes() -> None:
    replica = make_replica()
    replica._sample(0.0, replica.commits, 100)
    replica._replayed(0.0, 100)
    write_for(replica, 1)  # alice writes
    write_for(replica, None)  # an actor writes: nobody's fence
    assert replica.refusal(1) == "own_write"
    assert replica.refusal(2) is None and replica.refusal(None) is None
    replica._sample(1.0, replica.commits, 300)  # the primary's position after her write
    replica._replayed(1.5, 250)
    assert replica.refusal(1) == "own_write"
    assert replica.lag_s == 0.5  # it lacks WAL the primary had at 1.0
    replica._replayed(2.0, 300)
    assert replica.refusal(1) is None and replica.lag_s == 0.0
    assert replica._fences == {}  # fences the replica has passed are dropped
    # The committer's writes are for users other than its own context's.
    replica.commits += 1
    replica.wrote([2, 3])
    assert replica.refusal(2) == replica.refusal(3) == "own_write"


def test_lag_past_the_bound_and_back() -> None:
    replica = make_replica()
    replica._sample(0.0, 0, 100)
    replica._replayed(0.0, 100)
    replica._sample(1.0, 0, 200)
    replica._sample(2.0, 0, 300)
    replica._replayed(6.5, 150)  # still lacks what the primary had at 1.0
    assert (replica.state, replica.lag_s) == ("lagging", 5.5)
    assert replica.refusal(None) == "lagging"
    replica._replayed(6.6, 200)
    assert (replica.state, replica.lag_s) == ("ok", pytest.approx(4.6))
    replica._replayed(6.7, 300)
    assert replica.lag_s == 0.0


def test_many_fences_become_one_for_everyone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replica_module, "_MAX_FENCES", 3)
    replica = make_replica()
    replica._sample(0.0, 0, 100)
    replica._replayed(0.0, 100)
    for user_id in range(1, 5):
        write_for(replica, user_id)
    assert len(replica._fences) <= 3
    assert all(replica.refusal(user_id) == "own_write" for user_id in range(1, 10))  # everyone, written or not
    assert replica.refusal(None) is None
    replica._sample(1.0, replica.commits, 200)
    replica._replayed(1.0, 200)
    assert all(replica.refusal(user_id) is None for user_id in range(1, 10))


def test_samples_stay_bounded_and_the_oldest_dates_the_lag(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replica_module, "_MAX_SAMPLES", 4)
    replica = make_replica()
    replica._sample(0.0, 0, 100)
    replica._replayed(0.0, 100)
    for n in range(1, 20):
        replica._sample(float(n), n, 100 + n)
    assert len(replica._samples) == 4 and replica._samples[0][0] == 1.0
    replica._replayed(30.0, 100)
    assert replica.lag_s == 29.0
