"""The error every configuration check raises: its own module, so that code checking a config (the study's own
process, the sweep's search space) needs neither the data nor the model package to name it."""


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the field and the fix."""


def require(ok: bool, key: str, message: str) -> None:
    """Raise a ``ConfigError`` naming the full key (``model.depth``) unless ``ok``: every config check's one rule."""
    if not ok:
        raise ConfigError(f"{key}: {message}")
