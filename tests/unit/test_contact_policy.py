"""The default contact policy is PROTOCOL §2's table."""

from __future__ import annotations

import pytest

from roomcast.config import DEFAULT_CONTACT_POLICY, ROLES
from roomcast.identity.contact_policy import ContactPolicy

policy = ContactPolicy(DEFAULT_CONTACT_POLICY)
PEOPLE = [role for role in ROLES if role != "service"]


@pytest.mark.parametrize("caller", ROLES)
@pytest.mark.parametrize("target", ["admin", "teacher", "tutor", "member", "bot"])
def test_anyone_may_contact_staff_members_and_bots(caller: str, target: str) -> None:
    assert policy.allows(caller, target) == (caller != "service")


@pytest.mark.parametrize("caller", ["admin", "teacher", "tutor"])
@pytest.mark.parametrize("target", PEOPLE)
def test_staff_may_contact_anyone(caller: str, target: str) -> None:
    assert policy.allows(caller, target)


@pytest.mark.parametrize("caller", ["student", "parent"])
@pytest.mark.parametrize("target", ["student", "parent"])
def test_students_and_parents_may_not_contact_each_other(caller: str, target: str) -> None:
    assert not policy.allows(caller, target)


@pytest.mark.parametrize("caller", ROLES)
def test_service_users_are_never_contacts(caller: str) -> None:
    assert not policy.allows(caller, "service")
    assert not ContactPolicy({caller: list(ROLES)}).allows(caller, "service")


def test_member_may_contact_member() -> None:
    assert policy.allows("member", "member")
