"""Whether a PostgreSQL transaction committed, when its COMMIT got no answer (the connection died).

A COMMIT that reaches the server and whose answer is lost leaves the client in doubt: the rows may
be stored. The transaction's id, taken before it commits, settles it afterwards from any
connection: `txid_status` says committed, aborted, or still in progress (the server has not yet
noticed the connection is gone).
"""

from __future__ import annotations

from typing import Literal

from sqlalchemy import text
from sqlalchemy.orm import Session

CommitStatus = Literal["committed", "aborted", "in progress"]

# For a statement that takes it along in a round trip it makes anyway (send_reads.py).
TRANSACTION_ID_SQL = "SELECT txid_current()"
_CURRENT = text(TRANSACTION_ID_SQL)
_STATUS = text("SELECT txid_status(:txid)")
_TAKEN = "roomcast_txid"


def took_transaction_id(session: Session, txid: int) -> None:
    """`txid`, read by the transaction's own statements, is its id: `transaction_id` asks no more."""
    session.info[_TAKEN] = txid


def transaction_id(session: Session) -> int:
    """The open transaction's id (PostgreSQL), to settle its outcome with `commit_status` should its
    COMMIT go unanswered; a round trip unless it was taken along already (`took_transaction_id`)."""
    taken = session.info.get(_TAKEN)
    return int(taken) if taken is not None else int(session.execute(_CURRENT).scalar_one())


def commit_status(session: Session, txid: int) -> CommitStatus:
    """What became of transaction `txid`: one too old for the server to remember counts as aborted
    (never the case for one just tried)."""
    status = session.execute(_STATUS, {"txid": txid}).scalar()
    return status if status in ("committed", "in progress") else "aborted"
