"""A broadcast by role across two server processes sharing PostgreSQL and Redis (PROTOCOL §4)."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_two_nodes import server_process
from tests.publish_helpers import connect_all, nothing_live, post

pytestmark = [pytest.mark.postgres, pytest.mark.redis]


@pytest.fixture
def db_backend() -> str:
    return "postgresql"


async def test_a_broadcast_to_teachers_and_tutors_reaches_exactly_them_on_both_processes(
        tmp_path: Path, database_url: str, redis_url: str, redis_key_prefix: str, users: Any) -> None:
    service = await users.create("service")
    people = {role: [await users.create(role) for _ in range(4)] for role in ("teacher", "tutor", "student", "admin")}
    foreign = [await users.create(role, tenant="acme") for role in ("teacher", "tutor")]
    with server_process(tmp_path, "a", database_url, redis_url, redis_key_prefix) as (_, url_a), \
            server_process(tmp_path, "b", database_url, redis_url, redis_key_prefix) as (_, url_b):
        async with AsyncExitStack() as stack, httpx.AsyncClient(timeout=30) as http:
            clients = {role: [*await connect_all(stack, url_a, group[:2]), *await connect_all(stack, url_b, group[2:])]
                       for role, group in people.items()}
            strangers = [*await connect_all(stack, url_a, foreign[:1]), *await connect_all(stack, url_b, foreign[1:])]
            body = {"roles": ["teacher", "tutor"], "name": "engagement.updated", "data": {"id": 7}}
            await post(http, service, f"{url_b}/api/broadcast", body)
            chosen = clients["teacher"] + clients["tutor"]
            for ws in chosen:
                assert await ws.until("broadcast") == {"type": "broadcast", "name": "engagement.updated",
                                                       "data": {"id": 7}}
            await nothing_live(*chosen, *clients["student"], *clients["admin"], *strangers)
