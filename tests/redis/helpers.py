"""What the Redis tests look at from outside the channel: the stream and its group."""

from __future__ import annotations

from tests.redis import jobs
from tests.redis.resp import command
from workpool._task import resolve_tasks

PORT = 6379
TASKS = resolve_tasks([jobs])


def stream_length(queue: str, port: int = PORT) -> int:
    """Entries in the work stream (queued or claimed: acknowledged ones are deleted)."""
    reply = command(port, "XLEN", f"workpool:{{{queue}}}:stream")
    assert isinstance(reply, int)
    return reply


def pending(queue: str, port: int = PORT) -> int:
    """Entries claimed and not acknowledged."""
    reply = command(port, "XPENDING", f"workpool:{{{queue}}}:stream", "workpool")
    assert isinstance(reply, list)
    count = reply[0]
    assert isinstance(count, int)
    return count
