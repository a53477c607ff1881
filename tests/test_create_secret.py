"""``create_secret.sh``: values arrive intact, are never printed, and a secret is replaced in
one step (never deleted first), against pachlocal and against fake ``kubectl`` and ``pachctl``
that keep their secrets in a state file."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pachlocal.secrets import SecretStore

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "pw-Zq81!x"  # a fake credential that must never show up in output
DSN = f"postgresql://feed:{PASSWORD}@db.internal:5432/lens"
BUCKET = "bkt-Q7v2"
KEY_MATERIAL = "fake-key-material"
PACHD_LABELS = {"suite": "pachyderm", "secret-source": "pachyderm-user"}
CLEARED = ("PGSQL_URL", "GCS_", "STORAGE_EMULATOR_HOST", "PACHLOCAL", "FAKE_", "PYTHON")


def script_env(**env: str) -> dict[str, str]:
    kept = {k: v for k, v in os.environ.items() if not k.startswith(CLEARED)}
    return {**kept, "PYTHON": sys.executable, **env}


def run(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full = script_env(
        PACHLOCAL_HOME=str(home), PACHLOCAL=str(Path(sys.executable).parent / "pachlocal"), **env
    )
    return subprocess.run(
        ["bash", str(ROOT / "create_secret.sh"), "--local", *args],
        env=full,
        capture_output=True,
        text=True,
    )


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "sa.json"
    path.write_text(json.dumps({"type": "service_account", "private_key": KEY_MATERIAL}))
    return path


@pytest.mark.slow  # several seconds: the full tier only
def test_creates_every_secret_without_printing_values(tmp_path: Path, key_file: Path) -> None:
    home = tmp_path / "state"
    res = run(home, PGSQL_URL=DSN, GCS_BUCKET="exports", GCS_SERVICE_ACCOUNT_FILE=str(key_file))
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        "created secret lens-gcs (keys: bucket emulator_host prefix service-account.json)",
        "created secret lens-postgres (keys: dsn)",
    ]
    store = SecretStore(home)
    assert store.get("lens-postgres") == {"dsn": DSN.encode()}
    assert store.get("lens-gcs") == {
        "bucket": b"exports",
        "emulator_host": b"",
        "prefix": b"",
        "service-account.json": key_file.read_bytes(),
    }
    assert PASSWORD not in res.stdout + res.stderr
    assert KEY_MATERIAL not in res.stdout + res.stderr
    # running it again replaces the secret (pachlocal state is local: delete, then create)
    again = run(home, "lens-postgres", PGSQL_URL="postgresql://other/db")
    assert again.returncode == 0, again.stderr
    assert again.stdout == "replaced secret lens-postgres (keys: dsn)\n"
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


def test_namespace_is_for_kubectl_only(tmp_path: Path) -> None:
    res = run(tmp_path / "state", "--namespace", "pachyderm", "lens-postgres", PGSQL_URL=DSN)
    assert res.returncode == 2
    assert "--namespace is for kubectl, which is not in use (via pachlocal)" in res.stderr
    assert not (tmp_path / "state" / "secrets").exists()


def test_templates_hold_placeholders_only() -> None:
    for template in sorted((ROOT / "secrets").glob("*.json")):
        doc = json.loads(template.read_text())
        assert "data" not in doc, f"{template.name}: templates use stringData placeholders only"
        for key, value in doc["stringData"].items():
            assert value.lstrip("@").startswith("${") and value.endswith("}"), (
                f"{template.name}: {key}"
            )


# --- against a cluster: fake kubectl and pachctl ------------------------------------------------

# A kubectl that keeps secrets in $FAKE_STATE ("namespace/name" -> manifest), logs each call's
# argv to $FAKE_LOG and each manifest file's path and modes to $FAKE_FILES. FAKE_FAIL=VERB:NAME
# makes that call fail as a lost connection would, changing nothing.
FAKE_KUBECTL = r"""
import json, os, stat, sys

args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(["kubectl", *args]) + "\n")
namespace, rest = "default", []
while args:
    arg = args.pop(0)
    if arg in ("-n", "--namespace"):
        namespace = args.pop(0)
    else:
        rest.append(arg)
path = os.environ["FAKE_STATE"]
state = json.load(open(path)) if os.path.exists(path) else {}

def fail(message):
    print(message, file=sys.stderr)
    sys.exit(1)

verb = rest[0]
if verb == "get" and rest[1] == "secret":
    name = rest[2]
    if os.environ.get("FAKE_FAIL") == f"get:{name}":
        fail("Unable to connect to the server: connection refused")
    if f"{namespace}/{name}" in state:
        print(f"secret/{name}")
    elif "--ignore-not-found" not in rest:
        fail(f'Error from server (NotFound): secrets "{name}" not found')
    sys.exit(0)
if verb in ("create", "replace") and rest[1] == "-f":
    manifest = rest[2]
    with open(os.environ["FAKE_FILES"], "a") as files:
        modes = [stat.S_IMODE(os.stat(p).st_mode) for p in (manifest, os.path.dirname(manifest))]
        files.write(json.dumps({"path": manifest, "modes": modes}) + "\n")
    doc = json.load(open(manifest))
    name = doc["metadata"]["name"]
    key = f"{namespace}/{name}"
    if os.environ.get("FAKE_FAIL") == f"{verb}:{name}":
        fail("error: http2: client connection lost")
    if verb == "create" and key in state:
        fail(f'Error from server (AlreadyExists): secrets "{name}" already exists')
    if verb == "replace" and key not in state:
        fail(f'Error from server (NotFound): secrets "{name}" not found')
    state[key] = doc
    json.dump(state, open(path, "w"))
    print(f"secret/{name} {verb}d")
    sys.exit(0)
if verb == "delete":
    state.pop(f"{namespace}/{rest[-1]}", None)
    json.dump(state, open(path, "w"))
    sys.exit(0)
fail(f"fake kubectl: unsupported call {rest}")
"""

# A pachctl with pachd's secret verbs: create (refused when the secret exists) and delete.
FAKE_PACHCTL = r"""
import json, os, sys

args = sys.argv[1:]
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps(["pachctl", *args]) + "\n")
path = os.environ["FAKE_STATE"]
state = json.load(open(path)) if os.path.exists(path) else {}
if args[:3] == ["create", "secret", "-f"]:
    doc = json.load(open(args[3]))
    name = doc["metadata"]["name"]
    if name in state:
        print(f"failed to create secret: secrets \"{name}\" already exists", file=sys.stderr)
        sys.exit(1)
    state[name] = doc
elif args[:2] == ["delete", "secret"]:
    state.pop(args[2], None)
else:
    print(f"fake pachctl: unsupported call {args}", file=sys.stderr)
    sys.exit(1)
json.dump(state, open(path, "w"))
"""


class Cluster:
    """Fake cluster clients on a PATH of their own; what they were asked and what they hold."""

    def __init__(self, root: Path, client: str) -> None:
        self.bin = root / "bin"
        self.bin.mkdir(parents=True)
        self.state, self.log, self.files = root / "state.json", root / "calls", root / "files"
        fake = self.bin / client
        fake.write_text(
            f"#!{sys.executable}\n" + (FAKE_KUBECTL if client == "kubectl" else FAKE_PACHCTL)
        )
        fake.chmod(0o755)
        if client == "kubectl":
            self.path = f"{self.bin}{os.pathsep}{os.environ['PATH']}"
        else:
            # no kubectl anywhere on PATH: only the tools the script needs, and pachctl
            for tool in ("basename", "cat", "cp", "dirname", "grep", "mkdir", "mktemp", "rm"):
                found = shutil.which(tool)
                assert found, tool
                (self.bin / tool).symlink_to(found)
            self.path = str(self.bin)

    def run(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        full = script_env(
            PATH=self.path,
            FAKE_STATE=str(self.state),
            FAKE_LOG=str(self.log),
            FAKE_FILES=str(self.files),
            **env,
        )
        return subprocess.run(
            [shutil.which("bash") or "bash", str(ROOT / "create_secret.sh"), *args],
            env=full,
            capture_output=True,
            text=True,
        )

    def secrets(self) -> dict[str, Any]:
        held: dict[str, Any] = json.loads(self.state.read_text()) if self.state.exists() else {}
        return held

    def values(self, key: str) -> dict[str, bytes]:
        return {k: base64.b64decode(v) for k, v in self.secrets()[key]["data"].items()}

    def calls(self) -> list[list[str]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def manifests(self) -> list[dict[str, Any]]:
        if not self.files.exists():
            return []
        return [json.loads(line) for line in self.files.read_text().splitlines()]


def assert_no_value_leaked(cluster: Cluster, res: subprocess.CompletedProcess[str]) -> None:
    argv = json.dumps(cluster.calls())
    for value in (PASSWORD, DSN, BUCKET, KEY_MATERIAL, "postgresql://"):
        assert value not in argv, f"{value!r} reached a command line"
        assert value not in res.stdout + res.stderr, f"{value!r} was printed"


def verbs(cluster: Cluster) -> list[tuple[str, str]]:
    """(client, verb) of every call."""
    return [(call[0], call[1]) for call in cluster.calls()]


@pytest.fixture
def kubectl(tmp_path: Path) -> Cluster:
    return Cluster(tmp_path / "cluster", "kubectl")


def test_kubectl_creates_then_replaces_in_place_and_never_deletes(
    kubectl: Cluster, key_file: Path
) -> None:
    env = {"PGSQL_URL": DSN, "GCS_BUCKET": BUCKET, "GCS_SERVICE_ACCOUNT_FILE": str(key_file)}
    first = kubectl.run(**env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        "created secret lens-gcs (keys: bucket emulator_host prefix service-account.json)",
        "created secret lens-postgres (keys: dsn)",
    ]
    assert sorted(kubectl.secrets()) == ["default/lens-gcs", "default/lens-postgres"]
    manifest = kubectl.secrets()["default/lens-postgres"]
    assert manifest["kind"] == "Secret" and manifest["type"] == "Opaque"
    assert manifest["metadata"] == {"name": "lens-postgres", "labels": PACHD_LABELS}
    assert kubectl.values("default/lens-postgres") == {"dsn": DSN.encode()}
    assert kubectl.values("default/lens-gcs") == {
        "bucket": BUCKET.encode(),
        "emulator_host": b"",
        "prefix": b"",
        "service-account.json": key_file.read_bytes(),
    }
    assert_no_value_leaked(kubectl, first)

    again = kubectl.run("lens-postgres", PGSQL_URL=f"postgresql://feed:{PASSWORD}@db2/lens")
    assert again.returncode == 0, again.stderr
    assert again.stdout == "replaced secret lens-postgres (keys: dsn)\n"
    assert kubectl.values("default/lens-postgres") == {
        "dsn": f"postgresql://feed:{PASSWORD}@db2/lens".encode()
    }
    assert kubectl.values("default/lens-gcs")["bucket"] == BUCKET.encode()  # not named: untouched
    assert verbs(kubectl) == [
        ("kubectl", "get"),
        ("kubectl", "create"),
        ("kubectl", "get"),
        ("kubectl", "create"),
        ("kubectl", "get"),
        ("kubectl", "replace"),
    ]
    assert not any("delete" in call for call in kubectl.calls())
    assert_no_value_leaked(kubectl, again)
    # each manifest was a 0600 file in a 0700 directory, gone once the script exited
    written = kubectl.manifests()
    assert len(written) == 3
    for entry in written:
        assert entry["modes"] == [0o600, 0o700]
        assert not Path(entry["path"]).exists()


@pytest.mark.parametrize(
    ("fail", "message"),
    [
        ("replace:lens-postgres", "a failed replace leaves the previous secret in place"),
        ("get:lens-postgres", "cannot read secret lens-postgres with kubectl; nothing was changed"),
    ],
)
def test_a_kubectl_failure_midway_keeps_the_previous_secret(
    kubectl: Cluster, key_file: Path, fail: str, message: str
) -> None:
    old_dsn = "postgresql://feed:old-secret@db/lens"
    env = {"GCS_BUCKET": "old-bucket", "GCS_SERVICE_ACCOUNT_FILE": str(key_file)}
    assert kubectl.run(PGSQL_URL=old_dsn, **env).returncode == 0
    before = kubectl.secrets()

    res = kubectl.run(
        PGSQL_URL=DSN, GCS_BUCKET=BUCKET, GCS_SERVICE_ACCOUNT_FILE=str(key_file), FAKE_FAIL=fail
    )
    assert res.returncode == 1
    assert message in res.stderr
    # lens-gcs came first and was replaced; lens-postgres is exactly as it was
    assert (
        res.stdout
        == "replaced secret lens-gcs (keys: bucket emulator_host prefix service-account.json)\n"
    )
    assert kubectl.values("default/lens-gcs")["bucket"] == BUCKET.encode()
    assert kubectl.secrets()["default/lens-postgres"] == before["default/lens-postgres"]
    assert kubectl.values("default/lens-postgres") == {"dsn": old_dsn.encode()}
    assert not any("delete" in call for call in kubectl.calls())
    assert_no_value_leaked(kubectl, res)


def test_namespace_goes_to_every_kubectl_call(kubectl: Cluster) -> None:
    res = kubectl.run("--namespace", "pachyderm", "lens-postgres", PGSQL_URL=DSN)
    assert res.returncode == 0, res.stderr
    assert list(kubectl.secrets()) == ["pachyderm/lens-postgres"]
    assert all(call[1:3] == ["--namespace", "pachyderm"] for call in kubectl.calls())
    assert "namespace" not in kubectl.secrets()["pachyderm/lens-postgres"]["metadata"]


def test_without_kubectl_pachctl_creates_and_never_replaces(tmp_path: Path) -> None:
    pachctl = Cluster(tmp_path / "cluster", "pachctl")
    first = pachctl.run("lens-postgres", PGSQL_URL="postgresql://feed:old-secret@db/lens")
    assert first.returncode == 0, first.stderr
    assert first.stdout == "created secret lens-postgres (keys: dsn)\n"
    before = pachctl.secrets()
    assert before["lens-postgres"]["metadata"]["labels"] == PACHD_LABELS

    dry = pachctl.run("--dry-run", "lens-postgres", PGSQL_URL=DSN)
    assert dry.stdout == "would create secret lens-postgres with keys: dsn (via pachctl)\n"

    again = pachctl.run("lens-postgres", PGSQL_URL=DSN)
    assert again.returncode == 1
    assert "if it exists it was kept" in again.stderr
    assert "put kubectl on PATH to replace it atomically" in again.stderr
    assert pachctl.secrets() == before
    assert [c[:3] for c in pachctl.calls()] == [["pachctl", "create", "secret"]] * 2
    assert_no_value_leaked(pachctl, again)
