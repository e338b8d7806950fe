"""Place an order, respond at once, send the confirmation in the background.

The request handler stores the order, queues the confirmation email with the
request's session and a retry policy, and answers 202 at once; a consumer sends
the email later, in the same session (it reads what the request put in
``session.data``), retrying while the mail server fails. ``GET /stats`` shows the
pool's counters.

Run it (``pip install 'workpool[fastapi]' uvicorn``)::

    uvicorn examples.fastapi_app:app
    curl -X POST localhost:8000/orders -H 'content-type: application/json' \\
         -d '{"customer": "ada@example.com", "items": ["tea", "scones"]}'
    curl localhost:8000/stats

Stop it with Ctrl-C: the lifespan drains the pool (``WORKPOOL_SHUTDOWN_DEADLINE``).
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints' annotations.
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import svcs
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from workpool import RetryPolicy, Scope, StopToken, WorkerPool, retry_policy
from workpool.integrations.fastapi import EnqueueDep, PoolDep, SessionDep
from workpool.integrations.starlette import SessionMiddleware, lifespan

logger = logging.getLogger("shop")


class OrderIn(BaseModel):
    customer: str = Field(min_length=3, description="the customer's email address")
    items: list[str] = Field(min_length=1)


@dataclass
class Order:
    id: str
    customer: str
    items: list[str]
    status: str = "accepted"


@dataclass
class SentMail:
    to: str
    subject: str
    session_id: uuid.UUID
    attempt: int


@dataclass
class Outbox:
    """A stand-in for an SMTP client or a mail API: it keeps what it "sent"."""

    sent: list[SentMail] = field(default_factory=list)

    async def send(self, mail: SentMail) -> None:
        self.sent.append(mail)
        logger.info("mail to %s: %s", mail.to, mail.subject)


@dataclass
class Shop:
    """The app's state: orders by id (a database in real life)."""

    orders: dict[str, Order] = field(default_factory=dict)


# Mail servers fail now and then: 5 attempts, 0.2 s, 0.4 s, 0.8 s... apart.
CONFIRMATION_RETRY = RetryPolicy.exponential(5, initial=0.2, maximum=5.0, jitter=0.1)


@retry_policy(CONFIRMATION_RETRY)
async def send_confirmation(order_id: str, scope: Scope, stopping: StopToken) -> None:
    """Background work: email the customer, in the session of the request that ordered."""
    shop = await scope.aget(Shop)
    outbox = await scope.aget(Outbox)
    order = shop.orders[order_id]
    placed_by = scope.session.data["customer"]  # what the request left in the session
    await outbox.send(
        SentMail(
            to=placed_by,
            subject=f"Order {order.id}: {', '.join(order.items)}",
            session_id=scope.session.id,
            attempt=scope.attempt,
        )
    )
    order.status = "confirmed"


def create_app(
    *,
    outbox: Outbox | None = None,
    pool_factory: Callable[[svcs.Registry], WorkerPool] | None = None,
) -> FastAPI:
    """The shop app; tests pass their own outbox and pool factory."""
    shop = Shop()
    mail = outbox if outbox is not None else Outbox()
    registry = svcs.Registry()
    registry.register_value(Shop, shop)
    registry.register_value(Outbox, mail)

    def make_pool() -> WorkerPool:
        if pool_factory is not None:
            return pool_factory(registry)
        return WorkerPool.from_settings(registry=registry)

    app = FastAPI(title="shop", lifespan=lifespan(make_pool))
    app.add_middleware(SessionMiddleware, session_header="x-session-id")
    app.state.shop = shop
    app.state.outbox = mail

    @app.post("/orders", status_code=202)
    async def place_order(
        order_in: OrderIn, session: SessionDep, enqueue: EnqueueDep
    ) -> dict[str, str]:
        order = Order(id=uuid.uuid4().hex[:12], customer=order_in.customer, items=order_in.items)
        shop.orders[order.id] = order
        session.data["customer"] = order.customer
        # Respond now; the email goes out in the background, in this session.
        await enqueue(partial(send_confirmation, order.id), name="send_confirmation")
        return {"order_id": order.id, "status": order.status}

    @app.get("/orders/{order_id}")
    async def get_order(order_id: str) -> dict[str, Any]:
        order = shop.orders.get(order_id)
        if order is None:
            raise HTTPException(status_code=404, detail="no such order")
        return {"order_id": order.id, "status": order.status, "items": order.items}

    @app.get("/stats")
    async def stats(pool: PoolDep) -> dict[str, object]:
        return pool.stats().as_dict()

    return app


app = create_app()
