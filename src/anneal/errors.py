"""The one error type for bad settings, raised before any training step."""


class ConfigError(ValueError):
    """A setting is out of range; the message names the key, the value and what is allowed."""


def require(ok: bool, key: str, value, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: {allowed}")


class TrainingStopped(RuntimeError):
    """Training cannot go on (e.g. the loss became nan); the message says what was kept and what to change."""
