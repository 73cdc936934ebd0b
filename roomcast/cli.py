"""`run.py` commands: serve (default), migrate, create-user, token, users, backup, restore.

Every command reads the settings once (data_dir made absolute there, config.py) and
checks what it needs before doing anything (preflight.py): a problem is one line on
stderr that says how to fix it, and a non-zero exit code.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path

import trio
from sqlalchemy.orm import Session

from .config import ROLES, Settings, SettingsError, load_settings
from .errors import ApiError, StartupError
from .identity.passwords import hash_password_sync
from .identity.tokens import TokenCodec, TokenError
from .logs import configure_logging
from .node import Node, open_node
from .preflight import check_all, check_tokens
from .server import bind_sockets, run_server
from .services import admin_users
from .services.text import new_username_problem
from .storage import backup as sqlite_backup
from .storage.database import create_database_engine
from .storage.migrate import upgrade
from .storage.users import create_user, find_user
from .wire import user_to_wire


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="run.py", description="roomcast: a realtime chat server on Trio.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser("serve", help="serve REST, /ws and the web client (the default)")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to bind; 0 picks a free one (default 8000)")

    commands.add_parser("migrate", help="bring the database schema up to date")

    create = commands.add_parser("create-user", help="create a user and print it as JSON")
    create.add_argument("username")
    create.add_argument("--password", help="omit for a user who signs in only with minted tokens")
    create.add_argument("--role", default="member", choices=ROLES)
    create.add_argument("--tenant", help="tenant (default: the server's default tenant)")
    create.add_argument("--display-name")

    token = commands.add_parser("token", help="print an access token for a user")
    token.add_argument("username")
    token.add_argument("--tenant", help="tenant (default: the server's default tenant)")
    token.add_argument("--ttl", type=int, help="lifetime in seconds (default: token_ttl_s)")

    _add_backup_commands(commands)
    _users_parser(commands)

    commands.add_parser("test", help="run the whole test suite (extra arguments go to pytest)")
    return parser


def _users_parser(commands: argparse._SubParsersAction) -> None:
    users = commands.add_parser("users", help="the admin's tools: list, disable, enable, revoke, set-password")
    actions = users.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="list users as JSON lines, by id")
    listing.add_argument("--query", "-q", help="a part of the username or display name (any case)")
    listing.add_argument("--role", choices=ROLES)
    state = listing.add_mutually_exclusive_group()
    state.add_argument("--active", dest="active", action="store_const", const=True, help="only active users")
    state.add_argument("--disabled", dest="active", action="store_const", const=False, help="only disabled users")
    listing.add_argument("--limit", type=int, default=1000, help="at most this many (default 1000)")
    listing.add_argument("--tenant", help="tenant (default: the server's default tenant)")
    helps = {
        "disable": "refuse the user's logins and tokens; its open sessions close with 1008",
        "enable": "let a disabled user log in again",
        "revoke": "refuse every token issued to the user until now; its open sessions close with 1008",
        "set-password": "set the user's password (and revoke its tokens unless --keep-tokens)",
    }
    for action, text in helps.items():
        parser = actions.add_parser(action, help=text)
        parser.add_argument("username")
        parser.add_argument("--tenant", help="tenant (default: the server's default tenant)")
        if action == "set-password":
            parser.add_argument("--password", help="the new password (asked for when omitted)")
            parser.add_argument("--keep-tokens", action="store_true", help="do not revoke the user's tokens")


def _migrate(settings: Settings) -> None:
    upgrade(create_database_engine(settings.resolved_database_url))
    check_tokens(settings)  # makes data_dir's generated secret now, not in a race between nodes starting


def _create_user(settings: Settings, args: argparse.Namespace) -> None:
    if (problem := new_username_problem(args.username)) is not None:
        raise SystemExit(f"run.py create-user: the username {problem}")
    engine = create_database_engine(settings.resolved_database_url)
    upgrade(engine)


    with Session(engine, expire_on_commit=False) as session, session.begin():
        user = create_user(
            session,
            tenant=args.tenant or settings.default_tenant,
            username=args.username,
            role=args.role,
            display_name=args.display_name,
            password_hash=hash_password_sync(args.password) if args.password else None,
        )
    print(json.dumps(user_to_wire(user), ensure_ascii=False))


def _token(settings: Settings, args: argparse.Namespace) -> None:
    engine = create_database_engine(settings.resolved_database_url)
    upgrade(engine)


    with Session(engine) as session:
        user = find_user(session, args.tenant or settings.default_tenant, args.username)
    if user is None:
        raise SystemExit(f"run.py token: no user {args.username!r}")
    print(TokenCodec.from_settings(settings).mint(user.id, args.ttl))


# ---------------------------------------------------------------- serve


def _serve(settings: Settings) -> None:
    """Bind the port and check data_dir, the database and the keys, then start (migrations, actors)."""
    sockets = bind_sockets(settings.host, settings.port)
    try:
        check_all(settings)
        check_tokens(settings)
    except StartupError:
        for sock in sockets:
            sock.close()
        raise
    configure_logging(settings.log_format, settings.log_level)

    def on_listening(line: str) -> None:
        print(line, flush=True)
        print(f"data_dir {settings.data_dir}", flush=True)

    database = sqlite_backup.sqlite_path(settings.resolved_database_url)
    with sqlite_backup.serving(database) if database else nullcontext():
        trio.run(run_server, settings, on_listening, sockets)


# ---------------------------------------------------------------- backup and restore

_PG_ADVICE = (
    "the database is PostgreSQL: back it up with its own tools, e.g.\n"
    "  pg_dump --format=custom --file=roomcast.dump \"$DATABASE\"       (online, consistent)\n"
    "  pg_restore --clean --if-exists --dbname=\"$DATABASE\" roomcast.dump   (stop every node first)\n"
    "where $DATABASE is database_url without the +psycopg driver suffix; see docs/operations.md"
)


def _add_backup_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backup = commands.add_parser(
        "backup", help="copy the SQLite database to PATH while the server runs (PostgreSQL: prints pg_dump advice)")
    backup.add_argument("path", type=Path, help="a new file, or a folder to write roomcast-<UTC time>.db in")
    restore = commands.add_parser(
        "restore", help="replace the SQLite database with a backup (stop the server first)")
    restore.add_argument("path", type=Path, help="a file written by run.py backup")


def _backup_or_restore(settings: Settings, command: str, path: Path) -> int:
    database = sqlite_backup.sqlite_path(settings.resolved_database_url)
    if database is None:
        print(f"run.py {command}: {_PG_ADVICE}", file=sys.stderr)
        return 2
    try:
        if command == "backup":
            written = sqlite_backup.backup(database, path.resolve())
            print(f"backed up {database} to {written}")
        else:
            sqlite_backup.restore(path.resolve(), database)
            print(f"restored {database} from {path.resolve()}; `run.py serve` migrates it if it is older")
    except sqlite_backup.BackupError as exc:
        print(f"run.py {command}: {exc}", file=sys.stderr)
        return 1
    return 0


# ---------------------------------------------------------------- dispatch
async def _users(settings: Settings, args: argparse.Namespace, password: str | None) -> None:
    """`run.py users ...`: the admin service on a node of its own, so that with Redis every serving
    node hears of a change at once (without Redis, each closes the sessions within heartbeat_s)."""
    tenant = args.tenant or settings.default_tenant
    refused: ApiError | None = None
    async with open_node(settings) as node:
        try:
            await _users_action(node, tenant, args, password)
        except ApiError as exc:  # raised out here, not through the node's nursery (as a group)
            refused = exc
    if refused is not None:
        raise refused


async def _users_action(node: Node, tenant: str, args: argparse.Namespace, password: str | None) -> None:
    if args.action == "list":
        after = 0
        shown = 0
        while shown < args.limit:
            page, next_after = await admin_users.list_users(
                node, tenant, query=args.query, role=args.role, active=args.active, after_id=after,
                limit=min(500, args.limit - shown))
            for user in page:
                print(json.dumps(user, ensure_ascii=False))
            shown += len(page)
            if next_after is None:
                break
            after = next_after
        return
    user_id = await admin_users.find_user_id(node, tenant, args.username)
    if args.action == "disable":
        user = await admin_users.disable_user(node, tenant, user_id)
    elif args.action == "enable":
        user = await admin_users.enable_user(node, tenant, user_id)
    elif args.action == "revoke":
        user = await admin_users.revoke_tokens(node, tenant, user_id)
    else:
        assert password is not None
        user = await admin_users.reset_password(node, tenant, user_id, password, revoke=not args.keep_tokens)
    print(json.dumps(user, ensure_ascii=False))


def _new_password(args: argparse.Namespace) -> str:
    password: str | None = args.password
    if password is None:
        password = getpass.getpass("new password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    if not 8 <= len(password) <= 1024:
        raise SystemExit("run.py users set-password: a password has 8 to 1024 characters")
    return password


def main(argv: Sequence[str]) -> int:
    argv = list(argv)
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help")):
        argv.insert(0, "serve")  # `run.py --port 0` means `run.py serve --port 0`
    args = _parser().parse_args(argv)
    command = args.command
    flags = {"host": getattr(args, "host", None), "port": getattr(args, "port", None)}
    try:
        settings = load_settings(flags)
    except SettingsError as exc:
        print(f"run.py: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2
    try:
        if command not in ("serve", "backup", "restore"):
            check_all(settings)  # the other commands work on the database: one clear line if they cannot
        if command == "serve":
            _serve(settings)
        elif command == "migrate":
            _migrate(settings)
            print("database schema is up to date")
        elif command == "create-user":
            _create_user(settings, args)
        elif command == "token":
            _token(settings, args)
        elif command == "users":
            password = _new_password(args) if args.action == "set-password" else None
            trio.run(_users, settings, args, password)
        elif command in ("backup", "restore"):
            return _backup_or_restore(settings, command, args.path)
    except StartupError as exc:
        print(f"run.py {command}: {exc}", file=sys.stderr)
        return 1
    except (ApiError, TokenError) as exc:
        print(f"run.py {command}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0
