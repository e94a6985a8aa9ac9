"""``test-broker token``: a JWT on stdout, in a 0600 file, as AWS env, or for a command's life."""

from __future__ import annotations

import json
import shlex
import sys
import tempfile
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Any

import click

from broker.cli.common import OneLineUsage, input_file, json_option, reports_errors
from broker.client import Client, MintedToken, config_from_env
from broker.client.command_runner import run_with_token
from broker.client.token_file import (
    SHADOWING_AWS_VARS,
    aws_env,
    default_token_path,
    write_token_file,
)
from broker.errors import ConfigError, LocalIoError


@click.command("token", cls=OneLineUsage)
@click.option("--broker", "url", default=None, help="Broker base URL [env TEST_BROKER_URL].")
@click.option(
    "--bearer-file",
    type=input_file,
    default=None,
    help="File holding a CI or personal secret [env TEST_BROKER_BEARER(_FILE)].",
)
@click.option(
    "--federation-proof",
    is_flag=True,
    help="Use the federation-proof flow (session, then mint) [env TEST_BROKER_AUTH_TOKEN].",
)
@click.option(
    "--auth-token", default=None, help="Proof for --federation-proof (default: federation-proof)."
)
@click.option(
    "--github-actions",
    is_flag=True,
    help="Exchange this GitHub Actions job's OIDC token (needs permissions: id-token: write).",
)
@click.option(
    "--subject-token-file",
    type=input_file,
    default=None,
    help="Exchange the CI job token in FILE (e.g. GitLab id_tokens written to a file).",
)
@click.option(
    "--subject-token-env",
    metavar="VAR",
    default=None,
    help="Exchange the CI job token in $VAR (GitLab id_tokens) [auto: TEST_BROKER_ID_TOKEN].",
)
@click.option(
    "--audience",
    default=None,
    help="aud of the GitHub job token [env TEST_BROKER_AUDIENCE; default: the broker URL].",
)
@click.option(
    "--scope", default=None, help="Scope to ask for [env TEST_BROKER_SCOPE; default below]."
)
@click.option(
    "--ttl", type=click.IntRange(min=1), default=None, help="MintedToken lifetime, seconds."
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),  # no click checks: an unusable FILE is one io_error line
    default=None,
    help="Write the JWT to FILE (atomically, mode 0600) instead of stdout.",
)
@click.option("--print-env", is_flag=True, help="Print AWS web-identity exports for eval.")
@click.option("--role-arn", default=None, help="Role for the AWS env [env TEST_BROKER_ROLE_ARN].")
@json_option
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@reports_errors
def token_command(
    url: str | None,
    bearer_file: Path | None,
    federation_proof: bool,
    auth_token: str | None,
    github_actions: bool,
    subject_token_file: Path | None,
    subject_token_env: str | None,
    audience: str | None,
    scope: str | None,
    ttl: int | None,
    out: Path | None,
    print_env: bool,
    role_arn: str | None,
    as_json: bool,
    command: tuple[str, ...],
) -> None:
    """Fetch a test JWT: print it, write a token file, print AWS env, or run CMD with it.

    In a CI job with no bearer set, the job's own OIDC token is exchanged for the token
    (GitHub Actions with `id-token: write`; GitLab `id_tokens: TEST_BROKER_ID_TOKEN`), and the
    broker builds the scope from its claims. Otherwise the default scope in CI is the run's (GitHub: pr-N/run-ID-ATTEMPT, GitLab: pr-IID/run-ID,
    in the shape the credential's allowance takes); elsewhere the caller's own namespace. After
    `--`, CMD runs with AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_ARN and AWS_ROLE_SESSION_NAME set
    (and static AWS credentials and profiles, which would beat the token, unset; `--print-env`
    unsets them too), the file is rewritten before each token expires, signals are passed on, and the exit status
    is CMD's.

    \b
    Examples:
      test-broker token --federation-proof --broker http://127.0.0.1:8080
      test-broker token --github-actions --broker https://test-broker.example.org --json
      test-broker token --subject-token-env GITLAB_ID_TOKEN --out token.jwt
      eval "$(test-broker token --bearer-file ci.secret --print-env --role-arn $ROLE)"
      test-broker token --bearer-file ci.secret --role-arn $ROLE --ttl 900 -- pytest tests/s3
    """
    if bearer_file is not None and (federation_proof or auth_token is not None):
        raise ConfigError("--bearer-file and --federation-proof/--auth-token exclude each other")
    if command and (as_json or print_env):
        raise ConfigError("a command after -- runs with the env itself; drop --json/--print-env")
    config = config_from_env(
        url=url,
        bearer_file=bearer_file,
        federation_proof=federation_proof,
        auth_token=auth_token,
        scope=scope,
        role_arn=role_arn,
        github_actions=github_actions,
        subject_token_file=subject_token_file,
        subject_token_env=subject_token_env,
        audience=audience,
    )
    if print_env and not config.role_arn:
        raise ConfigError("--print-env needs --role-arn ARN (or TEST_BROKER_ROLE_ARN)")
    with closing(Client(config)) as client, ExitStack() as cleanup:
        wanted = client.default_scope()
        token = client.mint(wanted, ttl)
        path = out
        if command and path is None:  # a private file that lives as long as the command
            path = Path(cleanup.enter_context(tempfile.TemporaryDirectory())) / "token.jwt"
        elif print_env and path is None:
            path = default_token_path(token.scope)
        if path is not None:
            _write(path, token.jwt)
        env = aws_env(path, token.scope, config.role_arn) if path is not None else None
        if command and path is not None and env is not None:
            sys.exit(
                run_with_token(
                    command,
                    env,
                    mint=lambda: client.mint(wanted, ttl),
                    first=token,
                    token_file=path,
                    warn=lambda line: click.echo(line, err=True),
                    cleanup=cleanup.close,
                )
            )
        _report(token, path, env if print_env else None, as_json=as_json)


def _write(path: Path, jwt: str) -> None:
    try:
        write_token_file(path, jwt)
    except OSError as exc:
        raise LocalIoError(
            f"--out {str(path)!r} cannot be written: {exc.strerror or exc}"
        ) from None


def _report(
    token: MintedToken, path: Path | None, env: dict[str, str] | None, *, as_json: bool
) -> None:
    if as_json:
        body: dict[str, Any] = {
            "jwt": token.jwt,
            "expiration": token.expiration,
            "scope": token.scope,
            "sub": token.sub,
            "jti": token.jti,
        }
        if path is not None:
            body["token_file"] = str(path.absolute())
        if env is not None:
            body["env"] = env
        click.echo(json.dumps(body, indent=2))
    elif env is not None:
        # Unset first: static credentials left in the shell would beat the token in the SDKs.
        exports = [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
        click.echo("\n".join([f"unset {' '.join(SHADOWING_AWS_VARS)}", *exports]))
    elif path is None:
        click.echo(token.jwt)
