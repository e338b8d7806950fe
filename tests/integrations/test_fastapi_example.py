"""examples/fastapi_app.py end to end: respond at once, confirm later in the request's session."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import httpx
import pytest
from asgi_lifespan import LifespanManager

from workpool import SessionManager, WorkerPool

if TYPE_CHECKING:
    import svcs

    from workpool import Scope, Session, StopToken


@pytest.mark.anyio
async def test_order_is_confirmed_in_the_background_in_the_request_session(
    fastapi_example: Any,
) -> None:
    """POST /orders answers 202 at once; the confirmation runs later, retried, in its session."""
    ended: list[Session] = []
    gate = anyio.Event()

    class FlakyOutbox(fastapi_example.Outbox):  # type: ignore[misc]
        """The mail server refuses the first attempt."""

        calls = 0

        async def send(self, mail: Any) -> None:
            self.calls += 1
            if self.calls == 1:
                raise ConnectionError("mail server busy")
            await super().send(mail)

    def make_pool(registry: svcs.Registry) -> WorkerPool:
        return WorkerPool(
            consumers=1, registry=registry, session_manager=SessionManager(on_end=ended.append)
        )

    async def blocker(scope: Scope, stopping: StopToken) -> None:
        await gate.wait()

    outbox = FlakyOutbox()
    app = fastapi_example.create_app(outbox=outbox, pool_factory=make_pool)
    with anyio.fail_after(20):
        async with LifespanManager(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
                pool: WorkerPool = app.state.workpool
                await pool.enqueue(blocker)  # keep the only consumer busy for now

                response = await client.post(
                    "/orders", json={"customer": "ada@example.com", "items": ["tea", "scones"]}
                )
                assert response.status_code == 202
                order_id = response.json()["order_id"]
                session_id = response.headers["x-session-id"]
                # the response is done; the confirmation has not run, its session lives on
                assert response.json()["status"] == "accepted"
                assert outbox.sent == []
                session = pool.session_manager.get(session_id)
                assert session is not None
                assert not session.ended

                gate.set()
                await pool.join()

                [mail] = outbox.sent
                assert mail.to == "ada@example.com"  # read from the request's session.data
                assert str(mail.session_id) == session_id
                assert mail.attempt == 2  # the first attempt failed and was retried
                assert session.ended
                assert ended.count(session) == 1
                order = (await client.get(f"/orders/{order_id}")).json()
                assert order["status"] == "confirmed"

                stats = (await client.get("/stats")).json()
                assert (stats["succeeded"], stats["failed"], stats["retried"]) == (2, 0, 1)
                assert stats["queued"] == 0
                assert stats["wait_time"]["count"] == 2
    assert pool.report is not None
    assert pool.report.clean


@pytest.mark.anyio
async def test_invalid_order_is_rejected_and_queues_nothing(fastapi_example: Any) -> None:
    """A bad request body gets 422 and no background work."""
    app = fastapi_example.create_app(pool_factory=lambda registry: WorkerPool(registry=registry))
    with anyio.fail_after(10):
        async with LifespanManager(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
                response = await client.post("/orders", json={"customer": "ada", "items": []})
                assert response.status_code == 422
                assert app.state.workpool.stats().enqueued == 0
                assert (await client.get("/orders/nope")).status_code == 404
