"""The command line: ``workpool worker`` and ``workpool dead``, as real processes on a
real SQLite file (and on Redis, where a server runs on 127.0.0.1:6379)."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from workpool import open_channel
from workpool._cli import main

if TYPE_CHECKING:
    from pathlib import Path
    from types import ModuleType

JOBS = """
from workpool import task

@task(name="clitest.record")
async def record(scope, stopping, n: int, path: str) -> None:
    with open(path, "a") as file:
        file.write(f"{n}\\n")

@task(name="clitest.boom")
def boom(scope, stopping) -> None:
    raise ValueError("boom")
"""


def redis_up() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 6379), timeout=0.5):
            return True
    except OSError:
        return False


def redis_url() -> str:
    if importlib.util.find_spec("coredis") is None:
        pytest.skip("coredis is not installed (pip install 'workpool[redis]')")
    if not redis_up():
        if os.environ.get("CI") == "true":
            pytest.fail("no Redis server on 127.0.0.1:6379 under CI=true")
        pytest.skip("no Redis server on 127.0.0.1:6379")
    return f"redis://127.0.0.1:6379/0?queue=clitest-{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["sqlite", "redis"])
def channel_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh durable channel: an SQLite file in tmp_path, or a new Redis queue."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/jobs.db"
    return redis_url()


@pytest.fixture
def jobs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A task module ``clitest_jobs`` in tmp_path, importable here and by the worker."""
    (tmp_path / "clitest_jobs.py").write_text(JOBS)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "clitest_jobs", raising=False)
    import clitest_jobs  # type: ignore[import-not-found]

    module: ModuleType = clitest_jobs
    return module


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.upper().startswith("WORKPOOL_")}


def workpool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workpool", *args],
        cwd=cwd,
        env=env(),
        capture_output=True,
        text=True,
        timeout=60,
    )


async def enqueue(url: str, jobs: ModuleType, record: Path, count: int) -> None:
    channel: Any = open_channel(url)
    try:
        for n in range(count):
            await channel.enqueue(jobs.record.bind(n, str(record)))
        await channel.enqueue(jobs.boom.bind())
    finally:
        await channel.aclose()


async def dead_letters(url: str) -> list[Any]:
    channel: Any = open_channel(url)
    try:
        letters: list[Any] = await channel.dead_letters()
        return letters
    finally:
        await channel.aclose()


def wait_until(done: Any, proc: subprocess.Popen[str], what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if done():
            return
        assert proc.poll() is None, "the worker exited early"
        time.sleep(0.1)
    pytest.fail(f"the worker did not {what} in 60 s")


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_worker_runs_tasks_and_dead_letters_can_be_replayed(
    backend: str, channel_url: str, jobs: ModuleType, tmp_path: Path
) -> None:
    """A worker process runs the module's stored tasks, logs a line per outcome, drains
    on SIGTERM with status 0; ``dead list`` shows the failed one, ``dead replay`` puts it
    back and ``dead purge`` deletes it."""
    record = tmp_path / "record.txt"
    anyio.run(enqueue, channel_url, jobs, record, 5, backend=backend)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "workpool",
            "worker",
            "clitest_jobs",
            "--channel",
            channel_url,
            "--consumers",
            "2",
            "--deadline",
            "5",
            "--backend",
            backend,
        ],
        cwd=tmp_path,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    with worker:
        try:
            wait_until(
                lambda: (
                    record.exists()
                    and len(record.read_text().split()) == 5
                    and anyio.run(dead_letters, channel_url)
                ),
                worker,
                "run the 6 items",
            )
            worker.send_signal(signal.SIGTERM)
            _, err = worker.communicate(timeout=30)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.communicate()
    assert worker.returncode == 0, err
    assert sorted(map(int, record.read_text().split())) == list(range(5))
    assert len(re.findall(r"workpool.worker: succeeded clitest.record id=", err)) == 5
    assert "worker on " in err
    assert "clitest.boom, clitest.record" in err
    assert "SIGTERM received: draining" in err

    listed = workpool("dead", "list", "--channel", channel_url, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == [
        "id",
        "name",
        "reason",
        "error",
        "attempts",
        "deliveries",
        "failed_at",
    ]
    assert len(lines) == 3, listed.stdout  # the header, one letter, the count
    letter = lines[1].split()
    assert letter[1:5] == ["clitest.boom", "failed", "ValueError:", "boom"]
    letter_id = letter[0]

    absent = str(uuid.uuid4())
    replayed = workpool("dead", "replay", letter_id, absent, "--channel", channel_url, cwd=tmp_path)
    assert replayed.stdout.strip() == "replayed 1 dead letter"
    assert replayed.returncode == 1  # one id was not a dead letter: said on stderr
    assert "1 of the 2 ids named are not dead letters" in replayed.stderr
    assert anyio.run(dead_letters, channel_url) == []

    # The replayed item fails again in a second worker and is back among the dead letters.
    again = subprocess.Popen(
        [sys.executable, "-m", "workpool", "worker", "clitest_jobs", "--channel", channel_url],
        cwd=tmp_path,
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    with again:
        try:
            wait_until(lambda: anyio.run(dead_letters, channel_url), again, "fail it again")
            again.send_signal(signal.SIGINT)
            again.communicate(timeout=30)
        finally:
            if again.poll() is None:
                again.kill()
                again.communicate()
    purged = workpool("dead", "purge", "--all", "--channel", channel_url, cwd=tmp_path)
    assert (purged.returncode, purged.stdout.strip()) == (0, "purged 1 dead letter")
    assert anyio.run(dead_letters, channel_url) == []


def test_dead_uses_the_channel_settings(tmp_path: Path) -> None:
    """Without --channel, ``dead`` reads WORKPOOL_CHANNEL."""
    result = subprocess.run(
        [sys.executable, "-m", "workpool", "dead", "list"],
        cwd=tmp_path,
        env={**env(), "WORKPOOL_CHANNEL": "sqlite:///jobs.db"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout.strip()) == (0, "no dead letters")
    assert (tmp_path / "jobs.db").exists()


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["worker", "clitest_jobs"], "the channel is 'memory:'"),
        (["worker", "clitest_jobs", "--channel", "ftp://u:pw@x"], "unsupported channel URL"),
        (["worker", "no_such_module_x", "--channel", "sqlite:///j.db"], "cannot load the tasks"),
        (["worker", "--channel", "sqlite:///j.db"], "name the task modules"),
        (
            ["worker", "clitest_jobs", "--channel", "sqlite:///j.db", "--consumers", "0"],
            "at least 1",
        ),
        (["worker", "clitest_jobs", "--channel", "sqlite:///j.db", "--deadline", "x"], "seconds"),
        (["dead", "purge", "--channel", "sqlite:///j.db"], "by id, or give --all"),
        (["dead", "replay", "--all", str(uuid.uuid4()), "--channel", "sqlite:///j.db"], "not both"),
        (["dead", "replay", "not-an-id", "--channel", "sqlite:///j.db"], "not a dead letter id"),
        (["dead", "list", "--channel", "redis://:pw@h:port/0"], "redis://:***@h:port/0"),
        (["dead", "list", "--channel", "memory:"], "no other process can reach"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(
    argv: list[str], words: str, jobs: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    """Bad arguments exit with status 2 and say what to fix (a password masked)."""
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert words in err
    assert ":pw@" not in err


def test_bad_setting_exits_2_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bad WORKPOOL_* value is reported with its variable, exit status 2."""
    monkeypatch.setenv("WORKPOOL_LEASE", "-1")
    with pytest.raises(SystemExit) as exited:
        main(["dead", "list", "--channel", "sqlite:///j.db"])
    assert exited.value.code == 2
    assert "WORKPOOL_LEASE" in capsys.readouterr().err


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m workpool`` alone lists the commands and exits 2."""
    assert main([]) == 2
    out = capsys.readouterr().out
    assert "worker" in out
    assert "dead" in out
    assert "demo" in out


def test_unreachable_store_exits_3_with_one_line(tmp_path: Path) -> None:
    """A store that stays unreachable for outage_timeout: status 3 and one line, the
    password masked, no traceback."""
    if importlib.util.find_spec("coredis") is None:
        pytest.skip("coredis is not installed (pip install 'workpool[redis]')")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"redis://:pw@127.0.0.1:{port}/0?outage_timeout=0.5"
    result = workpool("dead", "list", "--channel", url, cwd=tmp_path)
    assert result.returncode == 3
    assert "workpool dead list: reading dead letters: Redis" in result.stderr
    assert "unreachable" in result.stderr
    assert ":pw@" not in result.stderr
    assert "Traceback" not in result.stderr
