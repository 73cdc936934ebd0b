"""Request and response models of the rooms, messages and publish endpoints (PROTOCOL §3–4)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, JsonValue, StringConstraints, model_validator
from quart_schema.pydantic import File

from ..config import ROLES
from ..services.publish import MAX_BROADCAST_USER_IDS, MAX_EVENT_DATA_BYTES, MAX_EVENT_NAME_CHARS
from ..services.text import MAX_ATTACHMENTS, MAX_CLIENT_ID_CHARS
from .ids import Id, Seq
from .schemas import RequestModel, Role, UserOut

MAX_MEMBERS_PER_REQUEST = 1000

RoomRole = Literal["owner", "moderator", "member"]
RoomName = Annotated[str, Field(min_length=1, max_length=200)]
Topic = Annotated[str, Field(max_length=1000)]
ExternalRef = Annotated[str, Field(min_length=1, max_length=255)]


# --------------------------------------------------------------------------- rooms in


class CreateRoomIn(RequestModel):
    """`direct`: `members` is the one other user. `group`/`forum`: `name` is required; the caller owns it."""

    kind: Literal["direct", "group", "forum"]
    name: RoomName | None = None
    topic: Topic | None = None
    members: list[Id] = Field(default_factory=list, max_length=MAX_MEMBERS_PER_REQUEST)

    @model_validator(mode="after")
    def _shape_of_kind(self) -> CreateRoomIn:
        if self.kind == "direct" and len(self.members) != 1:
            raise ValueError("a direct room takes exactly one other member")
        if self.kind != "direct" and self.name is None:
            raise ValueError(f"a {self.kind} room needs a name")
        return self


class UpdateRoomIn(RequestModel):
    name: RoomName | None = None
    topic: Topic | None = None
    is_active: bool | None = None


class AddMemberIn(RequestModel):
    user_id: Id
    room_role: RoomRole | None = Field(None, description="default: member (an existing member keeps its role)")


class ProvisionedMember(RequestModel):
    user_id: Id
    room_role: RoomRole = "member"


class ProvisionRoomIn(RequestModel):
    """The room as the integration wants it; its members are replaced by `members`."""

    kind: Literal["group", "forum"]
    name: RoomName
    members: list[ProvisionedMember] = Field(max_length=MAX_MEMBERS_PER_REQUEST)
    topic: Topic | None = None
    is_active: bool | None = None

    @model_validator(mode="after")
    def _members_once(self) -> ProvisionRoomIn:
        if len({member.user_id for member in self.members}) != len(self.members):
            raise ValueError("a user may appear only once in members")
        return self


class RoomsQuery(BaseModel):
    limit: int = Field(100, ge=1, le=200)
    cursor: str | None = Field(None, max_length=64)


# --------------------------------------------------------------------------- messages in


class SendMessageIn(RequestModel):
    """`body` is plain text kept exactly as sent, at most `max_body_chars` (4000 by default)."""

    body: str
    reply_to: Id | None = None
    client_id: str | None = Field(None, min_length=1, max_length=MAX_CLIENT_ID_CHARS)
    attachments: list[Id] = Field(default_factory=list, max_length=MAX_ATTACHMENTS)


class EditMessageIn(RequestModel):
    body: str


class HistoryQuery(BaseModel):
    limit: int = Field(50, ge=1, le=200)
    before: Seq | None = None
    after: Seq | None = None


class ReadIn(RequestModel):
    seq: Seq


# --------------------------------------------------------------------------- server-side publish in

# Printable: no control characters, and not only spaces.
EventName = Annotated[str, StringConstraints(
    min_length=1, max_length=MAX_EVENT_NAME_CHARS,
    pattern=r"^[^\x00-\x1f\x7f]*[^\s\x00-\x1f\x7f][^\x00-\x1f\x7f]*$",
)]
_DATA = f"any JSON value, at most {MAX_EVENT_DATA_BYTES} bytes as compact UTF-8 JSON (413 `too_large` beyond)"


class RoomEventIn(RequestModel):
    """An event for the room's subscribers: `name` says what it is, `data` carries it (default null)."""

    name: EventName = Field(description=f"1 to {MAX_EVENT_NAME_CHARS} characters, no control characters")
    data: JsonValue = Field(None, description=_DATA)


class BroadcastIn(RequestModel):
    """A broadcast to the caller's tenant: the sessions of users with one of `roles` or among
    `user_ids`; everyone in the tenant when both are omitted (both given empty is a 400)."""

    roles: list[Role] | None = Field(None, max_length=len(ROLES))
    user_ids: list[Id] | None = Field(None, max_length=MAX_BROADCAST_USER_IDS)
    name: EventName = Field(description=f"1 to {MAX_EVENT_NAME_CHARS} characters, no control characters")
    data: JsonValue = Field(None, description=_DATA)


# --------------------------------------------------------------------------- out


class SenderOut(BaseModel):
    id: int
    username: str
    display_name: str


class UploadIn(BaseModel):
    """multipart/form-data with the file in the field `file` (other fields are ignored)."""

    file: File


class AttachmentOut(BaseModel):
    id: int
    filename: str
    content_type: str
    size: int
    url: str


class MessageOut(BaseModel):
    id: int
    room_id: int
    seq: int
    sender: SenderOut
    body: str
    reply_to: int | None
    attachments: list[AttachmentOut]
    client_id: str | None
    created_at: str
    edited_at: str | None


class MessagePage(BaseModel):
    items: list[MessageOut]
    has_more: bool


class MemberOut(BaseModel):
    id: int
    username: str
    display_name: str
    role: Role
    room_role: RoomRole


class RoomOut(BaseModel):
    id: int
    kind: Literal["direct", "group", "forum"]
    name: str
    topic: str
    is_active: bool
    external_ref: str | None
    members: list[MemberOut]
    last_seq: int
    last_message: MessageOut | None
    unread_count: int
    created_at: str
    updated_at: str


class RoomPage(BaseModel):
    items: list[RoomOut]
    next_cursor: str | None


class PresenceOut(BaseModel):
    online: list[UserOut]


class AcceptedOut(BaseModel):
    """The event was handed to every node; it reaches the sessions connected as it passes."""

    accepted: Literal[True]
