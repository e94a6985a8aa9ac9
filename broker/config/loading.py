"""Loading the settings: the file (or ``$BROKER_CONFIG``), ``BROKER_*`` variables, overrides.

Every failure becomes one ``ConfigError`` whose message names the field, its variable and the fix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_settings import SettingsError

# Raised here for every unusable setting; it lives in the error tree (config_error, exit 2).
from broker.config.settings import ENV_PREFIX, Settings, config_file_var
from broker.errors import ConfigError

CONFIG_ENV = "BROKER_CONFIG"
# Fields a BROKER_* variable must spell as JSON (pydantic-settings decodes them): shape, example.
_ENV_JSON_SHAPES = {
    "trusted_proxies": ("a JSON list of IP addresses or networks", '["127.0.0.1", "10.0.0.0/8"]'),
    "resources": (
        "a JSON list of tables",
        '[{"name": "mail", "role": "mail-oidc-test", "bucket": "mail-oidc-test"}]',
    ),
    "oidc_thumbprints": ("a JSON list of 40-hex SHA-1 thumbprints", '["' + "0" * 40 + '"]'),
    "run_prefix_patterns": ("a JSON list of scope patterns", '["ci/*/**"]'),
}


def load_settings(
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Build Settings from the file (or $BROKER_CONFIG), the environment and explicit overrides."""
    env = os.environ if environ is None else environ
    if config_file is None and env.get(CONFIG_ENV):
        config_file = Path(env[CONFIG_ENV])
    if config_file is not None and not config_file.is_file():
        raise ConfigError(f"config file {str(config_file)!r} does not exist; check --config")
    token = config_file_var.set(config_file)
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, config_file)) from None
    except SettingsError as exc:  # a BROKER_* value that does not decode (it is a ValueError too)
        raise ConfigError(_describe_env(exc)) from None
    except ValueError as exc:  # a broken TOML file
        raise ConfigError(f"config file {str(config_file)!r} is not valid TOML: {exc}") from None
    except OSError as exc:  # e.g. the file is not readable by this user
        raise ConfigError(f"config file {str(config_file)!r} cannot be read: {exc}") from None
    finally:
        config_file_var.reset(token)


def _describe_env(exc: SettingsError) -> str:
    """pydantic-settings says only 'error parsing value for field "x" from source "..."'."""
    found = re.search(r'field "(\w+)"', str(exc))
    if found is None:
        return f"invalid configuration: {exc}"
    field = found.group(1)
    var = f"{ENV_PREFIX}{field.upper()}"
    why = f" ({exc.__cause__})" if exc.__cause__ else ""
    shape, example = _ENV_JSON_SHAPES.get(field, ("JSON", ""))
    if example:
        shape += f", e.g. {var}='{example}'"
    return f"invalid configuration: {var} is not valid JSON{why}; expected {shape}"


def _describe(exc: ValidationError, config_file: Path | None) -> str:
    where = f" (config {config_file})" if config_file else ""
    lines = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "config"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field; remove it or check its spelling against the README config table"
        # A table's key (resources.0.role) is set through its section's one variable.
        env = f"{ENV_PREFIX}{str(err['loc'][0]).upper()}" if err["loc"] else ""
        lines.append(f"{field}: {msg} (env {env})" if field != "config" else msg)
    return f"invalid configuration{where}: " + "; ".join(lines)
