"""Request and response models shared by the REST blueprints (and their OpenAPI document)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

from ..config import ROLES
from ..services.text import text_problem

Role = Literal["admin", "service", "member", "teacher", "tutor", "student", "parent", "bot"]
assert set(Role.__args__) == set(ROLES)  # type: ignore[attr-defined]

# Usernames are identifiers: no spaces or control characters, at most 64 characters.
Username = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\s\x00-\x1f\x7f]+$")]
# A new user's: nor any other invisible character (Unicode's separators and "other" classes:
# format characters such as a right-to-left override or a zero-width space, private use,
# unassigned), so that no name can pass for another's. Login still takes any Username.
NewUsername = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[^\p{C}\p{Z}]+$")]
Tenant = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


def _storable(text: str) -> str:
    """`text` if every database stores it as sent (no NUL: PostgreSQL refuses one), else a validation error."""
    if (problem := text_problem(text)) is not None:
        raise ValueError(problem)
    return text


Storable = AfterValidator(_storable)
DisplayName = Annotated[str, StringConstraints(min_length=1, max_length=128), Storable]
# A webhook's or bot's signing secret: stored, so storable too.
Secret = Annotated[str, StringConstraints(min_length=1, max_length=256), Storable]
SECRET_DESCRIPTION = "signs each body (HMAC-SHA256); never shown again"


class RequestModel(BaseModel):
    """A JSON request body: types are checked strictly; unknown fields are ignored."""

    model_config = ConfigDict(strict=True, extra="ignore")


class ErrorBody(BaseModel):
    code: str
    message: str
    details: dict | None = None


class ErrorOut(BaseModel):
    """PROTOCOL §1's error envelope."""

    error: ErrorBody


class UserOut(BaseModel):
    id: int
    username: str
    display_name: str
    role: Role
    tenant: str
    online: bool


class UserPage(BaseModel):
    items: list[UserOut]
    next_cursor: str | None


class ClientConfigOut(BaseModel):
    """GET /api/config: the limits a client checks before sending."""

    max_body_chars: int
    attachment_max_bytes: int
    attachment_types: list[str]


class LoginIn(RequestModel):
    username: Username
    password: str = Field(min_length=1, max_length=1024)
    tenant: Tenant | None = None  # extension: defaults to the server's default tenant


class TokenOut(BaseModel):
    access_token: str
    token_type: Literal["bearer"]
    expires_in: int


class CreateUserIn(RequestModel):
    username: NewUsername
    password: str | None = Field(None, min_length=8, max_length=1024)
    display_name: DisplayName | None = None
    role: Role = "member"
    tenant: Tenant | None = None


class ActorOut(BaseModel):
    """One actor of the supervision tree; each kind adds its own fields (a room: subscribers, lag...)."""

    model_config = ConfigDict(extra="allow")

    name: str
    path: str
    state: str
    restart: str
    restarts: int
    restarts_in_window: int
    uptime_s: float | None
    mailbox: int
    last_error: dict | None
    children: list[ActorOut] = Field(default_factory=list)


class ActorsOut(BaseModel):
    stream_backend: str
    tree: ActorOut


class RatesOut(BaseModel):
    """Per second, averaged over the last 10 seconds and the last minute."""

    model_config = ConfigDict(populate_by_name=True)

    last_10s: float = Field(alias="10s")
    last_1m: float = Field(alias="1m")


class NodeStatsOut(BaseModel):
    """One node's live figures."""

    id: str
    host: str
    pid: int
    started_at: str
    updated_at: str
    connections: int
    users_online: int
    subscriptions: int
    rooms: int
    messages_per_s: RatesOut
    deliveries_per_s: RatesOut


class TotalStatsOut(BaseModel):
    """The live nodes' figures added up; users_online counts each user once, however many nodes serve it."""

    nodes: int
    connections: int
    users_online: int
    subscriptions: int
    rooms: int
    messages_per_s: RatesOut
    deliveries_per_s: RatesOut


class StatsOut(BaseModel):
    node: NodeStatsOut
    nodes: list[NodeStatsOut]
    total: TotalStatsOut | None
    cluster: Literal["single", "redis", "unavailable"]


class ContactsQuery(BaseModel):
    limit: int = Field(100, ge=1, le=500)
    cursor: str | None = Field(None, max_length=32)


# --------------------------------------------------------------------------- webhooks (PROTOCOL §6)

WebhookEvent = Literal["message.created", "message.edited", "message.deleted", "room.created", "room.updated",
                       "room.deleted", "member.added", "member.removed", "message.unread", "*"]
WebhookEvents = Annotated[list[str], Field(min_length=1, max_length=32)] | Literal["*"]


class WebhookIn(RequestModel):
    """A target: `url` (http or https) gets a signed POST of every event `events` names ("*": all)."""

    url: str = Field(min_length=1, max_length=2048)
    secret: Secret = Field(description=SECRET_DESCRIPTION)
    events: WebhookEvents = Field("*", description='event names, or "*" for every event')
    active: bool = True


class WebhookPatchIn(RequestModel):
    url: str | None = Field(None, min_length=1, max_length=2048)
    secret: Secret | None = None
    events: WebhookEvents | None = None
    active: bool | None = None


class WebhookOut(BaseModel):
    """`id`: an integer, or `config:N` for the settings file's targets (`source` "settings", read-only)."""

    id: int | str
    url: str
    events: list[str]
    active: bool
    source: Literal["api", "settings"]
    created_at: str | None
    updated_at: str | None


class WebhookPage(BaseModel):
    items: list[WebhookOut]
    next_cursor: str | None


class DeliveryOut(BaseModel):
    """One event for one target. `status`: pending (`next_attempt_at` says when), delivered, dead."""

    id: int
    event_id: str
    event: str
    room: int
    seq: int | None
    status: Literal["pending", "delivered", "dead"]
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: str | None
    last_attempt_at: str | None
    delivered_at: str | None
    created_at: str


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    next_cursor: str | None


class DeliveriesQuery(BaseModel):
    limit: int = Field(50, ge=1, le=200)
    cursor: str | None = Field(None, max_length=32)
    status: Literal["pending", "delivered", "dead"] | None = None


# --------------------------------------------------------------------------- bots (PROTOCOL §6)

BotTrigger = Literal["direct", "mention", "all"]


class BotIn(RequestModel):
    """A bot: its user's `username` and `display_name`, where the messages that trigger it go
    (`url`, signed with `secret`), and which messages do (`trigger`)."""

    username: NewUsername
    display_name: DisplayName | None = None
    url: str = Field(min_length=1, max_length=2048)
    secret: Secret = Field(description=SECRET_DESCRIPTION)
    trigger: BotTrigger = Field(description="direct: messages in a direct chat with the bot; mention: messages "
                                            "naming @username in its rooms; all: every message in its rooms")


class BotPatchIn(RequestModel):
    url: str | None = Field(None, min_length=1, max_length=2048)
    secret: Secret | None = None
    trigger: BotTrigger | None = None
    active: bool | None = None


class BotOut(BaseModel):
    """A bot; `id` is its user's id. The secret is never shown."""

    id: int
    user: UserOut
    url: str
    trigger: BotTrigger
    active: bool
    created_at: str
    updated_at: str


class BotPage(BaseModel):
    items: list[BotOut]
    next_cursor: str | None


class BotCreatedOut(BaseModel):
    """The bot's user and a token for it (`bot_token_ttl_s`); the token is not shown again."""

    user: UserOut
    token: str
    bot: BotOut


class BotTokenOut(BaseModel):
    """A new token for the bot; every earlier one is revoked."""

    user: UserOut
    token: str


class AdminUserOut(UserOut):
    """A user as the admin tools show it."""

    is_active: bool
    created_at: str
    tokens_valid_after: str | None  # tokens issued before this are refused; null: never revoked


class AdminUserPage(BaseModel):
    items: list[AdminUserOut]
    next_cursor: str | None


class AdminUsersQuery(BaseModel):
    q: Annotated[str, StringConstraints(max_length=128), Storable] | None = None  # of a username or display name
    role: Role | None = None
    active: bool | None = None
    limit: int = Field(100, ge=1, le=500)
    cursor: str | None = Field(None, max_length=32)


class PasswordResetIn(RequestModel):
    password: str = Field(min_length=8, max_length=1024)
    revoke_tokens: bool = True  # end the user's tokens and sessions too
