"""SQLAlchemy models: everything roomcast keeps durably."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from ..timestamps import utcnow

# Stable constraint names keep Alembic migrations identical on SQLite and PostgreSQL.
NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BigInteger ids on PostgreSQL, but INTEGER on SQLite so that it stays the rowid alias: both are
# signed 64-bit, and wire.MAX_ID is the largest id either holds.
Id = BigInteger().with_variant(Integer(), "sqlite")
Timestamp = DateTime(timezone=True)


# Tables with an id: on SQLite, AUTOINCREMENT so that an id is never handed out twice (without
# it SQLite reuses the largest id after a delete, and a client holding the old id reaches the new
# row). PostgreSQL sequences never go back.
NEVER_REUSE_IDS = {"sqlite_autoincrement": True}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    __tablename__ = "users"
    __table_args__ = (UniqueConstraint("tenant", "username"), Index(None, "tenant", "role"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    username: Mapped[str] = mapped_column(String(64))
    display_name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Tokens issued before this moment are refused (logout everywhere, disable).
    tokens_valid_after: Mapped[datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class Room(Base):
    __tablename__ = "rooms"
    __table_args__ = (
        UniqueConstraint("tenant", "external_ref"),
        UniqueConstraint("tenant", "direct_key"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(200), default="")
    topic: Mapped[str] = mapped_column(String(1000), default="")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    external_ref: Mapped[str | None] = mapped_column(String(255))
    # "<low user id>:<high user id>" for direct rooms, so a pair has at most one.
    direct_key: Mapped[str | None] = mapped_column(String(64))
    last_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    last_message_id: Mapped[int | None] = mapped_column(Id)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    last_activity_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow, index=True)


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (Index(None, "user_id"),)

    room_id: Mapped[int] = mapped_column(Id, ForeignKey("rooms.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    room_role: Mapped[str] = mapped_column(String(16), default="member")
    last_read_seq: Mapped[int] = mapped_column(BigInteger, default=0)
    # The last seq a `message.unread` notification covered (or passed over: the member was online).
    notified_seq: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    joined_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class Message(Base):
    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("room_id", "seq"),
        UniqueConstraint("room_id", "sender_id", "client_id"),
        # So that deleting messages (a room's) need not scan for their replies; only replies are
        # in it, so a message that replies to nothing costs no index entry.
        Index("ix_messages_reply_to_id", "reply_to_id", postgresql_where=text("reply_to_id IS NOT NULL"),
              sqlite_where=text("reply_to_id IS NOT NULL")),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    # No foreign keys on the room and the sender: PostgreSQL checks one per inserted row, about
    # half of a send batch's insert. A send holds its room's lock and `delete_room` takes it
    # before deleting the room's messages; users are never deleted (they are disabled).
    room_id: Mapped[int] = mapped_column(Id)
    seq: Mapped[int] = mapped_column(BigInteger)
    sender_id: Mapped[int] = mapped_column(Id)
    body: Mapped[str] = mapped_column(Text)
    reply_to_id: Mapped[int | None] = mapped_column(Id, ForeignKey("messages.id", ondelete="SET NULL"))
    client_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    edited_at: Mapped[datetime | None] = mapped_column(Timestamp)
    deleted_at: Mapped[datetime | None] = mapped_column(Timestamp)


class Attachment(Base):
    __tablename__ = "attachments"
    __table_args__ = (NEVER_REUSE_IDS,)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    room_id: Mapped[int] = mapped_column(Id, ForeignKey("rooms.id", ondelete="CASCADE"), index=True)
    uploader_id: Mapped[int] = mapped_column(Id, ForeignKey("users.id", ondelete="CASCADE"))
    message_id: Mapped[int | None] = mapped_column(Id, ForeignKey("messages.id", ondelete="SET NULL"), index=True)
    filename: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(BigInteger)
    # Known once the last byte is stored; until then (`stored_at` empty) the upload is under way
    # and no message may carry it, nor anyone download it.
    sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    stored_at: Mapped[datetime | None] = mapped_column(Timestamp)


class AttachmentChunk(Base):
    """An attachment's bytes, in order: chunk `n` holds bytes n*size..(n+1)*size of it (storage.blobs)."""

    __tablename__ = "attachment_chunks"

    attachment_id: Mapped[int] = mapped_column(Id, ForeignKey("attachments.id", ondelete="CASCADE"), primary_key=True)
    n: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class OutboxEvent(Base):
    """Every stored room event, keyed by (room, seq): the outbox and the replay log.

    Written in the transaction that commits the event; `published_at` stays empty
    until the outbox relay has put it on the room's stream (DESIGN.md §1).
    """

    __tablename__ = "outbox"
    # Only the rows still to publish, in the relay's order: a row marked published leaves it (and
    # adds no entry), so it stays small however long the outbox grows.
    __table_args__ = (Index("ix_outbox_unpublished", "room_id", "seq", postgresql_where=text("published_at IS NULL"),
                            sqlite_where=text("published_at IS NULL")),)

    # No foreign key, as on `messages.room_id`, and for the same reason.
    room_id: Mapped[int] = mapped_column(Id, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text)  # the event as JSON, exactly as delivered
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(Timestamp)


class Webhook(Base):
    """A tenant's webhook target made through the admin API (settings-file targets live in the settings)."""

    __tablename__ = "webhooks"
    __table_args__ = (Index(None, "tenant"), NEVER_REUSE_IDS)

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(2048))
    secret: Mapped[str] = mapped_column(String(256))
    events: Mapped[str] = mapped_column(Text)  # a JSON list of event names, or ["*"]
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class WebhookDelivery(Base):
    """One event for one target: the durable webhook queue, written in the event's own transaction.

    `target` names the target ("config:0" for the settings file's first, "api:12" for webhook 12);
    deliveries of one target and room go out in `id` order, which is commit order per room.
    No foreign key to rooms: a `room.deleted` delivery outlives its room.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_order", "target", "room_id", "status", "id"),
        Index("ix_webhook_deliveries_listing", "tenant", "target", "id"),
        NEVER_REUSE_IDS,
    )

    id: Mapped[int] = mapped_column(Id, primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(64))
    webhook_id: Mapped[int | None] = mapped_column(Id, ForeignKey("webhooks.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[str] = mapped_column(String(64))
    event: Mapped[str] = mapped_column(String(32))
    room_id: Mapped[int] = mapped_column(BigInteger)
    seq: Mapped[int | None] = mapped_column(BigInteger)
    body: Mapped[str] = mapped_column(Text)  # the JSON body without `delivered_at`, added at each attempt
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | delivered | dead
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(Timestamp)
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_until: Mapped[datetime | None] = mapped_column(Timestamp)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    last_attempt_at: Mapped[datetime | None] = mapped_column(Timestamp)
    delivered_at: Mapped[datetime | None] = mapped_column(Timestamp)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)


class Bot(Base):
    """A bot: its user (role `bot`) and where the messages that trigger it go (PROTOCOL §6)."""

    __tablename__ = "bots"
    __table_args__ = (Index(None, "tenant"),)

    user_id: Mapped[int] = mapped_column(Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    tenant: Mapped[str] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(String(2048))
    secret: Mapped[str] = mapped_column(String(256))
    trigger: Mapped[str] = mapped_column(String(16))  # direct | mention | all
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(Timestamp, default=utcnow)
