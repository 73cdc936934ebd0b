"""Every REST operation fuzzed from the server's own OpenAPI document (schemathesis, on hypothesis).

For each operation, requests built from its documented parameters and body, valid ones and
malformed ones, go over real sockets to a live node, as an admin and as a member of a group
with a message in it. Every answer must be one the document lists for that operation, with the
content type and the body shape it documents, and none may be a 5xx. Examples are drawn
deterministically and bounded per operation, so a run takes seconds and a failure reproduces.

Left out: the admin operations that end the caller's own tokens or password should the fuzzer
pick its id (each has tests of its own in test_admin_users.py).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
import trio
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.chat_helpers import make_group, send

EXAMPLES_PER_OPERATION = 8
CHECKS = (not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance)
ENDS_THE_CALLERS_ACCESS = ("/revoke-tokens", "/disable", "/password")


def _fuzz(spec: dict[str, Any], base_url: str, token: str, mode: GenerationMode) -> int:
    """Fuzz every operation of `spec` (in a worker thread: the calls block); the requests made."""
    schema = schemathesis.openapi.from_dict(spec)
    made = 0
    for found in schema.get_all_operations():
        operation = found.ok()
        if operation.path.endswith(ENDS_THE_CALLERS_ACCESS):
            continue

        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def call(case: Any) -> None:
            nonlocal made
            made += 1
            response = case.call(base_url=base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
            case.validate_response(response, checks=CHECKS)

        call()
    return made


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "malformed"])
async def test_every_operation_answers_as_documented(client: Any, live_server: str, users: Any,
                                                     mode: GenerationMode) -> None:
    admin, member = await users.create("admin"), await users.create("member")
    room = (await make_group(client, admin, [member], name="fuzzed"))["id"]
    await send(client, member, room, "something to find")
    spec = await (await client.get("/openapi.json")).get_json()
    for caller in (admin, member):
        made = await trio.to_thread.run_sync(_fuzz, spec, live_server, caller.token, mode)
        assert made >= len(spec["paths"])  # every operation got requests
    # The node is still whole: ready, and the room still readable (the fuzzer may have emptied it).
    async with httpx.AsyncClient(base_url=live_server, timeout=30) as http:
        assert (await http.get("/readyz")).status_code == 200
        found = await http.get(f"/api/rooms/{room}/messages", headers=admin.headers)
    assert found.status_code == 200
