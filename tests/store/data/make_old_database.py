"""Write ``broker-5b17a79.sqlite3``: a database exactly as test-broker wrote it at commit 5b17a79.

That broker ran ``executescript(SCHEMA)`` and never set ``PRAGMA user_version`` (so 0): no
``audit.exp`` column, no ``refusals`` table. Run this with THAT commit's package on the path, so
the old code writes the file, not a re-creation of it:

    git archive 5b17a79 broker | tar -x -C /tmp/broker-5b17a79
    PYTHONPATH=/tmp/broker-5b17a79 .venv/bin/python tests/store/data/make_old_database.py

It prints the two secrets it issued; tests/store/test_sqlite_upgrade.py holds them as constants.
The file is written in a temporary directory beside its final name and renamed into place, so no
process holding a connection ever opens it with open() (tests/conftest.py says why).
"""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import closing
from pathlib import Path

from broker import credentials, store  # the 5b17a79 modules, not these

HERE = Path(__file__).parent
TARGET = HERE / "broker-5b17a79.sqlite3"
NOW = 1795000000


def main() -> None:
    if hasattr(store, "MIGRATIONS") or not hasattr(store, "SCHEMA"):
        sys.exit("run with commit 5b17a79's broker package on PYTHONPATH (see the docstring)")
    with tempfile.TemporaryDirectory(dir=HERE) as tmp:
        with closing(store.connect(Path(tmp))) as conn:
            _, dev_secret = credentials.add(
                conn,
                kind="dev",
                name="alice",
                scope_pattern=None,
                max_ttl=900,
                extra_tags={},
                expires_at=None,
                now=NOW,
            )
            ci, ci_secret = credentials.add(
                conn,
                kind="ci",
                name="web",
                scope_pattern="ci/web/pr-*/run-*",
                max_ttl=3600,
                extra_tags={"team": "qa"},
                expires_at=None,
                now=NOW + 1,
            )
            gone, _ = credentials.add(
                conn,
                kind="ci",
                name="gone",
                scope_pattern=None,
                max_ttl=600,
                extra_tags={},
                expires_at=None,
                now=NOW + 2,
            )
            credentials.revoke(conn, gone.id, NOW + 3)
            store.write_audit(
                conn,
                [
                    store.AuditRecord(
                        NOW + 10.5,
                        "ci",
                        ci.id,
                        "sub-ci",
                        "ci/web/pr-1/run-1",
                        "jti-1",
                        "kid-old",
                        "127.0.0.1",
                        "ok",
                        None,
                    ),
                    store.AuditRecord(
                        NOW + 11.25,
                        "ci",
                        ci.id,
                        None,
                        "ci/other",
                        None,
                        None,
                        "127.0.0.1",
                        "refused",
                        "scope_not_allowed",
                    ),
                ],
            )
        left = sorted(os.listdir(tmp))
        if left != ["broker.sqlite3"]:
            sys.exit(f"expected the database alone after close, found {left}")
        os.rename(Path(tmp) / "broker.sqlite3", TARGET)
    print(f"dev secret: {dev_secret}")  # noqa: T201 - the script reports what it issued
    print(f"ci secret:  {ci_secret}")  # noqa: T201


if __name__ == "__main__":
    main()
