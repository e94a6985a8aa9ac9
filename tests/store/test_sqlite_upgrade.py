"""A database written before schema versions existed is upgraded in place, and keeps working.

``data/broker-5b17a79.sqlite3`` was written by the broker of commit 5b17a79 itself (user_version
0, no ``audit.exp``, no ``refusals``; ``data/make_old_database.py`` says how). Each test works on
a copy: written aside, then renamed to the name only SQLite may open (tests/conftest.py).
"""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from broker.callers import credentials
from broker.errors import Unauthorized
from broker.store import AuditRecord, RefusalCount, StoreError, open_store
from broker.store.files import private_dir
from broker.store.sqlite import DB_FILE, SCHEMA_VERSION
from broker.testing.live import StartBroker

OLD_DATABASE = Path(__file__).parent / "data" / "broker-5b17a79.sqlite3"
# The secrets make_old_database.py printed when it wrote the file (and the ids inside them).
DEV_SECRET = "otb_dev_9355e4bcf77c_8vo_I_1Z3p_Rv_alluOGLhyvhKijaVLYsNgf05ttTy0"
CI_SECRET = "otb_ci_b804fa99a972_GoZGRkj7FvAWERdf6iDqXFtwvtcJGOcuzjP05wqkmZs"
DEV_ID, CI_ID, GONE_ID = "9355e4bcf77c", "b804fa99a972", "9bc1c870a347"
NOW = 1795000000  # what the old broker's clock said


def old_database_in(data: Path) -> Path:
    private_dir(data)
    shutil.copyfile(OLD_DATABASE, data / "copying")
    (data / "copying").rename(data / DB_FILE)
    return data


def schema(data: Path) -> tuple[int, set[str], set[str]]:
    """user_version, the columns of audit, and every table and index."""
    with closing(sqlite3.connect(data / DB_FILE)) as conn:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        columns = {r[1] for r in conn.execute("PRAGMA table_info(audit)")}
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE sql IS NOT NULL")}
    return version, columns, names


def test_the_fixture_is_a_database_from_before_versions(tmp_path: Path) -> None:
    version, columns, names = schema(old_database_in(tmp_path))
    assert version == 0
    assert "exp" not in columns
    assert names == {"credentials", "live_names", "audit", "audit_at"}


def test_opening_an_old_database_upgrades_it_and_keeps_its_rows(tmp_path: Path) -> None:
    data = old_database_in(tmp_path)
    with closing(open_store(data)) as store:
        rows = {r.id: r for r in store.list_credentials()}
        assert {(r.kind, r.name, r.revoked_at) for r in rows.values()} == {
            ("dev", "alice", None),
            ("ci", "web", None),
            ("ci", "gone", NOW + 3),
        }
        assert set(rows) == {DEV_ID, CI_ID, GONE_ID}
        assert rows[CI_ID].extra_tags == '{"team": "qa"}'
        assert rows[CI_ID].last_used_at == NOW + 10  # set by the old broker's audit write
        audit = store.read_audit()
        assert [(r.caller_id, r.result, r.error, r.exp) for r in audit] == [
            (CI_ID, "ok", None, None),  # exp: a column the old schema did not have
            (CI_ID, "refused", "scope_not_allowed", None),
        ]
        assert audit[0].scope == "ci/web/pr-1/run-1"
        assert store.read_refusals() == []
        # What the new columns and table are for works on the upgraded file.
        store.write_audit(
            [
                AuditRecord(
                    NOW + 20.0,
                    "ci",
                    CI_ID,
                    "s",
                    "ci/web/x",
                    "j",
                    "kid-old",
                    "c",
                    "ok",
                    None,
                    NOW + 300,
                )
            ],
            [RefusalCount(NOW // 60 * 60, "10.0.0.1", "unauthorized", 2)],
        )
        assert store.max_exp("kid-old") == NOW + 300
        assert store.read_refusals() == [
            RefusalCount(NOW // 60 * 60, "10.0.0.1", "unauthorized", 2)
        ]
    version, columns, names = schema(data)
    assert version == SCHEMA_VERSION
    assert "exp" in columns
    assert {"refusals", "audit_kid_exp"} <= names
    with closing(open_store(data)) as store:  # opening it again migrates nothing more
        assert len(store.read_audit()) == 3
    assert schema(data)[0] == SCHEMA_VERSION


def test_a_credential_from_the_old_database_still_authenticates(tmp_path: Path) -> None:
    with closing(open_store(old_database_in(tmp_path))) as store:
        dev = credentials.authenticate(store, DEV_SECRET, NOW + 60)
        assert (dev.kind, dev.id, dev.name, dev.max_ttl) == ("dev", DEV_ID, "alice", 900)
        ci = credentials.authenticate(store, CI_SECRET, NOW + 60)
        assert (ci.id, ci.allowance.pattern, dict(ci.extra_tags)) == (
            CI_ID,
            "ci/web/pr-*/run-*",
            {"team": "qa"},
        )
        with pytest.raises(Unauthorized):
            credentials.authenticate(store, DEV_SECRET[:-1] + "x", NOW + 60)


def test_a_broker_started_on_an_old_database_mints_for_its_credentials(
    tmp_path: Path, live_broker: StartBroker
) -> None:
    old_database_in(tmp_path / "data")  # the live broker's data_dir
    broker = live_broker(credential_minting=True)
    auth = {"Authorization": f"Bearer {CI_SECRET}"}
    resp = broker.client.post(
        "/v1/mint-oidc-jwt", headers=auth, json={"scope": "ci/web/pr-2/run-9"}
    )
    assert resp.status_code == 200, resp.text
    with closing(open_store(tmp_path / "data")) as store:
        minted = store.read_audit(caller=CI_ID)[-1]
    assert (minted.jti, minted.result) == (resp.json()["jti"], "ok")
    assert minted.exp == resp.json()["expiration"]


def test_a_database_newer_than_this_broker_is_refused(tmp_path: Path) -> None:
    data = old_database_in(tmp_path)
    with closing(sqlite3.connect(data / DB_FILE)) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match="newer than this broker's"):
        open_store(data)
