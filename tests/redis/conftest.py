"""Redis fixtures: the server on 127.0.0.1:6379, a queue of its own per test, and a
private ``redis-server`` for the tests that stop it.

Without a server the tests here skip with the reason, except under ``CI=true``, where
a missing server fails them (CI can never pass by skipping them).
"""

from __future__ import annotations

import os
import shutil
import socket
import uuid
from typing import TYPE_CHECKING

import pytest

from tests.redis.helpers import PORT
from tests.redis.resp import RedisServer, command

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

HOST = "127.0.0.1"


def _reachable() -> str | None:
    try:
        reply = command(PORT, "PING")
    except OSError as exc:
        return f"no Redis server on {HOST}:{PORT} ({exc})"
    return None if reply == "PONG" else f"{HOST}:{PORT} answered PING with {reply!r}"


@pytest.fixture(scope="session")
def redis_server() -> str:
    """The shared server's URL; skip (fail under CI=true) when it is not there."""
    problem = _reachable()
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the Redis tests cannot run: {problem}")
        pytest.skip(f"Redis tests need a server: {problem}")
    return f"redis://{HOST}:{PORT}/0"


@pytest.fixture
def queue(redis_server: str) -> Iterator[str]:
    """A queue name of this test's own; its keys are deleted afterwards."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    delete_queue(PORT, name)


def delete_queue(port: int, queue: str) -> None:
    cursor = "0"
    while True:
        reply = command(port, "SCAN", cursor, "MATCH", f"workpool:{{{queue}}}:*", "COUNT", "1000")
        assert isinstance(reply, list)
        cursor, keys = str(reply[0]), reply[1]
        assert isinstance(keys, list)
        if keys:
            command(port, "DEL", *(str(key) for key in keys))
        if cursor == "0":
            return


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def private_redis(tmp_path: Path, redis_server: str) -> Iterator[RedisServer]:
    """A ``redis-server`` of this test's own (AOF, ``appendfsync always``) on a free
    loopback port in a temporary directory, stopped by its pid afterwards."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true and redis-server is not on PATH")
        pytest.skip("redis-server is not on PATH")
    server = RedisServer(binary, _free_port(), tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()
