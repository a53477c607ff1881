"""Kubernetes-style secrets, as ``pachctl create secret -f`` takes them.

A secret file is a ``v1`` ``Secret`` in JSON with ``data`` (base64) and/or
``stringData`` (plain) maps. Values are kept in ``<home>/secrets/<name>.json``
(directory 0700, files 0600), outside version control, and are never printed:
listings show names and keys only, and errors name the secret and key, never
the value.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import time
from pathlib import Path
from typing import Any

# Kubernetes' DNS subdomain: dot-separated labels of lowercase letters, digits and '-'
SECRET_NAME_RE = re.compile(
    r"(?=.{1,253}\Z)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
)
KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")


class SecretError(ValueError):
    """A malformed, duplicate or missing secret; the message names it (never its values)."""


def parse_secret(doc: Any, source: str) -> tuple[str, dict[str, bytes]]:
    """Validate a Kubernetes Secret document.

    Args:
        doc: the decoded JSON document.
        source: where it came from, for messages.

    Returns:
        The secret's name and its decoded key -> value map.
    """
    if not isinstance(doc, dict):
        raise SecretError(f"{source}: a secret must be a JSON object")
    if doc.get("kind", "Secret") != "Secret":
        raise SecretError(f"{source}: kind: expected 'Secret', got {doc.get('kind')!r}")
    if doc.get("apiVersion", "v1") != "v1":
        raise SecretError(f"{source}: apiVersion: expected 'v1', got {doc.get('apiVersion')!r}")
    unknown = set(doc) - {"kind", "apiVersion", "metadata", "data", "stringData", "type"}
    if unknown:
        raise SecretError(f"{source}: {sorted(unknown)[0]}: unknown field")
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not SECRET_NAME_RE.fullmatch(name):
        raise SecretError(f"{source}: metadata.name: a lowercase DNS-1123 name is required")
    values: dict[str, bytes] = {}
    for field in ("data", "stringData"):
        block = doc.get(field, {})
        if block is None:
            continue
        if not isinstance(block, dict):
            raise SecretError(f"{source}: {field}: expected an object of key -> string")
        for key, raw in block.items():
            where = f"{source}: {field}.{key}"
            if not KEY_RE.fullmatch(key) or key in (".", ".."):
                # Kubernetes' rule: a key becomes a file name under the secret's mountPath
                raise SecretError(
                    f"{where}: invalid key name (letters, digits, '-', '_', '.'; not '.' or '..')"
                )
            if not isinstance(raw, str):
                raise SecretError(f"{where}: expected a string value")
            if field == "data":
                try:
                    values[key] = base64.b64decode(raw, validate=True)
                except binascii.Error:
                    raise SecretError(f"{where}: value is not valid base64") from None
            else:
                values[key] = raw.encode()
    if not values:
        raise SecretError(f"{source}: secret {name} has no data or stringData")
    return name, values


class SecretStore:
    """Secrets of one state directory, one 0600 file each."""

    def __init__(self, home: Path) -> None:
        self.dir = home / "secrets"

    def _path(self, name: str) -> Path:
        if not SECRET_NAME_RE.fullmatch(name):
            raise SecretError(f"secret name {name!r} is invalid")
        return self.dir / f"{name}.json"

    def create(self, name: str, values: dict[str, bytes]) -> None:
        """Store a new secret; like pachctl, an existing one must be deleted first."""
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)
        path = self._path(name)
        if path.exists():
            raise SecretError(f"secret {name} already exists (delete it first)")
        doc = {
            "name": name,
            "created": time.time(),
            "data": {k: base64.b64encode(v).decode() for k, v in sorted(values.items())},
        }
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, path)

    def delete(self, name: str) -> None:
        path = self._path(name)
        if not path.exists():
            raise SecretError(f"secret {name} not found")
        path.unlink()

    def get(self, name: str) -> dict[str, bytes]:
        """The decoded values of a secret; a missing secret is an error, never a default."""
        path = self._path(name)
        if not path.exists():
            raise SecretError(f"secret {name} not found (create it with 'create secret -f')")
        doc = json.loads(path.read_text())
        return {k: base64.b64decode(v) for k, v in doc["data"].items()}

    def list(self) -> list[tuple[str, list[str], float]]:
        """Name, keys and creation time of every secret (values are never listed)."""
        if not self.dir.exists():
            return []
        out = []
        for path in sorted(self.dir.glob("*.json")):
            doc = json.loads(path.read_text())
            out.append((doc["name"], sorted(doc["data"]), float(doc["created"])))
        return out
