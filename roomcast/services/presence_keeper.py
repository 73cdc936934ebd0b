"""The `presence` actor: keeps this node's presence entries alive and announces users whose node died."""

from __future__ import annotations

import logging

import trio

from ..actors.actor import Actor, ActorContext
from ..errors import DependencyUnavailable
from ..logs import log_event
from ..node import Node
from ..storage.users import get_user
from ..wire import JsonObject
from .presence_announcer import announce

log = logging.getLogger("roomcast.presence")


class PresenceKeeper:
    """The `presence` actor: refreshes this node's entries and announces users whose node died."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.failing = False
        self.departures = 0

    async def run(self, ctx: ActorContext) -> None:
        presence = self.node.presence
        while True:
            await trio.sleep(presence.refresh_interval_s)
            try:
                for departure in await presence.refresh():
                    user = await self.node.database.read(get_user, departure.user_id)
                    if user is not None:
                        await announce(self.node, departure.room_id, user, "left", departure.online)
                        self.departures += 1
            except DependencyUnavailable as exc:  # logged once per outage by its gateway; the next round catches up
                log_event(log, "presence.refresh_failed", logging.DEBUG, error=str(exc))
                self.failing = True
                continue
            except Exception as exc:  # not an outage: a bug; the next round tries again
                log_event(log, "presence.refresh_failed", logging.ERROR, error=repr(exc))
                self.failing = True
                continue
            if self.failing:
                log_event(log, "presence.refresh_recovered")
            self.failing = False

    def describe(self) -> JsonObject:
        return {"failing": self.failing, "departures_announced": self.departures}


def ensure_presence_keeper(node: Node) -> None:
    """Start the node's `presence` actor if it is not running yet (the first session connects)."""
    node.actors.ensure("presence", lambda: _keeper_actor(node))


def _keeper_actor(node: Node) -> Actor:
    keeper = PresenceKeeper(node)
    return Actor("presence", keeper.run, describe_extra=keeper.describe)
