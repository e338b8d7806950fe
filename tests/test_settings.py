"""PoolSettings: sources, their priority, parsing and error messages."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from workpool._channel import FullMode
from workpool._exceptions import SettingsError, WorkpoolError
from workpool._settings import PoolSettings, RetrySettings, SessionSettings

CONFIG_DIR = Path(__file__).parent.parent / "config"

DEFAULTS = {
    "channel": "memory:",
    "tasks": (),
    "queue": None,
    "lease": None,
    "max_deliveries": None,
    "consumers": 4,
    "capacity": 1000,
    "full_mode": FullMode.WAIT,
    "enqueue_timeout": None,
    "shutdown_deadline": 30.0,
    "task_timeout": None,
    "thread_limit": 40,
    "blocked_loop_threshold": 1.0,
    "retry": {
        "attempts": 1,
        "backoff_initial": 0.1,
        "backoff_max": 30.0,
        "multiplier": 2.0,
        "jitter": 0.0,
    },
    "session": {"default_duration": 900.0, "cleanup_interval": 60.0},
    "config_file": None,
}


@pytest.fixture(autouse=True)
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run each test in an empty directory (no stray .env) with no WORKPOOL_* variables."""
    monkeypatch.chdir(tmp_path)
    for name in list(os.environ):
        if name.upper().startswith("WORKPOOL_"):
            monkeypatch.delenv(name)
    return tmp_path


def write_toml(directory: Path, text: str) -> Path:
    path = directory / "workpool.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    """With no arguments, environment or files, every setting has its default."""
    settings = PoolSettings()
    assert settings.model_dump() == DEFAULTS
    assert settings.retry == RetrySettings()
    assert settings.session == SessionSettings()


@pytest.mark.parametrize(
    ("variable", "value", "path", "expected"),
    [
        ("WORKPOOL_CONSUMERS", "8", ("consumers",), 8),
        ("WORKPOOL_CAPACITY", "50", ("capacity",), 50),
        ("WORKPOOL_FULL_MODE", "reject", ("full_mode",), FullMode.REJECT),
        ("WORKPOOL_ENQUEUE_TIMEOUT", "2.5", ("enqueue_timeout",), 2.5),
        ("WORKPOOL_SHUTDOWN_DEADLINE", "0", ("shutdown_deadline",), 0.0),
        ("WORKPOOL_TASK_TIMEOUT", "12", ("task_timeout",), 12.0),
        ("WORKPOOL_THREAD_LIMIT", "3", ("thread_limit",), 3),
        ("WORKPOOL_RETRY__ATTEMPTS", "5", ("retry", "attempts"), 5),
        ("WORKPOOL_RETRY__BACKOFF_INITIAL", "0.5", ("retry", "backoff_initial"), 0.5),
        ("WORKPOOL_RETRY__BACKOFF_MAX", "9", ("retry", "backoff_max"), 9.0),
        ("WORKPOOL_RETRY__MULTIPLIER", "3", ("retry", "multiplier"), 3.0),
        ("WORKPOOL_RETRY__JITTER", "0.25", ("retry", "jitter"), 0.25),
        ("WORKPOOL_SESSION__DEFAULT_DURATION", "60", ("session", "default_duration"), 60.0),
        ("WORKPOOL_SESSION__CLEANUP_INTERVAL", "5", ("session", "cleanup_interval"), 5.0),
    ],
)
def test_each_env_var_is_parsed(
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    path: tuple[str, ...],
    expected: object,
) -> None:
    """Each WORKPOOL_* variable, nested ones with ``__``, sets its setting."""
    monkeypatch.setenv(variable, value)
    found: object = PoolSettings()
    for name in path:
        found = getattr(found, name)
    assert found == expected


def test_env_leaves_other_nested_settings_at_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """Setting one nested variable keeps the other fields of that table at their defaults."""
    monkeypatch.setenv("WORKPOOL_RETRY__ATTEMPTS", "3")
    assert PoolSettings().retry == RetrySettings(attempts=3)


@pytest.mark.parametrize("value", ["DROP_OLDEST", "drop_oldest", "Drop_Oldest", " drop-oldest "])
def test_full_mode_is_case_insensitive(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """WORKPOOL_FULL_MODE accepts the mode's name in any case."""
    monkeypatch.setenv("WORKPOOL_FULL_MODE", value)
    assert PoolSettings().full_mode is FullMode.DROP_OLDEST


def test_full_mode_kwarg_accepts_member_and_string() -> None:
    """The full_mode argument takes a FullMode member or its name in any case."""
    assert PoolSettings(full_mode=FullMode.DROP_WRITE).full_mode is FullMode.DROP_WRITE
    assert PoolSettings(full_mode="Drop_Newest").full_mode is FullMode.DROP_NEWEST


@pytest.mark.parametrize("variable", ["WORKPOOL_ENQUEUE_TIMEOUT", "WORKPOOL_TASK_TIMEOUT"])
def test_empty_optional_timeout_is_none(monkeypatch: pytest.MonkeyPatch, variable: str) -> None:
    """An empty optional timeout variable means no timeout."""
    monkeypatch.setenv(variable, "")
    settings = PoolSettings()
    assert settings.enqueue_timeout is None
    assert settings.task_timeout is None


def test_dotenv_file_is_read(clean_env: Path) -> None:
    """A .env file in the working directory sets values."""
    (clean_env / ".env").write_text(
        "WORKPOOL_CONSUMERS=6\nWORKPOOL_SESSION__CLEANUP_INTERVAL=7\nOTHER_APP_SETTING=x\n",
        encoding="utf-8",
    )
    settings = PoolSettings()
    assert settings.consumers == 6
    assert settings.session.cleanup_interval == 7.0


def test_env_beats_dotenv(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An environment variable wins over the same variable in .env."""
    (clean_env / ".env").write_text("WORKPOOL_CONSUMERS=6\nWORKPOOL_CAPACITY=9\n", encoding="utf-8")
    monkeypatch.setenv("WORKPOOL_CONSUMERS", "2")
    settings = PoolSettings()
    assert settings.consumers == 2
    assert settings.capacity == 9


def test_kwargs_beat_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keyword arguments win over environment variables."""
    monkeypatch.setenv("WORKPOOL_CONSUMERS", "2")
    monkeypatch.setenv("WORKPOOL_RETRY__ATTEMPTS", "4")
    settings = PoolSettings(consumers=10, retry=RetrySettings(attempts=2))
    assert settings.consumers == 10
    assert settings.retry.attempts == 2


def test_toml_file_from_env(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """WORKPOOL_CONFIG_FILE names a TOML file with top-level keys, [retry] and [session]."""
    path = write_toml(
        clean_env,
        'consumers = 3\nfull_mode = "DROP_NEWEST"\ntask_timeout = 4.5\n'
        "[retry]\nattempts = 5\nbackoff_max = 2.0\n"
        "[session]\ndefault_duration = 120.0\n",
    )
    monkeypatch.setenv("WORKPOOL_CONFIG_FILE", str(path))
    settings = PoolSettings()
    assert settings.config_file == path
    assert settings.consumers == 3
    assert settings.full_mode is FullMode.DROP_NEWEST
    assert settings.task_timeout == 4.5
    assert settings.retry == RetrySettings(attempts=5, backoff_max=2.0)
    assert settings.session == SessionSettings(default_duration=120.0)


def test_toml_file_from_kwarg(clean_env: Path) -> None:
    """The config_file argument names the TOML file too."""
    path = write_toml(clean_env, "capacity = 12\n")
    assert PoolSettings(config_file=path).capacity == 12


def test_toml_file_from_dotenv(clean_env: Path) -> None:
    """WORKPOOL_CONFIG_FILE may itself come from .env."""
    write_toml(clean_env, "capacity = 12\n")
    (clean_env / ".env").write_text("WORKPOOL_CONFIG_FILE=workpool.toml\n", encoding="utf-8")
    assert PoolSettings().capacity == 12


def test_env_beats_toml(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Environment variables win over the TOML file, table by table and key by key."""
    path = write_toml(
        clean_env, "consumers = 3\ntask_timeout = 4.5\n[retry]\nattempts = 5\njitter = 1.0\n"
    )
    monkeypatch.setenv("WORKPOOL_CONFIG_FILE", str(path))
    monkeypatch.setenv("WORKPOOL_CONSUMERS", "9")
    monkeypatch.setenv("WORKPOOL_RETRY__ATTEMPTS", "2")
    monkeypatch.setenv("WORKPOOL_TASK_TIMEOUT", "")
    settings = PoolSettings()
    assert settings.consumers == 9
    assert settings.retry.attempts == 2
    assert settings.retry.jitter == 1.0
    assert settings.task_timeout is None


def test_missing_toml_file_is_an_error(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A config file that does not exist raises SettingsError naming the variable and path."""
    missing = clean_env / "nowhere.toml"
    monkeypatch.setenv("WORKPOOL_CONFIG_FILE", str(missing))
    with pytest.raises(SettingsError, match="WORKPOOL_CONFIG_FILE") as caught:
        PoolSettings()
    assert str(missing) in str(caught.value)
    assert isinstance(caught.value, WorkpoolError)
    assert isinstance(caught.value, ValueError)


def test_missing_toml_file_from_kwarg_is_an_error(clean_env: Path) -> None:
    """A missing file passed as config_file is an error too."""
    with pytest.raises(SettingsError, match=r"WORKPOOL_CONFIG_FILE.*nowhere\.toml"):
        PoolSettings(config_file=clean_env / "nowhere.toml")


def test_toml_file_that_is_a_directory_is_an_error(clean_env: Path) -> None:
    """A config file path that is a directory raises SettingsError."""
    with pytest.raises(SettingsError, match="directory"):
        PoolSettings(config_file=clean_env)


def test_malformed_toml_file_is_an_error(clean_env: Path) -> None:
    """A config file that is not valid TOML raises SettingsError naming the file."""
    path = write_toml(clean_env, "consumers = = 3\n")
    with pytest.raises(SettingsError, match=r"workpool\.toml"):
        PoolSettings(config_file=path)


def test_unknown_toml_key_is_an_error(clean_env: Path) -> None:
    """A typo in the config file's keys is reported, not silently ignored."""
    path = write_toml(clean_env, "consumer = 3\n")
    with pytest.raises(SettingsError, match="consumer"):
        PoolSettings(config_file=path)


def test_bad_toml_value_names_the_file_and_key(clean_env: Path) -> None:
    """A bad value in the config file is reported under the file and its key, not a variable."""
    path = write_toml(clean_env, 'consumers = "abc"\n[session]\ncleanup_interval = 0\n')
    with pytest.raises(SettingsError) as caught:
        PoolSettings(config_file=path)
    message = str(caught.value)
    assert f"config file {str(path)!r}, key consumers: " in message
    assert "got 'abc'" in message
    assert f"config file {str(path)!r}, key session.cleanup_interval: " in message
    assert "WORKPOOL_CONSUMERS" not in message
    assert "WORKPOOL_SESSION__CLEANUP_INTERVAL" not in message


def test_every_problem_of_every_source_is_listed(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unknown file keys, bad file values, .env and environment errors come in one message."""
    path = write_toml(clean_env, 'consumers = "abc"\nconsumer = 3\n[retry]\njitter = -1\n')
    (clean_env / ".env").write_text("WORKPOOL_CAPACITY=0\n", encoding="utf-8")
    monkeypatch.setenv("WORKPOOL_CONFIG_FILE", str(path))
    monkeypatch.setenv("WORKPOOL_THREAD_LIMIT", "many")
    with pytest.raises(SettingsError) as caught:
        PoolSettings()
    lines = str(caught.value).splitlines()
    assert lines[0] == "invalid workpool settings (5 error(s)):"
    assert sorted(line.split(":")[0].strip() for line in lines[1:]) == sorted(
        [
            f"config file {str(path)!r}, key consumers",
            f"config file {str(path)!r}",  # the unknown key
            f"config file {str(path)!r}, key retry.jitter",
            "WORKPOOL_CAPACITY (capacity, from the .env file)",
            "WORKPOOL_THREAD_LIMIT (thread_limit)",
        ]
    )
    assert "unknown top-level key(s) consumer (did you mean consumers?)" in str(caught.value)


def test_env_value_over_a_file_value_is_reported_as_the_variable(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bad value set both in the file and the environment is blamed on the one that won."""
    path = write_toml(clean_env, "consumers = 3\n")
    monkeypatch.setenv("WORKPOOL_CONFIG_FILE", str(path))
    monkeypatch.setenv("WORKPOOL_CONSUMERS", "0")
    with pytest.raises(SettingsError) as caught:
        PoolSettings()
    assert "WORKPOOL_CONSUMERS (consumers): " in str(caught.value)
    assert "config file" not in str(caught.value)


@pytest.mark.parametrize("in_dotenv", [False, True], ids=["environment", "dotenv"])
def test_unknown_variable_warns_with_the_closest_name(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, in_dotenv: bool
) -> None:
    """A misspelled WORKPOOL_ variable (environment or .env) warns, naming the right one."""
    if in_dotenv:
        (clean_env / ".env").write_text("WORKPOOL_CONSUMER=8\n", encoding="utf-8")
    else:
        monkeypatch.setenv("WORKPOOL_CONSUMER", "8")
    where = ".env" if in_dotenv else "the environment"
    with pytest.warns(UserWarning, match="WORKPOOL_CONSUMER") as caught:
        settings = PoolSettings()
    assert [str(w.message) for w in caught] == [
        f"WORKPOOL_CONSUMER (in {where}) is not a workpool setting and is ignored; "
        "did you mean WORKPOOL_CONSUMERS?"
    ]
    assert caught[0].filename == __file__
    assert settings.consumers == 4


def test_unknown_variable_far_from_any_lists_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """An unknown WORKPOOL_ name like no setting at all lists the settings instead."""
    monkeypatch.setenv("WORKPOOL_ZZZ", "1")
    with pytest.warns(UserWarning, match=r"WORKPOOL_ZZZ .* the settings are WORKPOOL_CHANNEL, "):
        PoolSettings()


def test_unknown_variable_warns_even_when_a_value_is_bad(monkeypatch: pytest.MonkeyPatch) -> None:
    """The typo that probably caused a bad value is still pointed out."""
    monkeypatch.setenv("WORKPOOL_CAPACTY", "10")
    monkeypatch.setenv("WORKPOOL_CONSUMERS", "0")
    with (
        pytest.warns(UserWarning, match="did you mean WORKPOOL_CAPACITY"),
        pytest.raises(SettingsError),
    ):
        PoolSettings()


@pytest.mark.parametrize(
    ("variable", "hint"),
    [
        ("WORKPOOL_RETRY__ATEMPTS", "did you mean WORKPOOL_RETRY__ATTEMPTS?"),
        ("WORKPOOL_SESSION__CLEANUP_INTERVALL", "did you mean WORKPOOL_SESSION__CLEANUP_INTERVAL?"),
    ],
)
def test_misspelled_table_field_names_the_right_one(
    monkeypatch: pytest.MonkeyPatch, variable: str, hint: str
) -> None:
    """A typo under a table (``__``) is an error that names the field meant."""
    monkeypatch.setenv(variable, "3")
    with pytest.raises(SettingsError, match=re.escape(hint)):
        PoolSettings()


def test_misspelled_table_key_in_file_names_the_right_one(clean_env: Path) -> None:
    """The same typo in the config file's table names the file's key."""
    path = write_toml(clean_env, "[retry]\natempts = 3\n")
    with pytest.raises(
        SettingsError, match=r"key retry\.atempts: .*did you mean retry\.attempts\?"
    ):
        PoolSettings(config_file=path)


def test_empty_config_file_var_means_no_file(monkeypatch: pytest.MonkeyPatch) -> None:
    """An empty WORKPOOL_CONFIG_FILE reads no file."""
    monkeypatch.setenv("WORKPOOL_CONFIG_FILE", "")
    assert PoolSettings().config_file is None


@pytest.mark.parametrize(
    ("variable", "value", "detail"),
    [
        ("WORKPOOL_CONSUMERS", "0", "greater than or equal to 1, got '0'"),
        ("WORKPOOL_CAPACITY", "abc", "got 'abc'"),
        ("WORKPOOL_FULL_MODE", "sideways", "'drop_oldest'"),
        ("WORKPOOL_RETRY__ATTEMPTS", "0", "greater than or equal to 1, got '0'"),
        ("WORKPOOL_SHUTDOWN_DEADLINE", "-1", "greater than or equal to 0, got '-1'"),
        ("WORKPOOL_TASK_TIMEOUT", "0", "greater than 0, got '0'"),
        ("WORKPOOL_RETRY__BACKOFF_MAX", "nan", "finite number"),
        ("WORKPOOL_RETRY__ATEMPTS", "3", "Extra inputs are not permitted"),
    ],
)
def test_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, detail: str
) -> None:
    """A bad value raises SettingsError naming the environment variable and the value."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as caught:
        PoolSettings()
    message = str(caught.value)
    assert variable in message
    assert detail in message
    assert caught.value.__cause__ is not None


def test_bad_value_message_format(monkeypatch: pytest.MonkeyPatch) -> None:
    """The message gives the variable, the field path, pydantic's reason and the value."""
    monkeypatch.setenv("WORKPOOL_RETRY__ATTEMPTS", "0")
    with pytest.raises(SettingsError) as caught:
        PoolSettings()
    assert (
        "WORKPOOL_RETRY__ATTEMPTS (retry.attempts): "
        "Input should be greater than or equal to 1, got '0'"
    ) in str(caught.value)


def test_every_bad_value_is_listed(monkeypatch: pytest.MonkeyPatch) -> None:
    """All bad values are reported at once, one line each."""
    monkeypatch.setenv("WORKPOOL_CONSUMERS", "0")
    monkeypatch.setenv("WORKPOOL_SESSION__DEFAULT_DURATION", "-5")
    with pytest.raises(SettingsError) as caught:
        PoolSettings()
    message = str(caught.value)
    assert "WORKPOOL_CONSUMERS (consumers)" in message
    assert "WORKPOOL_SESSION__DEFAULT_DURATION (session.default_duration)" in message


def test_bad_kwarg_names_the_variable() -> None:
    """A bad keyword argument is reported the same way."""
    with pytest.raises(SettingsError, match="WORKPOOL_CONSUMERS"):
        PoolSettings(consumers=0)


def test_nested_table_that_is_not_a_table_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """WORKPOOL_RETRY with a value that is not a table raises SettingsError."""
    monkeypatch.setenv("WORKPOOL_RETRY", "not json")
    with pytest.raises(SettingsError, match=r"WORKPOOL_RETRY \(retry\)"):
        PoolSettings()


def test_shipped_toml_example_equals_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """config/workpool.toml parses and holds exactly the defaults."""
    path = CONFIG_DIR / "workpool.toml"
    monkeypatch.setenv("WORKPOOL_CONFIG_FILE", str(path))
    settings = PoolSettings()
    assert settings.model_dump() == {**DEFAULTS, "config_file": path}


def test_shipped_env_example_equals_defaults(clean_env: Path) -> None:
    """config/example.env, used as .env, parses and holds exactly the defaults."""
    text = (CONFIG_DIR / "example.env").read_text(encoding="utf-8")
    (clean_env / ".env").write_text(text, encoding="utf-8")
    assert PoolSettings().model_dump() == DEFAULTS


def test_shipped_env_example_lists_every_variable() -> None:
    """config/example.env sets every WORKPOOL_* variable PoolSettings reads."""
    text = (CONFIG_DIR / "example.env").read_text(encoding="utf-8")
    assigned = {
        line.split("=", 1)[0] for line in text.splitlines() if line and not line.startswith("#")
    }
    expected = {"WORKPOOL_CONFIG_FILE"}
    for name, field in PoolSettings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, RetrySettings | SessionSettings):
            expected |= {f"WORKPOOL_{name}__{sub}".upper() for sub in annotation.model_fields}
        else:
            expected.add(f"WORKPOOL_{name}".upper())
    assert assigned == expected


def test_retry_policy_none_by_default() -> None:
    """One attempt (the default) means no retry policy."""
    assert RetrySettings().policy() is None


def test_retry_policy_from_settings() -> None:
    """More than one attempt gives an exponential policy with that many attempts."""
    policy = RetrySettings(attempts=3, backoff_initial=0.5, jitter=0.1).policy()
    assert policy is not None
    assert policy.max_attempts == 3
