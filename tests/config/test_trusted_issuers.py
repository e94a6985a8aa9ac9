"""[[trusted_issuers]]: a table that could hand one project another's scope never loads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from broker.config import load_settings
from broker.errors import ConfigError

GH = {"preset": "github-actions", "audience": "https://broker.test"}
OWNER = {"repository": "acme/*"}


def load(*tables: dict[str, Any], **overrides: Any) -> Any:
    return load_settings(environ={}, trusted_issuers=list(tables), **overrides)


def test_a_toml_table_loads_with_the_presets_defaults(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        '[[trusted_issuers]]\npreset = "github-actions"\naudience = "https://broker.test"\n'
        'conditions = { repository = "acme/*", event_name = "pull_request" }\n'
        'scope_template = "gh/{repository}/pr-{pr}/run-{run_id}-{run_attempt}"\n'
        "max_ttl_seconds = 900\n"
        '[[trusted_issuers]]\npreset = "gitlab"\naudience = "https://broker.test"\n'
        'conditions = { project_path = "acme/*" }\n'
    )
    s = load_settings(path, environ={})
    gh, gl = s.trusted_issuers
    assert gh.issuer_url == "https://token.actions.githubusercontent.com"
    assert gl.issuer_url == "https://gitlab.com"
    assert gl.template == "gl/{project_path}/-/pipeline-{pipeline_id}-job-{job_id}"
    assert "token-exchange" in s.minting_kinds


def test_the_environment_takes_the_tables_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROKER_TRUSTED_ISSUERS", json.dumps([GH | {"conditions": OWNER}]))
    s = load_settings(environ={})
    assert s.trusted_issuers[0].conditions == OWNER


REFUSED = {
    "no owner condition": (GH, "must pin one of repository"),
    "owner glob without a literal start": (GH | {"conditions": {"repository": "*/app"}}, "pin"),
    "unknown condition claim": (GH | {"conditions": OWNER | {"repo": "x"}}, "'repo' is not a"),
    "http issuer": (GH | {"conditions": OWNER, "issuer": "http://x.test"}, "https URL"),
    "issuer with a trailing slash": (
        GH | {"conditions": OWNER, "issuer": "https://x.test/"},
        "trailing",
    ),
    "unknown template field": (
        GH | {"conditions": OWNER, "scope_template": "gh/{repo}"},
        "{repo} is not a github-actions claim",
    ),
    "template in the ci namespace": (
        GH | {"conditions": OWNER, "scope_template": "ci/{repository}"},
        "literal namespace",
    ),
    "template in a wallet's place": (
        GH | {"conditions": OWNER, "scope_template": "0x{repository_id}"},
        "literal namespace",
    ),
    "template without a claim": (
        GH | {"conditions": OWNER, "scope_template": "gh/fixed"},
        "at least one claim",
    ),
    "template with a stray brace": (
        GH | {"conditions": OWNER, "scope_template": "gh/{repository"},
        "fields are",
    ),
    "unknown preset": ({"preset": "jenkins", "audience": "x"}, "preset"),
    "ttl above an hour": (GH | {"conditions": OWNER, "max_ttl_seconds": 7200}, "max_ttl"),
    "missing ca_file": (GH | {"conditions": OWNER, "ca_file": "/nonexistent.pem"}, "ca_file"),
    # A file that is there but no PEM certificate: refused at load, not a 500 at the first job.
    "ca_file not PEM": (GH | {"conditions": OWNER, "ca_file": __file__}, "no usable PEM"),
}


@pytest.mark.parametrize(("table", "says"), REFUSED.values(), ids=REFUSED.keys())
def test_a_risky_table_is_refused_naming_the_fix(table: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError, match="trusted_issuers") as caught:
        load(table)
    assert says in str(caught.value)
    assert "BROKER_TRUSTED_ISSUERS)" in str(caught.value)


def test_two_tables_whose_scopes_could_overlap_are_refused() -> None:
    selfhosted = {
        "preset": "gitlab",
        "issuer": "https://gitlab.acme.test",
        "audience": "x",
        "conditions": {"project_path": "acme/*"},
    }
    gitlab = selfhosted | {"issuer": "https://gitlab.com"}
    with pytest.raises(ConfigError, match="could overlap"):
        load(gitlab, selfhosted)
    nested = selfhosted | {"scope_template": "gl/acme/{project_path}/-/p-{pipeline_id}"}
    with pytest.raises(ConfigError, match="could overlap"):
        load(gitlab, nested)
    apart = selfhosted | {"scope_template": "gl-acme/{project_path}/-/p-{pipeline_id}"}
    assert len(load(gitlab, apart).trusted_issuers) == 2


def test_the_brokers_own_issuer_cannot_be_trusted() -> None:
    own = GH | {"conditions": OWNER, "issuer": "https://oidc.example.com"}
    with pytest.raises(ConfigError, match="own issuer"):
        load(own, oidc_issuer="https://oidc.example.com")


def test_a_template_must_name_the_project_first_and_end_a_deep_path() -> None:
    late = GH | {"conditions": OWNER, "scope_template": "gh/{run_id}/{repository}"}
    with pytest.raises(ConfigError, match="must name the project right after its namespace"):
        load(late)
    gl = {"preset": "gitlab", "audience": "x", "conditions": {"project_path": "acme/*"}}
    with pytest.raises(ConfigError, match="must be followed by '/-/'"):
        load(gl | {"scope_template": "gl/{project_path}/p-{pipeline_id}"})


def test_two_tables_for_one_issuer_and_audience_are_refused() -> None:
    one = GH | {"conditions": OWNER}
    other = one | {"scope_template": "gh-other/{repository}/run-{run_id}"}
    with pytest.raises(ConfigError, match="only ever meet the first"):
        load(one, other)
    assert len(load(one, other | {"audience": "https://other.test"}).trusted_issuers) == 2
