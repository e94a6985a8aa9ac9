"""doctor --token: every catalogue error diagnosed offline with STS's code; house rules only warn."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
import trustme
from click.testing import CliRunner

from broker.doctor import diagnose as doctor
from broker.main import main
from broker.sts.catalogue import NOT_VALIDATED, Severity
from broker.sts.tags import TAGS_CLAIM
from broker.testing.live import StartBroker
from tests.doctor.negative_tokens import AUD, ISSUER, NOW, ROLE, Negative, Signer, negatives

SIGNER = Signer()
NEGATIVES = negatives(SIGNER)
CATALOGUE = {  # acceptance: each of these has a negative token
    "expired by 301 s",
    "iat 301 s ahead",
    "nbf 301 s ahead",
    "float iat",
    "missing iss",
    "missing sub",
    "missing aud",
    "missing iat",
    "missing exp",
    "aud list without azp",
    "empty aud",
    "unknown kid",
    "missing kid",
    "empty kid",
    "bare-string tag",
    "51 tags",
    "aws: key",
    "case-duplicate keys",
    "transitive key not a tag",
    "20 001 characters",
    "crit header",
    "PS256",
    "EdDSA",
    "HS256",
    "JWK with key_ops",
    "JWK with use enc",
    "101 RSA keys",
    "ES256 token, P-384 key",
}


def diagnose(token: str, jwks: dict[str, Any], **kwargs: Any) -> doctor.DoctorReport:
    return doctor.diagnose(
        issuer=ISSUER, token=token, jwks=jwks, audiences=(AUD,), now=NOW, **kwargs
    )


def test_the_factory_covers_the_whole_catalogue() -> None:
    assert set() == CATALOGUE - {n.name for n in NEGATIVES}


@pytest.mark.parametrize("case", NEGATIVES, ids=[n.name for n in NEGATIVES])
def test_negative_token_gets_stss_answer(case: Negative) -> None:
    roles = () if case.role_arn is None else (case.role_arn,)
    result = diagnose(case.token, case.jwks, role_arns=roles)
    first = next(f for f in result.findings if f.severity is Severity.REJECT)
    assert (case.code, case.rule) == (result.outcome, first.rule)
    assert result.message.startswith(case.message)
    assert not result.accepted


def test_a_good_token_is_accepted_with_no_findings() -> None:
    result = diagnose(SIGNER.sign(SIGNER.claims()), SIGNER.jwks())
    assert (result.outcome, result.findings) == ("accept", [])


def test_token_signed_by_the_rsa_key_is_accepted() -> None:
    token = SIGNER.sign(SIGNER.claims(), key=SIGNER.rsa)
    assert diagnose(token, SIGNER.jwks()).accepted


@pytest.mark.parametrize(
    ("label", "changes"),
    [
        ("exp 300 s past", {"exp": NOW - 300, "iat": NOW - 600, "nbf": NOW - 600}),
        ("iat and nbf 300 s ahead", {"iat": NOW + 300, "nbf": NOW + 300, "exp": NOW + 600}),
        ("empty sub", {"sub": ""}),
        ("numeric sub", {"sub": 42}),
    ],
)
def test_sts_leeway_and_lenient_claims_are_accepted(label: str, changes: dict[str, Any]) -> None:
    result = diagnose(SIGNER.sign(SIGNER.claims() | changes), SIGNER.jwks())
    assert result.accepted, result.findings


@pytest.mark.parametrize(
    ("label", "changes", "rule"),
    [
        ("no tags claim", {TAGS_CLAIM: None}, "tags.present"),
        ("lifetime 2 h", {"exp": NOW + 7200}, "claims.lifetime"),
        ("numeric-string iat", {"iat": str(NOW)}, "claims.iat.integer"),
        ("no jti", {"jti": None}, "claims.jti.present"),
    ],
)
def test_house_rules_are_warnings_and_sts_accepts(
    label: str, changes: dict[str, Any], rule: str
) -> None:
    claims = {k: v for k, v in (SIGNER.claims() | changes).items() if v is not None}
    result = diagnose(SIGNER.sign(claims), SIGNER.jwks())
    assert result.accepted
    assert [(rule, Severity.HOUSE)] == [(f.rule, f.severity) for f in result.findings]


def test_an_ec_token_passes_a_jwks_crowded_with_rsa_keys() -> None:
    crowded = next(n for n in NEGATIVES if n.name == "101 RSA keys").jwks
    jwks = {"keys": [*crowded["keys"], SIGNER.jwks()["keys"][0]]}
    result = diagnose(SIGNER.sign(SIGNER.claims()), jwks)
    assert result.accepted
    assert "jwks.key_count" in {f.rule for f in result.findings}


def test_the_role_pin_passes_for_the_listed_role() -> None:
    token = SIGNER.sign(SIGNER.claims() | {"https://aws.amazon.com/roles": [ROLE]})
    assert diagnose(token, SIGNER.jwks(), role_arns=(ROLE,)).accepted


def test_not_a_jwt_is_diagnosed_not_raised() -> None:
    result = diagnose("not.a-jwt", SIGNER.jwks())
    assert (
        result.outcome,
        [f.rule for f in result.findings],
    ) == ("InvalidIdentityToken", ["token.jwt"])


def test_an_over_long_non_jwt_is_stss_validation_error() -> None:
    # STS checks the request's length before it parses the token.
    result = diagnose("x" * 25_000, SIGNER.jwks())
    assert (result.outcome, [f.rule for f in result.findings]) == (
        "ValidationError",
        ["token.length", "token.jwt"],
    )


def _with_payload(payload: bytes) -> str:
    head, _, signature = SIGNER.sign(SIGNER.claims()).split(".")
    return f"{head}.{base64.urlsafe_b64encode(payload).rstrip(b'=').decode()}.{signature}"


def test_json_nested_too_deep_is_not_a_jwt_not_a_recursion_error() -> None:
    token = _with_payload(b"[" * 10_000)  # about 13 000 characters: under the length cap
    assert len(token) < 20_000
    result = diagnose(token, SIGNER.jwks())
    assert (result.outcome, [f.rule for f in result.findings]) == (
        "InvalidIdentityToken",
        ["token.jwt"],
    )


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_literals_are_not_json(literal: str) -> None:
    payload = json.dumps(SIGNER.claims())[:-1] + f', "exp2": {literal}}}'
    result = diagnose(_with_payload(payload.encode()), SIGNER.jwks())
    assert (result.outcome, [f.rule for f in result.findings]) == (
        "InvalidIdentityToken",
        ["token.jwt"],
    )


def _duplicated(name: str, first: Any) -> str:
    """A validly signed token whose claims carry ``name`` twice: ``first``, then the good value."""
    claims = SIGNER.claims()
    rest = json.dumps({k: v for k, v in claims.items() if k != name})[1:]
    payload = f'{{"{name}": {json.dumps(first)}, "{name}": {json.dumps(claims[name])}, {rest}'
    head = json.dumps({"alg": "ES256", "kid": SIGNER.ec.thumbprint(), "typ": "JWT"})
    return SIGNER.sign_raw(head.encode(), payload.encode())


def test_a_duplicate_member_is_a_warning_sts_keeps_the_last() -> None:
    result = diagnose(_duplicated("sub", "someone-else"), SIGNER.jwks())
    assert result.outcome == "accept"
    [dup] = [f for f in result.findings if f.rule == "claims.duplicate"]
    assert dup.severity is Severity.HOUSE


def test_a_conflicting_duplicate_aud_with_a_bad_last_value_is_the_generic_error() -> None:
    claims = SIGNER.claims()
    payload = json.dumps(claims)[:-1] + ', "aud": "not-registered"}'  # good first, bad last
    head = json.dumps({"alg": "ES256", "kid": SIGNER.ec.thumbprint(), "typ": "JWT"})
    result = diagnose(SIGNER.sign_raw(head.encode(), payload.encode()), SIGNER.jwks())
    assert (result.outcome, result.message) == ("InvalidIdentityToken", NOT_VALIDATED)
    # Bad first, registered last: STS keeps the last and accepts.
    assert diagnose(_duplicated("aud", "not-registered"), SIGNER.jwks()).outcome == "accept"


@pytest.mark.parametrize("junk", ["~~~~", "\t", "==="])
def test_characters_outside_base64url_are_not_a_jwt(junk: str) -> None:
    head, claims, signature = SIGNER.sign(SIGNER.claims()).split(".")
    result = diagnose(f"{head}.{claims}.{signature}{junk}", SIGNER.jwks())
    assert result.outcome == "InvalidIdentityToken"
    assert [f.rule for f in result.findings] == ["token.jwt"]


# -- the command -----------------------------------------------------------------------------


def _files(tmp_path: Path, token: str, jwks: dict[str, Any]) -> tuple[str, str]:
    (tmp_path / "t.jwt").write_text(token + "\n")
    (tmp_path / "jwks.json").write_text(json.dumps(jwks))
    return f"@{tmp_path / 't.jwt'}", str(tmp_path / "jwks.json")


def test_cli_json_shape_and_exit_code_for_a_rejected_token(tmp_path: Path) -> None:
    now = int(time.time())  # the command reads the clock; 1000 s keeps clear of the leeway
    expired = SIGNER.claims(now - 2000) | {"exp": now - 1000}
    token, jwks = _files(tmp_path, SIGNER.sign(expired), SIGNER.jwks())
    result = CliRunner().invoke(
        main, ["doctor", "--token", token, "--jwks", jwks, "--issuer", ISSUER, "--json"]
    )
    assert result.exit_code == 1
    body = json.loads(result.output)
    assert {"outcome", "message", "findings", "info"} == set(body)
    assert body["outcome"] == "ExpiredTokenException"
    [finding] = body["findings"]
    assert {"rule", "severity", "detail", "fix", "sts_code", "sts_message"} == set(finding)


def test_cli_table_names_the_finding_sts_words_and_fix(tmp_path: Path) -> None:
    bare = SIGNER.claims(int(time.time())) | {TAGS_CLAIM: {"principal_tags": {"run": "r1"}}}
    token, jwks = _files(tmp_path, SIGNER.sign(bare), SIGNER.jwks())
    result = CliRunner().invoke(main, ["doctor", "--token", token, "--jwks", jwks])
    assert result.exit_code == 1
    header, _, row, *rest = result.output.splitlines()
    assert header.split()[:3] == ["LEVEL", "RULE", "FINDING"]
    assert row.startswith("REJECT  tags.format")
    assert "principal_tags passed in claim is not in correct format." in row
    assert 'Write each tag as "key": ["value"] under principal_tags.' in row
    assert rest[-1].startswith("outcome: InvalidIdentityToken: principal_tags passed")


def test_cli_a_jwks_nested_too_deep_is_a_usage_error(tmp_path: Path) -> None:
    token, jwks = _files(tmp_path, SIGNER.sign(SIGNER.claims()), {})
    Path(jwks).write_text("[" * 10_000)
    result = CliRunner().invoke(main, ["doctor", "--token", token, "--jwks", jwks])
    assert result.exit_code == 2
    assert "is not a JSON file" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_cli_accepts_a_good_token_with_exit_0(tmp_path: Path) -> None:
    good = SIGNER.sign(SIGNER.claims(int(time.time())))
    token, jwks = _files(tmp_path, good, SIGNER.jwks())
    result = CliRunner().invoke(main, ["doctor", "--token", token, "--jwks", jwks])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "outcome: accept (STS would accept this token)"


def test_now_judges_the_token_as_of_an_earlier_time(tmp_path: Path) -> None:
    # "Why did last night's job fail?": a token that is expired now was fine when it was used.
    issued = int(time.time()) - 7200
    token, jwks = _files(tmp_path, SIGNER.sign(SIGNER.claims(issued)), SIGNER.jwks())
    args = ["doctor", "--token", token, "--jwks", jwks, "--json"]
    assert json.loads(CliRunner().invoke(main, args).output)["outcome"] == "ExpiredTokenException"
    result = CliRunner().invoke(main, [*args, "--now", str(issued + 60)])
    assert (result.exit_code, json.loads(result.output)["outcome"]) == (0, "accept")


def test_a_bad_config_file_is_reported_not_a_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "broker.toml"
    bad.write_text('oidc_issuer = "https://oidc.example.com/"\n')
    result = CliRunner().invoke(main, ["doctor", "--config", str(bad)])
    assert result.exit_code == 2
    assert "oidc_issuer" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        ([], "give --issuer URL, --config FILE, --token JWT|@FILE, or both"),
        (["--token", "@/nonexistent/t.jwt"], "--token '/nonexistent/t.jwt' cannot be read"),
        (["--issuer", ISSUER, "--trust-policy", __file__], "add --token"),
    ],
)
def test_cli_bad_input_is_a_usage_error(args: list[str], complaint: str) -> None:
    result = CliRunner().invoke(main, ["doctor", *args])
    assert result.exit_code == 2
    assert complaint in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


# -- against a real broker over https ---------------------------------------------------------


def _mint(broker: Any) -> str:
    session = broker.client.post("/session/create", json={"auth_token": "federation-proof"})
    headers = {"authorization": f"Bearer {session.json()['session']}"}
    jwt: str = broker.client.post("/v1/mint-oidc-jwt", headers=headers).json()["jwt"]
    return jwt


@pytest.fixture
def ca_file(tls_ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return str(path)


def test_a_minted_token_is_accepted_against_the_live_issuer(
    live_broker: StartBroker, tls_ca: trustme.CA, ca_file: str
) -> None:
    broker = live_broker(tls=tls_ca)
    args = ["doctor", "--token", _mint(broker), "--ca-file", ca_file, "--json"]
    result = CliRunner().invoke(main, args)
    body = json.loads(result.output)
    assert (result.exit_code, body["outcome"]) == (0, "accept"), body
    # Loopback is a local test issuer: noted, not a rejection.
    assert {"house"} >= {f["severity"] for f in body["findings"] if f["rule"].startswith("disc")}


def _arn(role: str) -> str:
    return f"arn:aws:iam::123456789012:role/{role}"


def test_config_supplies_the_issuer_audience_and_test_roles(
    live_broker: StartBroker, tls_ca: trustme.CA, ca_file: str, tmp_path: Path
) -> None:
    pinned = {"audience": "test-client", "aws_account_id": "123456789012"}
    tables = [
        {"name": "mail", "role": "mail-oidc-test", "bucket": "mail-oidc-test"},
        {"name": "vault", "role": "vault-oidc-test", "bucket": "vault-oidc-test"},
    ]
    broker = live_broker(tls=tls_ca, resources=tables, **pinned)
    token = _mint(broker)  # pins both roles
    config = tmp_path / "broker.toml"

    def doctor(roles: list[str], *extra: str) -> tuple[int, dict[str, Any]]:
        fields = {"oidc_issuer": broker.settings.oidc_issuer, **pinned}
        text = "".join(f'{k} = "{v}"\n' for k, v in fields.items())
        text += "".join(
            f'[[resources]]\nname = "r{i}"\nrole = "{role}"\nbucket = "b{i}-oidc-test"\n'
            for i, role in enumerate(roles)
        )
        config.write_text(text)
        args = ["--config", str(config), "--token", token, "--ca-file", ca_file, *extra]
        result = CliRunner().invoke(main, ["doctor", *args, "--json"])
        return result.exit_code, json.loads(result.output)

    code, body = doctor(["mail-oidc-test", "vault-oidc-test"])
    # accepted: discovery came from the configured issuer, aud and both roles are pinned
    assert (code, body["outcome"]) == (0, "accept"), body
    assert body["info"]["discovery_seconds"] is not None
    code, body = doctor(["mail-oidc-test", "oidc-test-other"])  # a role the token does not pin
    assert "roles.target" in [f["rule"] for f in body.get("findings", [])], body
    code, body = doctor(["oidc-test-other"], "--role-arn", _arn("vault-oidc-test"))
    assert (code, body["outcome"]) == (0, "accept"), body  # --role-arn beats the config
    code, body = doctor(["mail-oidc-test"], "--audience", "other")
    assert body["outcome"] == "InvalidIdentityToken"  # an explicit option beats the config


def test_a_tampered_token_fails_the_signature_against_the_live_issuer(
    live_broker: StartBroker, tls_ca: trustme.CA, ca_file: str
) -> None:
    broker = live_broker(tls=tls_ca)
    head, claims, signature = _mint(broker).split(".")
    forged = json.loads(base64.urlsafe_b64decode(claims + "==")) | {"sub": "someone-else"}
    payload = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()
    token = f"{head}.{payload}.{signature}"
    result = CliRunner().invoke(main, ["doctor", "--token", token, "--ca-file", ca_file, "--json"])
    report = json.loads(result.output)
    assert (
        result.exit_code,
        report["outcome"],
        report["message"],
    ) == (1, "InvalidIdentityToken", NOT_VALIDATED)
    assert "signature" in {f["rule"] for f in report["findings"]}
