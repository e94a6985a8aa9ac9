"""Every error only a command reports: one line on stderr (or its JSON body) and its exit code.

One case per command-only class of the error tree; a new such class without a case here fails
``test_every_command_only_error_has_a_case``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import click
import pytest
import uvicorn
from click.testing import CliRunner, Result

from broker import errors
from broker.main import main
from broker.server import logs
from broker.store import key_records
from broker.testing.live import free_loopback_url, spawn_broker
from tests.aws.moto_harness import MOTO_ACCOUNT, moto_server
from tests.doctor.negative_tokens import Signer

DEAD = "http://127.0.0.1:9"  # nothing listens here
SIGNER = Signer(issuer="https://oidc-test.example.com")


@dataclass(frozen=True, kw_only=True)
class Case:
    error: type[errors.BrokerError]
    argv: list[str]
    says: str  # in the one line
    prep: list[list[str]] = field(default_factory=list)  # commands run first, must succeed
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)  # written into tmp_path first
    has_json: bool = True
    aws: bool = False  # run against a moto server (its endpoint and credentials in the env)


def _verify(*args: str) -> list[str]:
    return [
        "verify",
        "--broker-url",
        DEAD,
        "--sts-endpoint-url",
        DEAD,
        "--s3-endpoint-url",
        DEAD,
        "--role-arn",
        "arn:aws:iam::123456789012:role/oidc-test-role",
        "--bucket",
        "oidc-test-bucket",
        *args,
    ]


def _aws_config(account: str) -> str:
    return (
        'oidc_issuer = "https://oidc-test.example.com"\n'
        f'aws_account_id = "{account}"\n'
        f'oidc_thumbprints = ["{"a" * 40}"]\n'
        '[[resources]]\nname = "mail"\nrole = "mail-oidc-test"\nbucket = "mail-oidc-test"\n'
    )


ADD = ["credentials", "add", "--kind", "dev", "--name", "alice"]
TOKEN = ["doctor", "--token", "@{tmp}/t.jwt", "--jwks", "{tmp}/jwks.json"]
CASES = [
    # a second rotation before verifiers can have fetched the next key
    Case(
        error=errors.KeyStoreError,
        says="Run `test-broker keys rotate` again in",
        prep=[["keys", "rotate"]],
        argv=["keys", "rotate"],
    ),
    Case(
        error=errors.KeyNotFound,
        says="no key with kid 'nope'",
        prep=[["keys", "rotate"]],
        argv=["keys", "remove", "nope"],
    ),
    Case(
        error=errors.TooManyKeys,
        says="above max_published_keys (3)",
        env={"BROKER_MAX_PUBLISHED_KEYS": "3"},
        prep=[["keys", "rotate"]],
        argv=["keys", "rotate"],
    ),
    Case(
        error=errors.CredentialNotFound,
        says="'bob': no live credential",
        prep=[ADD],
        argv=["credentials", "revoke", "bob"],
    ),
    Case(
        error=errors.CredentialExists,
        says="a live dev credential named 'alice' exists",
        prep=[ADD],
        argv=ADD,
    ),
    # serve's own JWKS would leak private key material (see issuer_refuses_to_start below)
    Case(
        error=errors.IssuerNotConformant,
        says="refusing to start: AWS STS would reject this issuer",
        argv=["serve"],
        has_json=False,
    ),
    Case(
        error=errors.VerifyFailed,
        says="the token is not a JWT",
        files={"t.jwt": "not-a-jwt"},
        argv=_verify("--token-file", "{tmp}/t.jwt"),
    ),
    Case(
        error=errors.AccountMismatch,
        says=f"the AWS credentials are for account {MOTO_ACCOUNT}",
        files={"config.toml": _aws_config("210987654321")},
        argv=["aws", "plan", "--config", "{tmp}/config.toml"],
        aws=True,
    ),
    Case(
        error=errors.AwsCallFailed,
        says="sts get-caller-identity: Could not connect to the endpoint URL",
        files={"config.toml": _aws_config(MOTO_ACCOUNT)},
        env={
            "AWS_ENDPOINT_URL": DEAD,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_MAX_ATTEMPTS": "1",
        },
        argv=["aws", "apply", "--config", "{tmp}/config.toml"],
    ),
    Case(
        error=errors.ConfigError,
        says="must use https",
        env={"BROKER_OIDC_ISSUER": "http://example.com"},
        argv=["keys", "list"],
    ),
    Case(
        error=errors.InputFileError,
        says="--jwks '{tmp}/missing.json' cannot be read",
        argv=["doctor", "--token", "x", "--jwks", "{tmp}/missing.json"],
    ),
    Case(
        error=errors.TrustPolicyInvalid,
        says="--trust-policy '{tmp}/trust.json': not a policy document",
        files={
            "t.jwt": SIGNER.sign(SIGNER.claims()),
            "jwks.json": json.dumps(SIGNER.jwks()),
            "trust.json": "[]",
        },
        argv=[*TOKEN, "--trust-policy", "{tmp}/trust.json"],
    ),
    Case(
        error=errors.BrokerRefused,
        says="refused the request (401 unauthorized): Missing, malformed",
        argv=["token", "--broker", "{broker}", "--federation-proof", "--auth-token", "invalid"],
    ),
    Case(
        error=errors.BrokerUnavailable,
        says=f"cannot reach the broker at {DEAD}",
        argv=["token", "--broker", DEAD, "--federation-proof"],
    ),
    Case(
        error=errors.ReapRefused,
        says="--scope 'dev/alice' is outside run_prefix_patterns",
        env={
            "BROKER_AWS_ACCOUNT_ID": "123456789012",
            "BROKER_RESOURCES": '[{"name": "m", "role": "m-oidc-test", "bucket": "m-oidc-test"}]',
        },
        argv=["reap", "--scope", "dev/alice"],
    ),
    Case(
        error=errors.LocalIoError,
        says="database error: file is not a database",
        files={"garbage": "this is not a database" * 100},
        argv=["credentials", "list"],
    ),
]


@pytest.mark.parametrize(
    "argv",
    [
        ["doctor", "--token", "@{bad}"],
        ["doctor", "--token", "x", "--jwks", "{bad}"],
        ["doctor", "--token", "x", "--jwks", "{tmp}/jwks.json", "--trust-policy", "{bad}"],
        ["doctor", "--issuer", "https://oidc-test.example.com", "--ca-file", "{bad}"],
        _verify("--token-file", "{bad}"),
        _verify("--bearer-file", "{bad}"),
        _verify("--ca-bundle", "{bad}"),
    ],
    ids=lambda argv: next(a for a in argv if "{bad}" in a or a.endswith("-file")),
)
@pytest.mark.parametrize("bad", ["missing", "a-directory", "binary"])
def test_an_unusable_input_file_is_one_input_file_error_for_every_option(
    argv: list[str], bad: str, tmp_path: Path
) -> None:
    (tmp_path / "a-directory").mkdir()
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00\x81garbage")
    (tmp_path / "jwks.json").write_text(json.dumps(SIGNER.jwks()))
    args = [a.replace("{bad}", str(tmp_path / bad)).replace("{tmp}", str(tmp_path)) for a in argv]
    text = CliRunner().invoke(main, args)
    as_json = CliRunner().invoke(main, [*args, "--json"])
    assert (text.exit_code, as_json.exit_code) == (2, 2), text.output
    (line,) = text.stderr.splitlines()
    assert line.startswith("error: ")
    assert str(tmp_path / bad) in line
    assert json.loads(as_json.stdout)["error"] == errors.InputFileError.code


def test_every_command_only_error_has_a_case() -> None:
    command_only = [cls for cls in errors.all_error_classes() if cls.cli_only]
    assert sorted(c.error.__name__ for c in CASES) == sorted(c.__name__ for c in command_only)


@pytest.fixture
def issuer_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fault no configuration can produce: the JWK renderer leaks "d" (as in test_health)."""
    real = key_records.public_jwk
    monkeypatch.setattr(key_records, "public_jwk", lambda key, alg: real(key, alg) | {"d": "leak"})
    monkeypatch.setattr(logs, "configure", lambda level: None)  # keep the test's logging as is

    def must_not_listen(*args: object, **kwargs: object) -> None:
        raise AssertionError("serve got past its self-check")

    monkeypatch.setattr(uvicorn, "run", must_not_listen)


def _run(case: Case, tmp_path: Path, request: pytest.FixtureRequest, *extra: str) -> Result:
    if case.aws:
        with moto_server(tmp_path) as server:
            return _run(
                replace(case, aws=False, env=case.env | server.env()), tmp_path, request, *extra
            )
    env = {"BROKER_DATA_DIR": str(tmp_path / "data"), **case.env}
    if "{broker}" in case.argv:  # a broker process beside the command (this one's keys leak)
        url = free_loopback_url()
        proc = spawn_broker({"BROKER_OIDC_ISSUER": url, "BROKER_DATA_DIR": str(tmp_path / "b")})
        request.addfinalizer(lambda: (proc.terminate(), proc.wait(10)))
        case = replace(case, argv=[a.replace("{broker}", url) for a in case.argv])
    for name, text in case.files.items():
        (tmp_path / name).write_text(text)
    if (tmp_path / "garbage").exists():  # only SQLite may open the database's own name
        (tmp_path / "data").mkdir(mode=0o700, exist_ok=True)
        (tmp_path / "garbage").rename(tmp_path / "data" / "broker.sqlite3")
    for argv in case.prep:
        done = CliRunner().invoke(main, argv, env=env)
        assert done.exit_code == 0, done.output
    argv = [a.replace("{tmp}", str(tmp_path)) for a in case.argv]
    return CliRunner().invoke(main, [*argv, *extra], env=env)


@pytest.mark.usefixtures("issuer_refuses_to_start")
@pytest.mark.parametrize("case", CASES, ids=[c.error.__name__ for c in CASES])
def test_a_command_only_error_is_one_line_and_its_exit_code(
    case: Case, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    result = _run(case, tmp_path, request)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert (result.exit_code, result.stdout) == (case.error.exit_code, ""), result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ")
    assert case.says.replace("{tmp}", str(tmp_path)) in line


@pytest.mark.usefixtures("issuer_refuses_to_start")
@pytest.mark.parametrize(
    "case", [c for c in CASES if c.has_json], ids=[c.error.__name__ for c in CASES if c.has_json]
)
def test_a_command_only_error_with_json_is_its_code_and_message(
    case: Case, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    result = _run(case, tmp_path, request, "--json")
    assert result.exit_code == case.error.exit_code, result.output
    body = json.loads(result.stdout)
    assert (sorted(body), body["error"]) == (["error", "message"], case.error.code)


def _leaf_commands(group: click.Group, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            found += _leaf_commands(command, (*path, name))
        else:
            found.append((*path, name))
    return found


@pytest.mark.parametrize("path", _leaf_commands(main), ids=" ".join)
def test_an_unknown_option_is_one_line_for_every_command(path: tuple[str, ...]) -> None:
    # keys remove takes anything unknown as its KID (1 in 64 kids start with '-'): no KID there.
    kid = path == ("keys", "remove")
    result = CliRunner().invoke(main, [*path] if kid else [*path, "--bogus-option"])
    assert (result.exit_code, result.stdout) == (2, ""), result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: Missing argument" if kid else "error: No such option"), line
    assert line.endswith(f"(see `main {' '.join(path)} --help`)")


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["reap", "--older-than", "7x"], "'7x' is not an age such as 7d"),
        (["check-cert", "--issuer", "http://127.0.0.1:8080"], "is not an https URL"),
        (
            [
                "check-cert",
                "--issuer",
                "https://oidc.example.com",
                "--warn-days",
                "3",
                "--critical-days",
                "10",
            ],
            "--critical-days must not exceed --warn-days",
        ),
        (["render", "nginx", "--http-port", "eighty"], "'eighty' is not a valid integer"),
        (["backup", "--bogus"], "No such option"),
        (["aws", "plan", "--bogus"], "No such option"),
    ],
)
def test_a_usage_error_is_one_line(argv: list[str], says: str) -> None:
    result = CliRunner().invoke(main, argv)
    assert (result.exit_code, result.stdout) == (2, ""), result.output
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ")
    assert says in line
