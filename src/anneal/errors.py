"""The errors anneal reports to a user: a bad setting, unreadable data, a run that cannot go on."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class ConfigError(ValueError):
    """A setting is invalid. It is raised where the setting is used, under the name it has there (`T_0`,
    `depth`); whoever knows where that thing came from prefixes the name (`within`), so that the message
    a user reads names the key they typed (`schedule.T_0`). `text` replaces the standard message; a
    `{key}` in it is replaced by the full key."""

    def __init__(self, key: str, value: object = None, allowed: str = "", *, text: str | None = None):
        super().__init__(key, value, allowed)  # (a pickle calls ConfigError(*args), then restores text)
        self.key, self.value, self.allowed, self.text = key, value, allowed, text

    def __str__(self) -> str:
        if self.text is not None:
            return self.text.replace("{key}", self.key)
        return f"{self.key}={self.value!r} is invalid: {self.allowed}"

    def within(self, prefix: str) -> ConfigError:
        """The same error, its key prefixed (`T_0` within `schedule` is `schedule.T_0`)."""
        key = f"{prefix}.{self.key}" if self.key else prefix
        return ConfigError(key, self.value, self.allowed, text=self.text)


class DirectoryTaken(ConfigError):
    """The run directory holds another run (finished, started or live): nothing may be written into it."""


def require(ok: bool, key: str, value: object, allowed: str) -> None:
    if not ok:
        raise ConfigError(key, value, allowed)


@contextmanager
def within(prefix: str) -> Iterator[None]:
    """Setting errors raised inside are re-raised with `prefix` added to their key."""
    try:
        yield
    except ConfigError as error:
        raise error.within(prefix) from None


class DataError(RuntimeError):
    """The data cannot be read or fetched; the message names the file or folder and says how to fix it."""


class TrainingStopped(RuntimeError):
    """Training cannot go on (e.g. the loss became nan); the message says what was kept and what to change."""
