"""Property-based fuzzing of client frames over one real WebSocket per frame type.

Hypothesis draws frames of each type, well-formed or with one field broken (wrong
type, out-of-range integer, odd Unicode, a bad `ref`), with extra keys thrown in.
Each is sent over the same connection, then a ping: every frame must get exactly the
answer its type promises (a well-formed one its reply or a rules error, a malformed
one an `error` with `validation_error`/`unknown_type` echoing a usable `ref`), and the
connection must never close. Hypothesis runs in a worker thread and hands each frame
to the test's Trio loop; examples are derandomized, so CI sees the same frames every time.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from trio_websocket import ConnectionClosed

from roomcast.http.ws import session as ws_session
from tests.chat_helpers import make_group, send
from tests.ws_client import WsClient, ws_connect

MAX_ID = 2**63 - 1
ABSENT_ROOMS = st.integers(10**9, MAX_ID)  # in range, but no such room
EXAMPLES_PER_TYPE = 200
ANSWERS = {"error", "pong", "subscribed", "unsubscribed", "ack"}  # replies to a client's frame, not room events
FIELDS = {"type", "ref", "room", "since", "body", "reply_to", "client_id", "attachments", "state", "seq"}
KNOWN_TYPES = {"subscribe", "unsubscribe", "send", "typing", "read", "ping"}
MISSING = object()  # a field left out of the frame
# How a case is made, and how often: well-formed and one field broken are the bulk.
MODES = ["well-formed"] * 4 + ["broken field"] * 4 + ["bad ref", "unknown type"]


@pytest.fixture
def ws_settings() -> dict[str, Any]:
    return {"typing_burst": 10**6, "typing_rate_per_s": 10.0**6}


@dataclass(frozen=True)
class Case:
    """A frame to send and what must answer it: a reply type (None: no reply), error codes, the ref echoed."""

    text: str
    reply: str | None
    codes: frozenset[str] = frozenset()
    ref: Any = None  # MISSING: not checked


# ----------------------------------------------------------------------------- strategies

lone_surrogates = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
odd_text = st.text(st.characters(codec=None), max_size=20) | st.builds(
    lambda a, s, b: a + s + b, st.text(max_size=5), lone_surrogates, st.text(max_size=5))
big_ints = st.integers(min_value=2**63) | st.integers(max_value=-(2**63) - 1)
json_scalars = (st.none() | st.booleans() | st.integers() | big_ints | st.floats() | st.text(max_size=20)
                | odd_text)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)
extra_keys = st.dictionaries(st.text(max_size=8) | odd_text, json_values, max_size=3).map(
    lambda extra: {key: value for key, value in extra.items() if key not in FIELDS})
valid_refs = st.just(MISSING) | st.text(max_size=256)
bad_refs = (st.none() | st.integers() | st.floats() | st.booleans() | st.lists(st.text(max_size=3), max_size=2)
            | st.text(min_size=257, max_size=300) | st.builds(lambda a, s: a + s, st.text(max_size=5), lone_surrogates))
not_ints = st.none() | st.booleans() | st.floats() | st.text(max_size=10) | st.lists(st.integers(), max_size=2) \
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)


def bad_ints(low: int, *, optional: bool) -> st.SearchStrategy[Any]:
    """What an integer field from `low` to 2^63-1 must refuse (null is fine where it is optional)."""
    wrong = not_ints.filter(lambda value: value is not None) if optional else not_ints | st.just(MISSING)
    return wrong | st.integers(max_value=low - 1) | st.integers(min_value=MAX_ID + 1)


def not_type(*allowed: type) -> st.SearchStrategy[Any]:
    """JSON values other than null and the `allowed` types."""
    return json_values.filter(lambda value: value is not None and not isinstance(value, allowed))


def text_without_nul(min_size: int, max_size: int) -> st.SearchStrategy[str]:
    return st.text(st.characters(exclude_characters="\x00"), min_size=min_size, max_size=max_size)


# Text no database can store as sent: a lone surrogate (no UTF-8 form) or a NUL (not in PostgreSQL text).
unstorable_text = st.builds(lambda a, bad, b: a + bad + b, st.text(max_size=5), lone_surrogates | st.just("\x00"),
                            st.text(max_size=5))
good_bodies = text_without_nul(1, 300).filter(lambda body: body.strip())
good_client_ids = st.just(MISSING) | st.none() | text_without_nul(1, 64)


def well_formed(kind: str, room: int, message: int) -> st.SearchStrategy[tuple[dict[str, Any], str | None, set[str]]]:
    """(fields, reply type, error codes) for frames every check of the protocol accepts."""
    missing_room = ABSENT_ROOMS.map(lambda room_id: ({"room": room_id}, "error", {"not_found"}))
    if kind == "subscribe":
        return st.tuples(st.just({"room": room}), st.just("subscribed"), st.just(set())) | missing_room
    if kind == "unsubscribe":
        return st.builds(lambda room_id: ({"room": room_id}, "unsubscribed", set()), st.just(room) | ABSENT_ROOMS)
    if kind == "send":
        fields = st.fixed_dictionaries({"room": st.just(room), "body": good_bodies, "client_id": good_client_ids,
                                        "reply_to": st.sampled_from([MISSING, None, message]),
                                        "attachments": st.sampled_from([MISSING, None, []])})
        return st.tuples(fields, st.just("ack"), st.just(set())) | missing_room.map(
            lambda case: ({**case[0], "body": "hi"}, *case[1:]))
    if kind == "typing":
        return st.tuples(st.just({"room": room}), st.none(), st.just(set())) | missing_room
    if kind == "read":
        return st.tuples(st.just({"room": room}), st.none(), st.just(set())) | missing_room
    return st.just(({}, "pong", set()))


def optional_fields(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    """Fields a well-formed frame of `kind` has besides those `well_formed` draws."""
    if kind == "subscribe":
        return st.fixed_dictionaries({"since": st.sampled_from([MISSING, None]) | st.integers(0, MAX_ID)})
    if kind == "typing":
        return st.fixed_dictionaries({"state": st.booleans()})
    if kind == "read":
        return st.fixed_dictionaries({"seq": st.integers(0, MAX_ID)})
    return st.just({})


def broken_field(kind: str) -> st.SearchStrategy[tuple[str, Any]]:
    """(field, value) that must make a frame of `kind` a `validation_error`."""
    room = st.tuples(st.just("room"), bad_ints(1, optional=False))
    by_kind: dict[str, list[st.SearchStrategy[tuple[str, Any]]]] = {
        "subscribe": [room, st.tuples(st.just("since"), bad_ints(0, optional=True))],
        "unsubscribe": [room],
        "send": [room, st.tuples(st.just("reply_to"), bad_ints(1, optional=True)),
                 st.tuples(st.just("body"), not_type(str) | unstorable_text),
                 st.tuples(st.just("client_id"), not_type(str) | unstorable_text | st.just("")
                           | text_without_nul(65, 80)),
                 st.tuples(st.just("attachments"), not_type(list)),
                 st.tuples(st.just("attachments"), st.builds(lambda good, bad: [*good, bad],
                                                             st.lists(st.integers(1, MAX_ID), max_size=2),
                                                             bad_ints(1, optional=True)))],
        "typing": [room, st.tuples(st.just("state"), json_values.filter(lambda v: not isinstance(v, bool))
                                   | st.just(MISSING))],
        "read": [room, st.tuples(st.just("seq"), bad_ints(0, optional=False))],
        "ping": [],
    }
    common = [st.tuples(st.just("type"), not_type(str) | st.just(None) | st.just(MISSING))]
    return st.one_of(*by_kind[kind], *common)


def frame_text(fields: dict[str, Any]) -> str:
    # ensure_ascii: lone surrogates travel as \ud800 escapes, as a client's JSON encoder would send them.
    return json.dumps({key: value for key, value in fields.items() if value is not MISSING})


def cases(kind: str, room: int, message: int) -> st.SearchStrategy[Case]:
    @st.composite
    def build(draw: Callable[..., Any]) -> Case:
        base, reply, codes = draw(well_formed(kind, room, message))
        fields = {**draw(extra_keys), "type": kind, **base, **draw(optional_fields(kind))}
        ref = draw(valid_refs)
        fields["ref"] = ref
        echoed = None if ref is MISSING else ref
        mode = draw(st.sampled_from(MODES))
        if mode == "broken field" and kind != "ping":
            name, value = draw(broken_field(kind))
            fields[name] = value
            return Case(frame_text(fields), "error", frozenset({"validation_error"}), echoed)
        if mode == "bad ref":
            fields["ref"] = draw(bad_refs)
            return Case(frame_text(fields), "error", frozenset({"validation_error"}), None)
        if mode == "unknown type":
            fields["type"] = draw(st.text(max_size=30).filter(lambda name: name not in KNOWN_TYPES))
            return Case(frame_text(fields), "error", frozenset({"unknown_type"}), echoed)
        return Case(frame_text(fields), reply, frozenset(codes), echoed)

    return build()


garbage = (st.text(max_size=200)
           | json_values.filter(lambda value: not (isinstance(value, dict) and "type" in value)).map(json.dumps)).map(
    lambda text: Case(text, "error", frozenset({"malformed_json", "validation_error", "unknown_type"}), MISSING))


# ----------------------------------------------------------------------------- the test


async def exchange(ws: WsClient, case: Case, sync_ref: str) -> list[dict[str, Any]]:
    """Send the case's frame, then a ping; the answers to the frame (room events left out)."""
    await ws.ws.send_message(case.text)
    await ws.send({"type": "ping", "ref": sync_ref})
    answers: list[dict[str, Any]] = []
    synced = False
    # A send is answered after its commit, which may come after the ping's pong.
    while not synced or (case.reply is not None and not answers):
        event = await ws.event()
        if event["type"] == "pong" and event.get("ref") == sync_ref:
            synced = True
        elif event["type"] in ANSWERS:
            answers.append(event)
    return answers


def check(case: Case, answers: list[dict[str, Any]]) -> None:
    if case.reply is None:
        assert answers == [], (case, answers)
        return
    assert len(answers) == 1, (case, answers)
    answer = answers[0]
    assert answer["type"] == case.reply, (case, answer)
    if case.reply == "error":
        assert answer["code"] in case.codes, (case, answer)
    if case.ref is not MISSING:
        assert answer.get("ref") == case.ref, (case, answer)


@pytest.mark.parametrize("kind", [*sorted(KNOWN_TYPES), "garbage"])
async def test_fuzzed_frames_are_answered_and_never_close_the_connection(
        live_server: str, client: Any, users: Any, monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    monkeypatch.setattr(ws_session, "_ABUSE_LIMIT", 10**9)  # most frames here are bad on purpose
    alice = await users.create("member")
    room = (await make_group(client, alice))["id"]
    message = (await send(client, alice, room, "to reply to"))["id"]
    strategy = garbage if kind == "garbage" else cases(kind, room, message)
    sync_refs = (f"sync-{n}" for n in itertools.count())
    closed: list[tuple[Case, Any]] = []  # the frame after which the connection closed, and how

    async with ws_connect(live_server, alice.token) as ws:
        async def one(case: Case) -> None:
            assert not closed, f"the connection closed ({closed[0][1]}) after {closed[0][0]}"
            try:
                with trio.fail_after(10):
                    answers = await exchange(ws, case, next(sync_refs))
            except ConnectionClosed as exc:
                closed.append((case, exc.reason))
                raise AssertionError(f"the connection closed ({exc.reason}) after {case}") from None
            check(case, answers)

        @settings(max_examples=EXAMPLES_PER_TYPE, deadline=None, derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                         HealthCheck.data_too_large, HealthCheck.large_base_example])
        @given(strategy)
        def fuzz(case: Case) -> None:
            trio.from_thread.run(one, case)

        await trio.to_thread.run_sync(fuzz)
