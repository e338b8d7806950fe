"""Scoped services and svcs registries that keep track of what they made and closed."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import TYPE_CHECKING, Any

import svcs

if TYPE_CHECKING:
    from collections.abc import Iterator

    from workpool import ServiceContainer

__all__ = [
    "Connection",
    "ConnectionTracker",
    "CountingContainer",
    "CountingFactory",
    "Resource",
    "resource_registry",
]


class Connection:
    """A scoped service whose factory is a generator with a cleanup."""

    def __init__(self) -> None:
        self.closed = False


class ConnectionTracker:
    """Makes registries of `Connection` and records every connection made."""

    def __init__(self) -> None:
        self.created: list[Connection] = []

    def registry(self) -> svcs.Registry:
        """A registry whose `Connection` factory records, yields, then closes."""

        def connect() -> Iterator[Connection]:
            conn = Connection()
            self.created.append(conn)
            yield conn
            conn.closed = True

        registry = svcs.Registry()
        registry.register_factory(Connection, connect)
        return registry


class CountingFactory:
    """A scope factory over an svcs registry that counts the containers it makes."""

    def __init__(self, registry: svcs.Registry) -> None:
        self.registry = registry
        self.made = 0

    def __call__(self) -> ServiceContainer:
        self.made += 1
        return svcs.Container(self.registry)


class CountingContainer:
    """An svcs container that counts how often it is closed."""

    def __init__(self, registry: svcs.Registry, made: list[CountingContainer]) -> None:
        self._container = svcs.Container(registry)
        self.closes = 0
        made.append(self)

    def get(self, svc_type: Any, /) -> Any:
        return self._container.get(svc_type)

    async def aget(self, svc_type: Any, /) -> Any:
        return await self._container.aget(svc_type)

    async def aclose(self) -> None:
        self.closes += 1
        await self._container.aclose()


class Resource:
    """A scoped service whose opening and cleanup are counted by id."""

    ids = itertools.count()

    def __init__(self) -> None:
        self.id = next(self.ids)


def resource_registry() -> tuple[svcs.Registry, Counter[int], Counter[int]]:
    """A registry of `Resource`, with counts of resources opened and closed."""
    opened: Counter[int] = Counter()
    closed: Counter[int] = Counter()

    def make_resource() -> Iterator[Resource]:
        resource = Resource()
        opened[resource.id] += 1
        yield resource
        closed[resource.id] += 1

    registry = svcs.Registry()
    registry.register_factory(Resource, make_resource)
    return registry, opened, closed
