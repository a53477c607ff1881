"""``create_secret.sh`` against pachlocal: values arrive intact and are never printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pachlocal.secrets import SecretStore

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "pw-Zq81!x"  # a fake credential that must never show up in output


def run(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = {
        **{k: v for k, v in os.environ.items() if k not in ("PGSQL_URL", "GCS_BUCKET")},
        "PACHLOCAL_HOME": str(home),
        "PACHLOCAL": str(Path(sys.executable).parent / "pachlocal"),
        **env,
    }
    return subprocess.run(
        ["bash", str(ROOT / "create_secret.sh"), "--local", *args],
        env=full,
        capture_output=True,
        text=True,
    )


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "sa.json"
    path.write_text(json.dumps({"type": "service_account", "private_key": "fake-key-material"}))
    return path


def test_creates_every_secret_without_printing_values(tmp_path: Path, key_file: Path) -> None:
    home = tmp_path / "state"
    dsn = f"postgresql://feed:{PASSWORD}@db.internal:5432/lens"
    res = run(home, PGSQL_URL=dsn, GCS_BUCKET="exports", GCS_SERVICE_ACCOUNT_FILE=str(key_file))
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "created secret lens-gcs (keys: bucket emulator_host prefix service-account.json)",
        "created secret lens-postgres (keys: dsn)",
    ]
    store = SecretStore(home)
    assert store.get("lens-postgres") == {"dsn": dsn.encode()}
    assert store.get("lens-gcs") == {
        "bucket": b"exports",
        "emulator_host": b"",
        "prefix": b"",
        "service-account.json": key_file.read_bytes(),
    }
    assert PASSWORD not in res.stdout + res.stderr
    assert "fake-key-material" not in res.stdout + res.stderr
    # running it again replaces the secrets (delete first, as pachctl requires)
    again = run(home, "lens-postgres", PGSQL_URL="postgresql://other/db")
    assert again.returncode == 0, again.stderr
    assert store.get("lens-postgres") == {"dsn": b"postgresql://other/db"}


def test_missing_variable_is_named_and_nothing_is_created(tmp_path: Path) -> None:
    home = tmp_path / "state"
    res = run(home, "lens-postgres")
    assert res.returncode == 1
    assert (
        res.stderr.strip()
        == "create_secret.sh: lens-postgres.dsn needs environment variable PGSQL_URL"
    )
    assert not (home / "secrets").exists()


def test_dry_run_prints_names_and_keys_only(tmp_path: Path) -> None:
    res = run(
        tmp_path / "state", "--dry-run", "lens-postgres", PGSQL_URL=f"postgresql://u:{PASSWORD}@h/d"
    )
    assert res.returncode == 0
    assert res.stdout == "would create secret lens-postgres with keys: dsn (via pachlocal)\n"
    assert not (tmp_path / "state" / "secrets").exists()


def test_templates_hold_placeholders_only() -> None:
    for template in sorted((ROOT / "secrets").glob("*.json")):
        doc = json.loads(template.read_text())
        assert "data" not in doc, f"{template.name}: templates use stringData placeholders only"
        for key, value in doc["stringData"].items():
            assert value.lstrip("@").startswith("${") and value.endswith("}"), (
                f"{template.name}: {key}"
            )
