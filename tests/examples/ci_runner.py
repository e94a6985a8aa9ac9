"""Run the shell steps of a GitHub Actions workflow or a GitLab CI job on this machine.

Just enough of each runner to execute the examples in README.md and deploy/ as they are written:
- GitHub: ``run:`` steps in ``bash --noprofile --norc -eo pipefail`` (GitHub's default shell on
  Linux), workflow, job and step ``env:`` merged in that order, ``${{ … }}`` expressions replaced
  from a fixed context (unknown ones fail the test), ``$GITHUB_ENV`` lines carried to the next
  steps, later steps skipped after a failure unless their ``if:`` is ``always()``. A job with
  ``permissions: id-token: write`` gets ``ACTIONS_ID_TOKEN_REQUEST_URL``/``_TOKEN``, as on GitHub.
- GitLab: ``before_script`` and ``script`` in one ``bash -eo pipefail`` shell, ``after_script`` in a
  fresh shell that always runs; ``variables:`` exported; each ``id_tokens:`` entry set to a token
  for its ``aud`` from the stand-in issuer.
- ``uses:`` steps are not run: each action the examples use is mapped in ``ACTIONS`` (checkout
  and setup-python are the test's working copy and interpreter; configure-aws-credentials sets the
  SeaweedFS admin keys the test passes in), any other action fails the test.
- Install lines (``pip install …``, ``apt-get install …``) are not run either (no network here):
  the runner checks that what they name is installed (a Python distribution or a command on PATH)
  and fails the test otherwise.
- ``if:`` and ``rules: - if:`` conditions are looked up in ``CONDITIONS``; an unknown one fails.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

_EXPRESSION = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")
_PIP = re.compile(
    r"^\s*(?:python3? -m )?pip3? install (?:--quiet |-q |--user )*(?P<names>[^|;&>]+)$"
)
_APT = re.compile(r"^\s*(?:sudo )?apt-get (?:update|install)\b(?P<rest>.*)$")

# Each action the examples use, and what it stands for here (see the module docstring).
ACTIONS: dict[str, str] = {
    "actions/checkout": "skip",
    "actions/setup-python": "skip",
    "aws-actions/configure-aws-credentials": "admin-keys",
}

# Conditions the examples use, by event: True when the job or step runs for that event.
CONDITIONS: dict[str, Callable[[str], bool]] = {
    "github.event_name == 'schedule'": lambda event: event == "schedule",
    "github.event_name != 'schedule'": lambda event: event != "schedule",
    '$CI_PIPELINE_SOURCE == "merge_request_event"': lambda event: event == "merge_request_event",
    '$CI_PIPELINE_SOURCE == "schedule"': lambda event: event == "schedule",
    '$CI_PIPELINE_SOURCE != "schedule"': lambda event: event != "schedule",
}


@dataclass(frozen=True)
class Step:
    name: str
    script: str
    env: dict[str, str]
    always: bool = False  # runs after an earlier failure too (if: always(), after_script)
    fresh_shell_env: bool = False  # GitLab after_script: nothing exported by script survives


@dataclass
class StepResult:
    name: str
    returncode: int | None  # None: skipped
    stdout: str = ""
    stderr: str = ""


@dataclass
class JobRun:
    steps: list[StepResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.returncode in (0, None) for s in self.steps) and any(
            s.returncode == 0 for s in self.steps
        )

    def step(self, name: str) -> StepResult:
        return next(s for s in self.steps if s.name == name)

    def report(self) -> str:
        return "\n".join(f"--- {s.name}: {s.returncode}\n{s.stdout}{s.stderr}" for s in self.steps)


@dataclass
class CiContext:
    """What the CI system would provide: the event, secrets, variables, an OIDC token source."""

    event: str
    secrets: dict[str, str] = field(default_factory=dict)
    vars: dict[str, str] = field(default_factory=dict)  # GitHub configuration variables
    variables: dict[str, str] = field(default_factory=dict)  # in every step's env (GITHUB_*, CI_*)
    admin_keys: dict[str, str] = field(default_factory=dict)  # configure-aws-credentials
    id_token: Callable[[str], str] | None = None  # GitLab id_tokens: aud -> the job's token
    # GitHub's token service stand-in: ACTIONS_ID_TOKEN_REQUEST_URL and _TOKEN.
    id_token_service: dict[str, str] = field(default_factory=dict)
    fail_step: str | None = None  # make this step fail after its script (always-run checks)
    skip_step: str | None = None  # leave this step out (to look at the state before it)

    def expression(self, text: str) -> str:
        name = text.strip()
        if name.startswith("secrets."):
            return self.secrets[name.removeprefix("secrets.")]
        if name.startswith("vars."):
            return self.vars[name.removeprefix("vars.")]
        github = {
            "github.event_name": self.event,
            "github.run_id": self.variables.get("GITHUB_RUN_ID", ""),
            "github.run_attempt": self.variables.get("GITHUB_RUN_ATTEMPT", ""),
            "github.ref": self.variables.get("GITHUB_REF", ""),
            "runner.temp": self.variables.get("RUNNER_TEMP", ""),
        }
        if name in github:
            return github[name]
        raise KeyError(f"the example uses ${{{{ {name} }}}}; teach tests/examples/ci_runner.py")


def load(path_or_text: Path | str) -> dict[str, Any]:
    text = path_or_text.read_text() if isinstance(path_or_text, Path) else path_or_text
    doc = yaml.safe_load(text)
    assert isinstance(doc, dict), "a CI file is a mapping"
    return doc


def _condition(text: str | None, event: str) -> bool:
    if text is None:
        return True
    key = _EXPRESSION.sub(r"\1", str(text)).strip()
    if key not in CONDITIONS:
        raise KeyError(f"the example uses the condition {key!r}; teach CONDITIONS")
    return CONDITIONS[key](event)


def _installs(script: str) -> str:
    """Replace install lines with a check that what they name is here (see module docstring)."""
    lines = []
    for line in script.splitlines():
        pip = _PIP.match(line)
        apt = _APT.match(line)
        if pip:
            for name in pip["names"].split():
                metadata.distribution(re.split(r"[<>=\[]", name)[0])  # raises if not installed
            lines.append(f": mapped install line: {line.strip()!r}")
        elif apt:
            for word in apt["rest"].split():
                if not word.startswith("-") and word not in ("apt-get", "install", "update", "&&"):
                    assert shutil.which(word), f"{word} (from {line.strip()!r}) is not on PATH"
            lines.append(f": mapped install line: {line.strip()!r}")
        else:
            lines.append(line)
    return "\n".join(lines)


def _resolve(value: Any, ctx: CiContext) -> str:
    return _EXPRESSION.sub(lambda m: ctx.expression(m.group(1)), str(value))


def _env(block: Mapping[str, Any] | None, ctx: CiContext) -> dict[str, str]:
    return {str(k): _resolve(v, ctx) for k, v in (block or {}).items()}


def github_steps(workflow: Mapping[str, Any], job: str, ctx: CiContext) -> list[Step] | None:
    """The job's steps as the runner would run them; None when its ``if:`` skips it."""
    spec = workflow["jobs"][job]
    if not _condition(spec.get("if"), ctx.event):
        return None
    env = _env(workflow.get("env"), ctx) | _env(spec.get("env"), ctx)
    permissions = spec.get("permissions", workflow.get("permissions")) or {}
    if isinstance(permissions, dict) and permissions.get("id-token") == "write":
        assert ctx.id_token_service, "an id-token: write job needs the token service stand-in"
        env |= ctx.id_token_service
    steps: list[Step] = []
    for i, step in enumerate(spec["steps"]):
        name = str(step.get("name") or step.get("run") or step.get("uses") or i)
        condition = step.get("if")
        always = condition is not None and _EXPRESSION.sub(r"\1", str(condition)).strip() == (
            "always()"
        )
        if condition is not None and not always and not _condition(condition, ctx.event):
            continue
        step_env = env | _env(step.get("env"), ctx)
        if "uses" in step:
            action = str(step["uses"]).split("@")[0]
            if action not in ACTIONS:
                raise KeyError(f"the example uses {action}; map it in ACTIONS")
            if ACTIONS[action] == "admin-keys":
                # Later steps see the keys, as the action exports them to the job's env.
                env |= ctx.admin_keys
            continue
        assert step.get("shell", "bash") == "bash", "the examples use GitHub's default shell"
        steps.append(Step(name, _installs(_resolve(step["run"], ctx)), step_env, always))
    return steps


def gitlab_steps(ci: Mapping[str, Any], job: str, ctx: CiContext) -> list[Step] | None:
    """``before_script`` + ``script`` as one step, ``after_script`` as another; None if skipped."""
    spec = ci[job]
    rules = spec.get("rules")
    if rules is not None:
        matched = [r for r in rules if _condition(r.get("if"), ctx.event)]
        if not matched or matched[0].get("when") == "never":
            return None
    default = ci.get("default", {})
    env = _env(ci.get("variables"), ctx) | _env(spec.get("variables"), ctx)
    for name, token_spec in (spec.get("id_tokens") or {}).items():
        assert ctx.id_token, "an id_tokens job needs the stand-in issuer"
        env[str(name)] = ctx.id_token(str(token_spec["aud"]))
    before = spec.get("before_script", default.get("before_script", []))
    after = spec.get("after_script", default.get("after_script", []))
    steps = [Step("script", _installs("\n".join([*before, *spec["script"]])), env)]
    if after:
        steps.append(Step("after_script", _installs("\n".join(after)), env, True, True))
    return steps


def run(steps: list[Step], ctx: CiContext, base_env: Mapping[str, str], cwd: Path) -> JobRun:
    """Run the steps in order, as the CI runner would; returns every step's outcome."""
    result = JobRun()
    failed = False
    with tempfile.TemporaryDirectory(prefix="ci-job-") as tmp:
        github_env = Path(tmp) / "github_env"
        github_env.touch()
        carried: dict[str, str] = {}
        for step in steps:
            if (failed and not step.always) or step.name == ctx.skip_step:
                result.steps.append(StepResult(step.name, None))
                continue
            env = {
                **base_env,
                **ctx.variables,
                "RUNNER_TEMP": tmp,
                "GITHUB_ENV": str(github_env),
                **step.env,
                **({} if step.fresh_shell_env else carried),
            }
            script = step.script
            if step.name == ctx.fail_step:
                script += "\necho 'injected failure' >&2; exit 1"
            proc = subprocess.run(
                ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                env=env,
                cwd=cwd,
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
            result.steps.append(StepResult(step.name, proc.returncode, proc.stdout, proc.stderr))
            failed = failed or proc.returncode != 0
            for line in github_env.read_text().splitlines():
                name, sep, value = line.partition("=")
                if sep:
                    carried[name] = value
    return result


def check_schema(path: Path, schema: str) -> subprocess.CompletedProcess[str]:
    """``check-jsonschema --builtin-schema SCHEMA`` (schemas ship with it: no network)."""
    tool = Path(sys.executable).parent / "check-jsonschema"
    return subprocess.run(
        [str(tool), "--builtin-schema", schema, str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
