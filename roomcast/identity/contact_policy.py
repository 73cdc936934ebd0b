"""Who may open a direct chat with whom: a table from caller role to target roles."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


class ContactPolicy:
    def __init__(self, table: Mapping[str, Sequence[str]]) -> None:
        # `service` users are integrations, never contacts, whatever the table says.
        self._table = {caller: frozenset(t for t in targets if t != "service") for caller, targets in table.items()}

    def contactable_roles(self, caller_role: str) -> frozenset[str]:
        return self._table.get(caller_role, frozenset())

    def allows(self, caller_role: str, target_role: str) -> bool:
        return target_role in self.contactable_roles(caller_role)
