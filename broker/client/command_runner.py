"""Run a command with a token file that stays fresh: ``test-broker token … -- CMD ARGS…``.

A thread rewrites the file a margin before each token expires (broker/client/tokens.py), so an
AWS SDK in the command that refreshes its credentials always reads a live token. Signals sent to
this process go to the command (once: not those a terminal already sent it, see TERMINAL_SIGNALS);
this process exits with the command's status (128 + N when a signal N ended it, as a shell
reports it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType

from broker.client.broker_api import MintedToken
from broker.client.token_file import SHADOWING_AWS_VARS, write_token_file
from broker.client.tokens import refresh_at
from broker.errors import BrokerError, LocalIoError

FORWARDED = (
    signal.SIGHUP,
    signal.SIGINT,
    signal.SIGQUIT,
    signal.SIGTERM,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)
# What a terminal sends to its whole foreground process group (Ctrl-C, Ctrl-\, a resize): CMD
# shares our group, so it has its own copy and a forwarded one would be a second (a second
# Ctrl-C interrupts a test run's teardown).
TERMINAL_SIGNALS = frozenset({signal.SIGINT, signal.SIGQUIT, signal.SIGWINCH})
RETRY_AFTER_FAILURE = 2.0  # seconds between refresh attempts once one has failed


def in_foreground_of_a_terminal() -> bool:
    """Whether a terminal's own signals reach this process group (and so CMD) already."""
    for fd in (0, 1, 2):
        try:
            return os.tcgetpgrp(fd) == os.getpgrp()
        except OSError:  # not a terminal
            continue
    return False


class _Refresher(threading.Thread):
    def __init__(
        self,
        mint: Callable[[], MintedToken],
        first: MintedToken,
        path: Path,
        warn: Callable[[str], None],
        clock: Callable[[], float],
    ) -> None:
        # A daemon: a mint in flight (up to ATTEMPTS times TIMEOUT against a hung broker) must not
        # keep this process, or CMD's exit status, waiting once CMD has ended.
        super().__init__(name="token-refresher", daemon=True)
        self._mint, self._path, self._warn, self._clock = mint, path, warn, clock
        self._due = refresh_at(first, clock())
        self._stopped = threading.Event()
        self._writing = threading.Lock()  # held while the file is written; stop() waits for it

    def stop(self) -> None:
        """No write after this returns (a mint in flight is abandoned, not awaited)."""
        with self._writing:
            self._stopped.set()

    def run(self) -> None:
        while not self._stopped.wait(max(0.0, self._due - self._clock())):
            try:
                token = self._mint()
                with self._writing:
                    if self._stopped.is_set():
                        return
                    write_token_file(self._path, token.jwt)
            except Exception as exc:
                if self._stopped.is_set():
                    return  # the command is done: its file, or our client, may be gone
                if not isinstance(exc, BrokerError | OSError):
                    raise
                # The old token may still be good for a while; keep trying, and say so.
                self._warn(f"test-broker token: refreshing {self._path} failed ({exc}); retrying")
                self._due = self._clock() + RETRY_AFTER_FAILURE
                continue
            self._due = refresh_at(token, self._clock())


def run_with_token(
    command: Sequence[str],
    env: Mapping[str, str],
    *,
    mint: Callable[[], MintedToken],
    first: MintedToken,
    token_file: Path,
    warn: Callable[[str], None],
    cleanup: Callable[[], None],
    clock: Callable[[], float] = time.time,
) -> int:
    """Run ``command`` with ``env`` added (and ambient AWS credentials, which would beat the
    token, removed) while ``token_file`` is kept fresh; its exit status.

    ``cleanup`` (removing a private token file) runs once the command has ended, while signals
    are still forwarded, so a SIGTERM then cannot end this process before it has run.
    """
    started: list[subprocess.Popen[bytes]] = []
    pending: list[int] = []  # signals that came before the command existed

    from_terminal = TERMINAL_SIGNALS if in_foreground_of_a_terminal() else frozenset()

    def forward(signum: int, frame: FrameType | None) -> None:
        if signum in from_terminal:
            return  # CMD got the terminal's own copy
        if started:
            started[0].send_signal(signum)
        else:
            pending.append(signum)

    # Handlers first: a signal between the start and the handlers would end only this process.
    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    refresher = _Refresher(mint, first, token_file, warn, clock)
    try:
        try:
            ambient = {k: v for k, v in os.environ.items() if k not in SHADOWING_AWS_VARS}
            started.append(subprocess.Popen(list(command), env={**ambient, **env}))  # noqa: S603 - the user's command
        except OSError as exc:
            raise LocalIoError(f"cannot run {command[0]!r}: {exc.strerror or exc}") from None
        for signum in pending:
            started[0].send_signal(signum)
        refresher.start()
        status = started[0].wait()
    finally:
        try:
            refresher.stop()
            cleanup()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    return status if status >= 0 else 128 - status
