"""The rules of rooms and messages, shared by REST and /ws so both behave the same.

Each public coroutine runs one transaction through `node.database`, raises
`ApiError`s for anything a client did wrong, returns wire shapes (PROTOCOL.md),
and calls `node.notify_committed` after committing a stored room event.
"""
