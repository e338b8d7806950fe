"""FastAPI dependencies: the pool, the request's session, and an enqueuer for it.

Install with ``pip install 'workpool[fastapi]'``::

    from workpool.integrations.fastapi import EnqueueDep, PoolDep, SessionDep
    from workpool.integrations.starlette import SessionMiddleware, lifespan

    app = FastAPI(lifespan=lifespan())
    app.add_middleware(SessionMiddleware)

    @app.post("/orders", status_code=202)
    async def place_order(order: Order, enqueue: EnqueueDep) -> dict[str, str]:
        await enqueue(partial(send_confirmation, order.id))
        return {"status": "accepted"}

    @app.get("/stats")
    def stats(pool: PoolDep) -> dict[str, object]:
        return pool.stats().as_dict()

The plain functions behind them (`get_pool`, `get_session`, `get_enqueuer`) live in
`workpool.integrations.starlette` and work with ``Depends(...)`` as they are.
"""

from __future__ import annotations

from typing import Annotated

try:
    from fastapi import Depends
except ImportError as exc:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "workpool.integrations.fastapi needs FastAPI; install it with "
        "pip install 'workpool[fastapi]'"
    ) from exc

from .. import Session, WorkerPool
from .starlette import RequestEnqueuer, get_enqueuer, get_pool, get_session

__all__ = ["EnqueueDep", "PoolDep", "SessionDep"]

#: The app's `WorkerPool` (started by ``lifespan``).
PoolDep = Annotated[WorkerPool, Depends(get_pool)]
#: The request's `Session` (from ``SessionMiddleware``).
SessionDep = Annotated[Session, Depends(get_session)]
#: A `RequestEnqueuer`: ``await enqueue(work, retry=...)`` queues work in the request's
#: session, held for the item until it has run.
EnqueueDep = Annotated[RequestEnqueuer, Depends(get_enqueuer)]
