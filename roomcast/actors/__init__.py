"""The actor runtime (actors, supervisors, the room registry) and roomcast's actors."""

from .actor import Actor, ActorContext, ActorState, Restart
from .registry import RoomHub, RoomUnavailable, Subscriber
from .supervisor import Supervisor, SupervisorGaveUp
from .system import ActorSystem

__all__ = [
    "Actor",
    "ActorContext",
    "ActorState",
    "ActorSystem",
    "Restart",
    "RoomHub",
    "RoomUnavailable",
    "Subscriber",
    "Supervisor",
    "SupervisorGaveUp",
]
