"""Micro-benchmark of the task codec: bind, encode_call, decode_call (microseconds).

Not a pytest suite (``make bench`` does not run it): run it on its own::

    .venv/bin/python bench/tasks_codec.py            # about 20 s
    .venv/bin/python bench/tasks_codec.py --quick    # about 3 s

Each figure is the median over repeats of the mean time per call in a tight loop,
on warm caches (the validator of each task is built before timing), in CPU time of
this process (``time.process_time``), so that other load on a shared machine shows
less (``--wall`` for wall-clock time). The stdlib
``json.dumps`` / ``json.loads`` of the same small payload is shown for reference.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import time
import timeit
import uuid
from typing import Any

import pydantic

from workpool import Scope, StopToken, task
from workpool._task import decode_call, encode_call

LIMIT = 1_048_576


class Customer(pydantic.BaseModel):
    name: str
    email: str
    vip: bool = False


@task
async def send_receipt(scope: Scope, stopping: StopToken, order_id: int, email: str) -> None:
    """The typical small call: an int and a short str."""


@task
async def follow_up(
    scope: Scope, stopping: StopToken, when: datetime.datetime, ref: uuid.UUID, customer: Customer
) -> None:
    """A richer call: a datetime, a UUID and a small pydantic model."""


def per_call_us(func: Any, number: int, repeat: int, timer: Any) -> float:
    times = timeit.repeat(func, number=number, repeat=repeat, timer=timer)
    return statistics.median(times) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer loops (noisier)")
    parser.add_argument("--wall", action="store_true", help="wall-clock time, not CPU time")
    options = parser.parse_args()
    timer = time.perf_counter if options.wall else time.process_time
    number, repeat = (5_000, 5) if options.quick else (50_000, 9)

    tasks = {t.name: t for t in (send_receipt, follow_up)}
    small = send_receipt.bind(42, "a@example.com")
    rich = follow_up.bind(
        datetime.datetime(2026, 12, 1, 10, 30, tzinfo=datetime.UTC),
        uuid.UUID("8c4b2c0e-54c5-4d43-9d7b-1a2f0f3c9e11"),
        Customer(name="Ada Lovelace", email="ada@example.com", vip=True),
    )
    small_payload = encode_call(small, max_bytes=LIMIT)
    rich_payload = encode_call(rich, max_bytes=LIMIT)
    assert decode_call(tasks, small.name, small_payload) == small
    assert decode_call(tasks, rich.name, rich_payload) == rich
    small_dict = {"args": [42, "a@example.com"], "kwargs": {}}
    small_json = json.dumps(small_dict, separators=(",", ":"))

    rows = [
        ("small: bind(42, 'a@example.com')", lambda: send_receipt.bind(42, "a@example.com")),
        ("small: encode_call", lambda: encode_call(small, max_bytes=LIMIT)),
        ("small: decode_call", lambda: decode_call(tasks, small.name, small_payload)),
        (
            "small: stdlib json.dumps (reference)",
            lambda: json.dumps(small_dict, separators=(",", ":")),
        ),
        ("small: stdlib json.loads (reference)", lambda: json.loads(small_json)),
        ("rich: encode_call (datetime, UUID, model)", lambda: encode_call(rich, max_bytes=LIMIT)),
        (
            "rich: decode_call (datetime, UUID, model)",
            lambda: decode_call(tasks, rich.name, rich_payload),
        ),
    ]
    load = os.getloadavg()
    print(f"payloads: small {len(small_payload)} B, rich {len(rich_payload)} B")
    print(f"pydantic {pydantic.VERSION}; load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'case':<44} {'median us/call':>14}  ({'wall' if options.wall else 'CPU'} time)")
    for label, func in rows:
        print(f"{label:<44} {per_call_us(func, number, repeat, timer):>14.2f}")


if __name__ == "__main__":
    main()
