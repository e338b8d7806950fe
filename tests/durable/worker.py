"""A worker process for the durable fault tests: ``python -m tests.durable.worker``.

Runs a `WorkerPool` on a `SqliteChannel` with the tasks of `tests.durable.tasks`
until SIGTERM (a drain within ``--deadline``), printing ``ready`` once the pool has
started; then writes a JSON report (its stats, and the ids of the items it released)
to ``--report``. Run it from the project root, with ``DURABLE_RUNS`` set.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

import anyio

from tests.durable import tasks
from workpool import SqliteChannel, WorkerPool, run_until_signalled


async def announce(pool: WorkerPool) -> None:
    print("ready", flush=True)
    await anyio.sleep_forever()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", required=True)
    parser.add_argument("--backend", default="asyncio")
    parser.add_argument("--consumers", type=int, default=2)
    parser.add_argument("--lease", type=float, default=30.0)
    parser.add_argument("--max-deliveries", type=int, default=5)
    parser.add_argument("--deadline", type=float, default=5.0)
    parser.add_argument("--report")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    channel = SqliteChannel(args.db, lease=args.lease, max_deliveries=args.max_deliveries)
    pool = WorkerPool(
        channel=channel,
        tasks=[tasks],
        consumers=args.consumers,
        shutdown_deadline=args.deadline,
    )
    code = run_until_signalled(pool, announce, backend=args.backend)
    if args.report:
        report = pool.report
        out: dict[str, Any] = {
            "stats": pool.stats().as_dict(),
            "released": [str(item.id) for item in (report.released if report else ())],
            "exit": code,
        }
        Path(args.report).write_text(json.dumps(out))
    return code


if __name__ == "__main__":
    sys.exit(main())
