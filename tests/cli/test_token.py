"""`test-broker token`: stdout, a 0600 file, AWS env for eval, --json, and `-- CMD` (a real process)."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import jwt as pyjwt
import pytest
from click.testing import CliRunner, Result

from broker.main import main
from broker.testing.live import LiveBroker, StartBroker, wait_until
from tests.callers.test_credentials import cli
from tests.client.scripted_server import HANG, scripted

ROLE = "arn:aws:iam::123456789012:role/oidc-test-role"
SESSION_NAME = re.compile(r"[\w+=,.@-]{2,64}")


@pytest.fixture(autouse=True)
def _no_contract_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith(("TEST_BROKER_", "GITHUB_", "CI_", "ACTIONS_ID_TOKEN_")):
            monkeypatch.delenv(name)


@pytest.fixture
def broker(live_broker: StartBroker) -> LiveBroker:
    return live_broker(credential_minting=True)


def token(broker: LiveBroker, *args: str, env: dict[str, str] | None = None) -> Result:
    credential = [] if "--bearer-file" in args else ["--federation-proof"]
    return CliRunner().invoke(main, ["token", "--broker", broker.url, *credential, *args], env=env)


def claims(jwt: str) -> dict[str, object]:
    return pyjwt.decode(jwt, options={"verify_signature": False})  # type: ignore[no-any-return]


def process(broker: LiveBroker, *args: str, **popen: object) -> subprocess.Popen[str]:
    """The command as its own process, with no terminal (so every signal sent to it is forwarded)."""
    argv = [sys.executable, "-m", "broker", "token", "--broker", broker.url, "--federation-proof"]
    for stream in ("stdin", "stdout", "stderr"):
        popen.setdefault(stream, subprocess.DEVNULL)
    return subprocess.Popen([*argv, *args], text=True, **popen)  # type: ignore[call-overload, no-any-return]


def test_without_out_the_jwt_is_printed(broker: LiveBroker) -> None:
    result = token(broker)
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    assert claims(line)["iss"] == broker.url


def test_out_writes_the_file_atomically_0600_and_prints_nothing(
    broker: LiveBroker, tmp_path: Path
) -> None:
    out = tmp_path / "out" / "token.jwt"
    out.parent.mkdir()
    out.write_text("old")
    out.chmod(0o644)
    result = token(broker, "--out", str(out))
    assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert claims(out.read_text())["iss"] == broker.url
    assert sorted(p.name for p in out.parent.iterdir()) == ["token.jwt"]  # no temporary left


@pytest.mark.parametrize("where", ["missing/dir/t.jwt", "a-directory"])
def test_an_unwritable_out_is_one_line(broker: LiveBroker, tmp_path: Path, where: str) -> None:
    (tmp_path / "a-directory").mkdir()
    result = token(broker, "--out", str(tmp_path / where))
    assert (result.exit_code, result.stdout) == (1, "")
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"error: --out '{tmp_path / where}' cannot be written")


def test_print_env_is_eval_ready_with_an_absolute_path(broker: LiveBroker, tmp_path: Path) -> None:
    command = (
        f'eval "$({sys.executable} -m broker token --broker {broker.url} --federation-proof '
        f'--out rel.jwt --print-env --role-arn {ROLE})" && '
        'printf "%s\\n" "$AWS_WEB_IDENTITY_TOKEN_FILE" "$AWS_ROLE_ARN" "$AWS_ROLE_SESSION_NAME"'
    )
    done = subprocess.run(
        ["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    path, role, name = done.stdout.splitlines()
    assert (path, role) == (str(tmp_path / "rel.jwt"), ROLE)
    assert SESSION_NAME.fullmatch(name)
    assert name == claims(Path(path).read_text())["agentkeys_user_wallet"]


AMBIENT = {
    "AWS_ACCESS_KEY_ID": "AKIAAMBIENT",
    "AWS_SECRET_ACCESS_KEY": "ambient-secret",
    "AWS_SESSION_TOKEN": "ambient-session",
    "AWS_PROFILE": "ambient",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://127.0.0.1:9/creds",
}


def test_print_env_unsets_ambient_credentials_that_would_beat_the_token(
    broker: LiveBroker, tmp_path: Path
) -> None:
    command = (
        f'eval "$({sys.executable} -m broker token --broker {broker.url} --federation-proof '
        f'--out t.jwt --print-env --role-arn {ROLE})" && env'
    )
    done = subprocess.run(
        ["bash", "-c", command],
        cwd=tmp_path,
        env={**os.environ, **AMBIENT},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    names = {line.partition("=")[0] for line in done.stdout.splitlines()}
    assert not names & set(AMBIENT)
    assert f"AWS_ROLE_ARN={ROLE}" in done.stdout.splitlines()


def test_print_env_without_out_keeps_a_private_per_scope_file(
    broker: LiveBroker, tmp_path: Path
) -> None:
    env = {"XDG_RUNTIME_DIR": str(tmp_path)}
    first = token(broker, "--print-env", "--role-arn", ROLE, "--json", env=env)
    body = json.loads(first.stdout)
    path = Path(body["token_file"])
    assert path.parent == tmp_path / f"test-broker-{os.getuid()}"
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert body["env"]["AWS_WEB_IDENTITY_TOKEN_FILE"] == str(path)


def test_json_has_the_documented_fields(broker: LiveBroker, tmp_path: Path) -> None:
    plain = json.loads(token(broker, "--json").stdout)
    assert sorted(plain) == ["expiration", "jti", "jwt", "scope", "sub"]
    assert claims(plain["jwt"])["exp"] == plain["expiration"]
    assert claims(plain["jwt"])["jti"] == plain["jti"]
    out = tmp_path / "t.jwt"
    both = json.loads(
        token(broker, "--json", "--out", str(out), "--print-env", "--role-arn", ROLE).stdout
    )
    assert sorted(both) == ["env", "expiration", "jti", "jwt", "scope", "sub", "token_file"]
    assert both["env"] == {
        "AWS_WEB_IDENTITY_TOKEN_FILE": str(out),
        "AWS_ROLE_SESSION_NAME": both["scope"],
        "AWS_ROLE_ARN": ROLE,
    }


def test_ttl_and_scope_reach_the_broker(broker: LiveBroker, tmp_path: Path) -> None:
    secret = str(
        cli(broker.settings.data_dir, "credentials", "add", "--kind", "dev", "--name", "al")[
            "secret"
        ]
    )
    (tmp_path / "secret").write_text(secret + "\n")
    result = token(
        broker,
        "--bearer-file",
        str(tmp_path / "secret"),
        "--scope",
        "dev/al/x",
        "--ttl",
        "45",
        "--json",
    )
    body = json.loads(result.stdout)
    assert body["scope"] == "dev/al/x"
    assert body["expiration"] - claims(body["jwt"])["nbf"] == 45 + 30  # type: ignore[operator]
    # TEST_BROKER_SCOPE is the default; the flag beats it.
    env = {"TEST_BROKER_SCOPE": "dev/al/env", "TEST_BROKER_BEARER": secret}
    argv = ["token", "--broker", broker.url, "--json"]
    assert json.loads(CliRunner().invoke(main, argv, env=env).stdout)["scope"] == "dev/al/env"
    flagged = CliRunner().invoke(main, [*argv, "--scope", "dev/al/flag"], env=env)
    assert json.loads(flagged.stdout)["scope"] == "dev/al/flag"


def test_in_github_actions_a_ci_bearer_gets_the_run_scope(broker: LiveBroker) -> None:
    data = broker.settings.data_dir
    secret = str(
        cli(
            data,
            "credentials",
            "add",
            "--kind",
            "ci",
            "--name",
            "web",
            "--scope-pattern",
            "ci/web/pr-*/run-*",
        )["secret"]
    )
    env = {
        "TEST_BROKER_URL": broker.url,
        "TEST_BROKER_BEARER": secret,
        "GITHUB_REF": "refs/pull/12/merge",
        "GITHUB_RUN_ID": "34",
        "GITHUB_RUN_ATTEMPT": "1",
    }
    result = CliRunner().invoke(main, ["token", "--json"], env=env)
    assert json.loads(result.stdout)["scope"] == "ci/web/pr-12/run-34-1"


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--bearer-file", "x", "--federation-proof"], "exclude each other"),
        (["--federation-proof", "--print-env"], "--print-env needs --role-arn"),
        (["--print-env", "--", "true"], "drop --json/--print-env"),
    ],
)
def test_bad_combinations_are_one_line_and_exit_2(
    broker: LiveBroker, args: list[str], says: str
) -> None:
    result = CliRunner().invoke(main, ["token", "--broker", broker.url, *args])
    assert (result.exit_code, result.stdout) == (2, "")
    (line,) = result.stderr.splitlines()
    assert says in line


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--ttl", "0"], "Invalid value for '--ttl': 0 is not in the range x>=1."),
        (["--ttl", "soon"], "Invalid value for '--ttl': 'soon' is not a valid integer range."),
        (["--bogus"], "No such option '--bogus'. Did you mean '--out'?"),
    ],
)
def test_usage_errors_are_one_line_too(args: list[str], says: str) -> None:
    result = CliRunner().invoke(main, ["token", *args])
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == f"error: {says} (see `main token --help`)\n"


def test_no_broker_anywhere_is_one_line() -> None:
    result = CliRunner().invoke(main, ["token", "--federation-proof"])
    assert result.exit_code == 2
    assert result.stderr == "error: no broker URL: pass --broker URL or set TEST_BROKER_URL\n"


# -- `-- CMD ARGS…`: real processes, real signals -------------------------------------------------

SHOW_ENV = (
    'test -s "$AWS_WEB_IDENTITY_TOKEN_FILE" && echo "$AWS_WEB_IDENTITY_TOKEN_FILE" '
    '"$AWS_ROLE_ARN" "$AWS_ROLE_SESSION_NAME"; exit 7'
)


def test_a_command_runs_with_the_env_and_its_status_and_the_private_file_goes(
    broker: LiveBroker,
) -> None:
    proc = process(broker, "--role-arn", ROLE, "--", "sh", "-c", SHOW_ENV, stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 7
    path, role, name = out.split()
    assert (role, SESSION_NAME.fullmatch(name) is not None) == (ROLE, True)
    assert Path(path).is_absolute()
    assert not Path(path).exists()
    assert not Path(path).parent.exists()


def test_a_command_runs_without_ambient_credentials_that_would_beat_the_token(
    broker: LiveBroker,
) -> None:
    proc = process(
        broker, "--", "sh", "-c", "env", stdout=subprocess.PIPE, env={**os.environ, **AMBIENT}
    )
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    names = {line.partition("=")[0] for line in out.splitlines()}
    assert not names & set(AMBIENT)
    assert "AWS_WEB_IDENTITY_TOKEN_FILE" in names


def test_with_out_the_command_s_file_stays(broker: LiveBroker, tmp_path: Path) -> None:
    out = tmp_path / "t.jwt"
    proc = process(broker, "--out", str(out), "--", "sh", "-c", SHOW_ENV, stdout=subprocess.PIPE)
    stdout, _ = proc.communicate(timeout=30)
    assert (proc.returncode, stdout.split()[0]) == (7, str(out))
    assert claims(out.read_text())["iss"] == broker.url


def test_a_missing_command_is_one_line(broker: LiveBroker) -> None:
    result = token(broker, "--", "/nonexistent/cmd")
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line == "error: cannot run '/nonexistent/cmd': No such file or directory"


def test_the_file_is_rewritten_before_the_token_expires(broker: LiveBroker, tmp_path: Path) -> None:
    # The command reads the file until it holds another token, then reports both.
    watch = (
        "import os, sys, time, jwt\n"
        "path = os.environ['AWS_WEB_IDENTITY_TOKEN_FILE']\n"
        "read = lambda: jwt.decode(open(path).read(), options={'verify_signature': False})\n"
        "first = read()\n"
        "while read()['jti'] == first['jti']:\n"
        "    time.sleep(0.05)\n"
        "print(first['exp'], time.time(), read()['exp'])\n"
    )
    proc = process(broker, "--ttl", "10", "--", sys.executable, "-c", watch, stdout=subprocess.PIPE)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    first_exp, changed_at, second_exp = map(float, out.split())
    assert changed_at < first_exp - 2  # at 2/3 of the 10 s lifetime, not at its end
    assert second_exp > first_exp


def test_the_command_s_end_does_not_wait_for_a_refresh_stuck_at_the_broker(
    tmp_path: Path,
) -> None:
    # The first mint is answered with a token already due for refresh; the refresh then hangs
    # (each attempt until the client's timeout, four of them). CMD ends while it hangs.
    minted = {"jwt": "a.b.c", "wallet": "dev/a", "expiration": 2, "sub": "s", "jti": "j"}
    mark, go = tmp_path / "mark", tmp_path / "go"
    wait = 'echo "$AWS_WEB_IDENTITY_TOKEN_FILE" > "$1"; while [ ! -e "$2" ]; do sleep 0.05; done'
    with scripted([(200, minted), HANG, HANG, HANG, HANG]) as (url, script):
        argv = [sys.executable, "-m", "broker", "token", "--broker", url, "--scope", "dev/a"]
        env = {**os.environ, "TEST_BROKER_BEARER": "otb_dev_x_y"}
        proc = subprocess.Popen(
            [*argv, "--", "sh", "-c", wait, "sh", str(mark), str(go)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_until(lambda: len(script.requests) == 2 and mark.exists(), timeout=20)
            go.touch()
            _, err = proc.communicate(timeout=20)  # a stuck refresh held it 40 s and more
        finally:
            proc.kill()
            proc.communicate()
    assert (proc.returncode, err) == (0, "")
    assert not Path(mark.read_text().strip()).parent.exists()


CATCH = (
    "import signal, sys, time, pathlib\n"
    "mark = pathlib.Path(sys.argv[1])\n"
    "def caught(signum, frame):\n"
    "    mark.write_text(signal.Signals(signum).name)\n"
    "    sys.exit(3)\n"
    "for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP, signal.SIGINT):\n"
    "    signal.signal(s, caught)\n"
    "mark.write_text('ready')\n"
    "time.sleep(60)\n"
)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1, signal.SIGHUP, signal.SIGINT])
def test_signals_reach_the_command_and_its_status_is_the_exit(
    broker: LiveBroker, tmp_path: Path, sig: signal.Signals
) -> None:
    mark = tmp_path / "mark"
    proc = process(broker, "--", sys.executable, "-c", CATCH, str(mark))
    try:
        wait_until(lambda: mark.exists() and mark.read_text() == "ready", timeout=20)
        proc.send_signal(sig)
        assert proc.wait(20) == 3
    finally:
        proc.kill()
        proc.wait()
    assert mark.read_text() == sig.name


def test_a_command_killed_by_a_signal_exits_128_plus_it(broker: LiveBroker) -> None:
    proc = process(broker, "--", "sh", "-c", "kill -9 $$")
    assert proc.wait(30) == 128 + signal.SIGKILL


# Becomes a session leader whose controlling terminal is stdin (as a login shell's job is), then
# runs argv: the terminal's foreground process group is then argv's.
OWN_THE_TERMINAL = (
    "import fcntl, os, sys, termios\n"
    "os.setsid()\n"
    "fcntl.ioctl(0, termios.TIOCSCTTY, 0)\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)
DECIDE = (
    "from broker.client.command_runner import in_foreground_of_a_terminal as f\n"
    "open(__import__('sys').argv[1], 'w').write(str(f()))\n"
)


def test_under_a_terminal_its_own_signals_are_left_to_it(tmp_path: Path) -> None:
    # A terminal sends Ctrl-C to its whole foreground group, CMD included: forwarding it too would
    # make it two (two standard signals may or may not merge, so a count could not show it).
    master, terminal = os.openpty()
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                OWN_THE_TERMINAL,
                sys.executable,
                "-c",
                DECIDE,
                str(tmp_path / "a"),
            ],
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
            check=False,
        )
    finally:
        os.close(terminal)
        os.close(master)
    assert done.returncode == 0
    assert (tmp_path / "a").read_text() == "True"
    without = [sys.executable, "-c", DECIDE, str(tmp_path / "b")]
    subprocess.run(without, stdin=subprocess.DEVNULL, capture_output=True, check=True)
    assert (tmp_path / "b").read_text() == "False"


def test_ctrl_c_in_a_terminal_reaches_the_command(broker: LiveBroker, tmp_path: Path) -> None:
    mark = tmp_path / "mark"
    master, terminal = os.openpty()
    argv = [sys.executable, "-m", "broker", "token", "--broker", broker.url, "--federation-proof"]
    command = [sys.executable, "-c", CATCH, str(mark)]
    proc = subprocess.Popen(
        [sys.executable, "-c", OWN_THE_TERMINAL, *argv, "--", *command],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    try:
        wait_until(lambda: mark.exists() and mark.read_text() == "ready", timeout=20)
        os.write(master, b"\x03")  # Ctrl-C: the terminal signals its foreground process group
        assert proc.wait(20) == 3
    finally:
        proc.kill()
        proc.wait()
        os.close(master)
    assert mark.read_text() == "SIGINT"
