"""What a batch of sends reads before it writes: its rooms locked (with the senders' memberships
and repeated client_ids, `rooms.lock_for_sends`) and where its messages may go besides
(`send_targets`), for each sending tenant.

On PostgreSQL the statements go in one round trip (libpq's pipeline mode), and the transaction's
BEGIN with them: a batch's transaction makes three round trips instead of five (BEGIN, the
locks, the targets, the writes, COMMIT), and each costs more than its statement on a database
that shares its cores. Elsewhere they run one after the other. The transaction's id comes along
(storage/commit_status.py).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from sqlalchemy.orm import Session

from . import driver_rows
from .commit_status import TRANSACTION_ID_SQL, took_transaction_id
from .rooms import LockedForSends, lock_for_sends, locked_of_rows, pg_lock_for_sends
from .send_targets import Targets, pg_targets, targets_of_rows, webhooks_and_room_bots


def read_for_sends(session: Session, pairs: Collection[tuple[int, int]], keys: Collection[tuple[int, int, str]],
                   targets_of: Mapping[str, Collection[int]]) -> tuple[LockedForSends, dict[str, Targets]]:
    """`lock_for_sends(session, pairs, keys)`, and `webhooks_and_room_bots` of each tenant of
    `targets_of` (tenant -> the rooms whose bots to read)."""
    tenants = list(targets_of)
    if driver_rows.dialect(session) != "postgresql" or not driver_rows.pg_pipelines():
        locked = lock_for_sends(session, pairs, keys)
        return locked, {tenant: webhooks_and_room_bots(session, tenant, targets_of[tenant]) for tenant in tenants}
    # The transaction's id comes along, for the committer to settle a COMMIT that goes unanswered.
    results = driver_rows.pg_execute_together(
        session, [pg_lock_for_sends(pairs, keys), *(pg_targets(tenant, targets_of[tenant]) for tenant in tenants),
                  (TRANSACTION_ID_SQL, {})])
    took_transaction_id(session, int(str(results[-1][0][0])))
    targets = {tenant: targets_of_rows(rows, targets_of[tenant])
               for tenant, rows in zip(tenants, results[1:-1], strict=True)}
    return locked_of_rows(results[0]), targets
