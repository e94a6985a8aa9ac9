"""The broker's one configuration: a TOML file, every field overridable by a ``BROKER_*`` variable.

Everything else (policies, docs, examples) is derived from a ``Settings`` object, never copied.
"""

from broker.config.loading import CONFIG_ENV, load_settings
from broker.config.settings import (
    ENV_PREFIX,
    MAX_ROTATION_GRACE,
    MIN_TOKEN_TTL,
    TTL_HARD_CAP,
    Settings,
)

__all__ = [
    "CONFIG_ENV",
    "ENV_PREFIX",
    "MAX_ROTATION_GRACE",
    "MIN_TOKEN_TTL",
    "TTL_HARD_CAP",
    "Settings",
    "load_settings",
]
