"""The ``workpool`` command line: ``demo``, ``worker`` and ``dead``.

``python -m workpool worker MODULE... [--channel URL]`` runs a worker process with the
tasks of those modules on a durable channel until SIGTERM or SIGINT (the first
drains, a second stops at once), logging a line per outcome; its exit status is
`exit_status` of the drain. ``python -m workpool dead list|replay|purge`` inspects
and re-drives the channel's dead letters. Without ``--channel`` both read the
channel from the settings (``WORKPOOL_CHANNEL``, ``WORKPOOL_QUEUE``...). Bad input
exits with status 2 and one line saying what to fix.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import uuid
from functools import partial
from typing import TYPE_CHECKING, Any, Final, NoReturn

import anyio

from ._exceptions import ChannelUnavailableError, SettingsError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._item import WorkItem
    from ._seam import Channel
    from ._settings import PoolSettings
    from ._task import DeadLetter

__all__ = ["EXIT_UNAVAILABLE", "EXIT_USAGE", "build_parser", "main"]

#: Bad arguments or settings (argparse exits 2 too).
EXIT_USAGE: Final = 2
#: The channel's store could not be reached within its ``outage_timeout``.
EXIT_UNAVAILABLE: Final = 3

log = logging.getLogger("workpool.worker")


class _UsageError(Exception):
    """Bad input found after parsing: printed as ``workpool COMMAND: error: ...``, exit 2."""


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected at least 1, got {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected zero or more seconds, got {text!r}")
    return value


def _message_id(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a dead letter id (a UUID): {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``python -m workpool``."""
    from ._demo import add_demo_parser

    parser = argparse.ArgumentParser(
        prog="workpool",
        description="workpool: background work pools for anyio (asyncio and trio).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_demo_parser(commands)

    worker = commands.add_parser(
        "worker",
        help="run the tasks of some modules from a durable channel",
        description=(
            "Run a worker: a pool that takes the named tasks of MODULE... from a durable "
            "channel until SIGTERM or Ctrl-C (the first drains within the deadline, a "
            "second stops at once). Settings come from WORKPOOL_* variables."
        ),
    )
    worker.add_argument(
        "modules",
        nargs="*",
        metavar="MODULE",
        help="modules (or module.task) whose @task functions run (default: WORKPOOL_TASKS)",
    )
    _channel_argument(worker)
    worker.add_argument(
        "--consumers", type=_positive_int, help="items run at once (default: WORKPOOL_CONSUMERS)"
    )
    worker.add_argument(
        "--deadline",
        type=_seconds,
        help="seconds the drain may take (default: WORKPOOL_SHUTDOWN_DEADLINE)",
    )
    _backend_argument(worker)
    worker.add_argument(
        "--log-level", default="INFO", help="logging level of the worker's lines (%(default)s)"
    )
    worker.set_defaults(run=_run_worker, parser=worker)

    dead = commands.add_parser(
        "dead",
        help="list, replay or purge a durable channel's dead letters",
        description="Inspect and re-drive the dead letters of a durable channel.",
    )
    actions = dead.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="print the dead letters, oldest first")
    listing.set_defaults(parser=listing)
    _channel_argument(listing)
    listing.add_argument(
        "--limit", type=_positive_int, default=100, help="most letters shown (%(default)s)"
    )
    _backend_argument(listing)
    for name, verb in (("replay", "put back in the queue, counts reset"), ("purge", "delete")):
        action = actions.add_parser(name, help=f"{verb}: the letters named, or --all")
        action.set_defaults(parser=action)
        action.add_argument("ids", nargs="*", type=_message_id, metavar="ID", help="letter ids")
        action.add_argument("--all", action="store_true", help=f"{name} every dead letter")
        _channel_argument(action)
        _backend_argument(action)
    dead.set_defaults(run=_run_dead)
    return parser


def _channel_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--channel",
        metavar="URL",
        help="sqlite:///jobs.db, sqlite:////abs/jobs.db or redis://host:6379/0 "
        "(default: WORKPOOL_CHANNEL)",
    )


def _backend_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")


def main(argv: Sequence[str] | None = None) -> int:
    """The ``workpool`` command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    command_parser: argparse.ArgumentParser = getattr(args, "parser", parser)
    try:
        status: int = args.run(args)
    except _UsageError as exc:
        _fail(command_parser, str(exc))
    except (ChannelUnavailableError, BaseExceptionGroup) as exc:
        unavailable = _unavailable(exc)
        if unavailable is None:
            raise
        print(f"{command_parser.prog}: {unavailable}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return status


def _unavailable(exc: BaseException) -> ChannelUnavailableError | None:
    """The `ChannelUnavailableError` *exc* is, or is the only content of a group."""
    if isinstance(exc, ChannelUnavailableError):
        return exc
    if isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        return _unavailable(exc.exceptions[0])
    return None


def _fail(parser: argparse.ArgumentParser, message: str) -> NoReturn:
    parser.exit(EXIT_USAGE, f"{parser.prog}: error: {message}\n")


def settings_for(channel: str | None) -> PoolSettings:
    """The settings, with *channel* (``--channel``) over ``WORKPOOL_CHANNEL``.

    Raises:
        _UsageError: a bad URL, a bad setting, or a setting that does not fit the URL.
    """
    from ._open import parse_channel_url
    from ._settings import PoolSettings

    try:
        settings = PoolSettings()
    except SettingsError as exc:
        raise _UsageError(_one_line(exc)) from None
    if channel is None:
        parsed = settings.channel_url
    else:
        try:
            parsed = parse_channel_url(channel)
        except ValueError as exc:
            raise _UsageError(f"--channel: {exc}") from None
        settings = settings.model_copy(update={"channel": channel})
        try:
            settings.check_channel_options()
        except SettingsError as exc:
            raise _UsageError(_one_line(exc)) from None
    if not parsed.durable:
        raise _UsageError(
            f"the channel is {parsed.shown!r}, which no other process can reach; give a "
            "durable one: --channel sqlite:///jobs.db or redis://host:6379/0 (or "
            "WORKPOOL_CHANNEL)"
        )
    return settings


def _one_line(exc: SettingsError) -> str:
    lines = str(exc).splitlines()
    return "bad setting: " + ("; ".join(line.strip() for line in lines[1:]) or lines[0])


# -- worker -------------------------------------------------------------------------


def _run_worker(args: argparse.Namespace) -> int:
    from ._pool import WorkerPool
    from ._runner import run_until_signalled
    from ._task import resolve_tasks

    settings = settings_for(args.channel)
    level = logging.getLevelName(str(args.log_level).upper())
    if not isinstance(level, int):
        raise _UsageError(f"--log-level: unknown level {args.log_level!r}")
    modules = list(args.modules) or list(settings.tasks)
    if not modules:
        raise _UsageError("name the task modules: workpool worker myapp.jobs (or WORKPOOL_TASKS)")
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` does: find the app's modules
    try:
        tasks = resolve_tasks(modules)
    except (ImportError, ValueError, TypeError) as exc:
        raise _UsageError(f"cannot load the tasks of {', '.join(modules)}: {exc}") from None
    overrides: dict[str, Any] = {"tasks": list(tasks.values())}
    if args.consumers is not None:
        overrides["consumers"] = args.consumers
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
        )
    logging.getLogger("workpool").setLevel(level)
    try:
        pool = WorkerPool.from_settings(settings, **overrides)
    except (ImportError, ValueError, TypeError) as exc:
        raise _UsageError(str(exc)) from None
    pool.add_item_listener(_log_outcome)
    log.info(
        "worker on %s: %d task(s) (%s), %d consumer(s), %s",
        settings.channel_url.shown,
        len(tasks),
        ", ".join(sorted(tasks)),
        pool.consumers,
        args.backend,
    )
    return run_until_signalled(pool, deadline=args.deadline, backend=args.backend)


def _log_outcome(item: WorkItem, started: float, finished: float) -> None:
    """One line per item that ran: its outcome, name, id, attempts, deliveries, time."""
    log.info(
        "%s %s id=%s attempts=%d deliveries=%d in %.1f ms",
        item.state.value,
        item.name,
        item.id,
        item.attempts,
        item.deliveries,
        (finished - started) * 1000,
        extra={"work_name": item.name, "item_id": item.id},
    )


# -- dead ---------------------------------------------------------------------------


def _run_dead(args: argparse.Namespace) -> int:
    from ._settings_channel import channel_arguments

    if args.action != "list" and bool(args.ids) == bool(args.all):
        raise _UsageError(
            f"{args.action}: name the dead letters by id, or give --all for every one"
            if not args.ids
            else f"{args.action}: give ids or --all, not both"
        )
    settings = settings_for(args.channel)
    try:
        channel = channel_arguments(settings, build=True)["channel"]
    except (ImportError, ValueError) as exc:
        raise _UsageError(str(exc)) from None
    return anyio.run(partial(_dead, channel, args), backend=args.backend)


async def _dead(channel: Channel, args: argparse.Namespace) -> int:
    try:
        if args.action == "list":
            letters: list[DeadLetter] = await channel.dead_letters(limit=args.limit)  # type: ignore[attr-defined]
            _print_letters(letters)
            return 0
        ids = None if args.all else list(args.ids)
        method = channel.replay if args.action == "replay" else channel.purge_dead  # type: ignore[attr-defined]
        count: int = await method(ids)
        done = "replayed" if args.action == "replay" else "purged"
        print(f"{done} {count} dead letter{'' if count == 1 else 's'}")
        if ids is not None and count < len(ids):
            print(
                f"workpool dead {args.action}: {len(ids) - count} of the {len(ids)} ids named "
                "are not dead letters (already replayed or purged?)",
                file=sys.stderr,
            )
            return 1
        return 0
    finally:
        await channel.aclose()


_COLUMNS: Final = ("id", "name", "reason", "error", "attempts", "deliveries", "failed_at")


def _print_letters(letters: list[DeadLetter]) -> None:
    if not letters:
        print("no dead letters")
        return
    rows = [
        (
            str(letter.id),
            letter.name,
            letter.reason,
            " ".join((letter.error or "").split()),
            str(letter.attempts),
            str(letter.deliveries),
            letter.failed_at.isoformat(timespec="seconds"),
        )
        for letter in letters
    ]
    widths = [max(len(row[i]) for row in [_COLUMNS, *rows]) for i in range(len(_COLUMNS))]
    for row in [_COLUMNS, *rows]:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    print(f"{len(letters)} dead letter{'' if len(letters) == 1 else 's'}")
