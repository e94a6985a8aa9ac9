"""``test-broker backup`` and ``restore``: the data dir, copied consistently beside a live broker."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from broker.cli.common import OneLineUsage, config_option, json_option, reports_errors
from broker.config import load_settings
from broker.store.backup import Copied, backup, restore
from broker.store.keys import KeyStore

_DIR = click.Path(path_type=Path, file_okay=False)


def _show(copied: Copied, verb: str, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(asdict(copied), indent=2))
        return
    click.echo(
        f"{verb} {copied.path}: schema {copied.schema_version}, {copied.credentials} "
        f"credentials, {copied.audit_records} audit records, keys {', '.join(copied.kids)}"
        + (f", {', '.join(copied.files)}" if copied.files else "")
    )


@click.command("backup", cls=OneLineUsage)
@click.argument("dest", type=_DIR)
@config_option
@json_option
@reports_errors
def backup_command(dest: Path, config_file: Path | None, as_json: bool) -> None:
    """Copy the data dir into the new directory DEST, safely while the broker runs.

    The database is copied with SQLite's online backup (never cp it beside a running broker),
    the keys under their lock; DEST appears only once complete. Run it as the broker's user.

    \b
    Example:
      test-broker backup /var/backups/test-broker/$(date +%F) --config /etc/test-broker/config.toml
    """
    settings = load_settings(config_file)
    policy = KeyStore.for_settings(settings).policy
    _show(backup(settings.data_dir, dest, policy), "backed up to", as_json)


@click.command("restore", cls=OneLineUsage)
@click.argument("source", type=_DIR)
@config_option
@json_option
@reports_errors
def restore_command(source: Path, config_file: Path | None, as_json: bool) -> None:
    """Restore a backup made by `test-broker backup` into the (empty) data dir.

    Refused while the data dir holds a database, keys or secrets: stop the broker and move the
    data dir aside first. An older backup is migrated to this version's schema.

    \b
    Example:
      test-broker restore /var/backups/test-broker/2026-11-30 --config /etc/test-broker/config.toml
    """
    settings = load_settings(config_file)
    policy = KeyStore.for_settings(settings).policy
    _show(restore(source, settings.data_dir, policy), "restored into", as_json)
