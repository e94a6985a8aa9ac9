"""MintedToken files for the AWS SDKs' web-identity provider, and the variables that point at them.

The SDKs read ``AWS_WEB_IDENTITY_TOKEN_FILE`` again on every credential refresh, so rewriting the
file (atomically: a reader never sees half a token) is all it takes to keep a long job working.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from broker.client.runs import session_name

AWS_TOKEN_FILE_VAR = "AWS_WEB_IDENTITY_TOKEN_FILE"  # noqa: S105 - a variable's name
AWS_ROLE_ARN_VAR = "AWS_ROLE_ARN"
AWS_SESSION_NAME_VAR = "AWS_ROLE_SESSION_NAME"
# Credentials the SDKs' chain tries before web identity: left in the env, they would win and the
# command would run with them, unscoped, without a word.
SHADOWING_AWS_VARS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
)


def write_token_file(path: Path, jwt: str) -> None:
    """Replace ``path`` with ``jwt``, mode 0600, atomically (write a sibling, then rename)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="ascii") as out:  # mkstemp: 0600 from the start
            out.write(jwt)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def aws_env(token_file: Path, scope: str, role_arn: str | None) -> dict[str, str]:
    """The variables that make any AWS SDK assume ``role_arn`` with the token in ``token_file``."""
    env = {
        AWS_TOKEN_FILE_VAR: str(token_file.absolute()),
        AWS_SESSION_NAME_VAR: session_name(scope),
    }
    if role_arn:
        env[AWS_ROLE_ARN_VAR] = role_arn
    return env


def default_token_path(scope: str) -> Path:
    """Where ``--print-env`` keeps the token without ``--out``: a private per-user directory,
    one file per scope, so evaluating the command again replaces the same file."""
    base = Path(os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir())
    directory = base / f"test-broker-{os.getuid()}"
    directory.mkdir(mode=0o700, exist_ok=True)
    if directory.stat().st_uid != os.getuid() or directory.stat().st_mode & 0o077:
        raise PermissionError(f"{directory} is not a private directory of this user")
    return directory / f"{session_name(scope)}.jwt"
