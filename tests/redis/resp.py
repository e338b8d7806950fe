"""A tiny blocking Redis client (RESP2 over a socket) and a private ``redis-server``.

For fixtures and checks made from outside the channel under test: what the stream
holds, cleanup, and stopping a server by its pid. Not for use on an event loop's hot
path (it blocks), which tests tolerate for a command or two.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["RedisServer", "command"]

Reply = str | int | None | list["Reply"]


def command(port: int, *args: str | int | bytes, host: str = "127.0.0.1") -> Reply:
    """Send one command, return its reply (bulk strings decoded as UTF-8)."""
    parts = [a if isinstance(a, bytes) else str(a).encode() for a in args]
    request = b"*%d\r\n" % len(parts) + b"".join(b"$%d\r\n%s\r\n" % (len(p), p) for p in parts)
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(request)
        reader = sock.makefile("rb")
        return _read(reader)


def _read(reader: object) -> Reply:
    line = reader.readline()  # type: ignore[attr-defined]
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return str(rest.decode())
    if kind == b"-":
        raise RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        size = int(rest)
        if size < 0:
            return None
        data = reader.read(size + 2)  # type: ignore[attr-defined]
        return str(data[:-2].decode("utf-8", "replace"))
    if kind == b"*":
        size = int(rest)
        return None if size < 0 else [_read(reader) for _ in range(size)]
    raise RuntimeError(f"unexpected reply {line!r}")


class RedisServer:
    """A ``redis-server`` on *port*, its data (AOF, ``appendfsync always``) in *folder*."""

    def __init__(self, binary: str, port: int, folder: Path) -> None:
        self.binary = binary
        self.port = port
        self.folder = folder
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        options = {
            "port": str(self.port),
            "bind": "127.0.0.1",
            "dir": str(self.folder),
            "appendonly": "yes",
            "appendfsync": "always",
            "save": "",
            "daemonize": "no",
        }
        arguments = [self.binary]
        for name, value in options.items():
            arguments += (f"--{name}", value)
        self.process = subprocess.Popen(
            arguments,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                if command(self.port, "PING") == "PONG":
                    return
            except (OSError, RuntimeError):
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} did not start")
            time.sleep(0.02)

    def kill(self) -> None:
        """``kill -9`` by pid, and reap it."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
