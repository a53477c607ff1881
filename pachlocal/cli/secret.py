"""``pachlocal create|delete|list secret``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..engine import Engine
from ..secrets import SecretError, parse_secret
from .common import RAW, A, UsageError, ago, command, emit


@command("create", "secret", write=True, args=[A("-f", "--file", required=True)])
def create_secret(a: argparse.Namespace, e: Engine) -> int:
    try:
        doc = json.loads(Path(a.file).read_text())
    except OSError as exc:
        raise UsageError(f"cannot read {a.file}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"cannot read {a.file}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise SecretError(f"{a.file}: not valid JSON (line {exc.lineno})") from None
    name, values = parse_secret(doc, a.file)
    e.secrets.create(name, values)
    return 0


@command("delete", "secret", write=True, args=[A("name")])
def delete_secret(a: argparse.Namespace, e: Engine) -> int:
    e.secrets.delete(a.name)
    return 0


@command("list", "secret", write=False, args=[RAW])
def list_secret(a: argparse.Namespace, e: Engine) -> int:
    rows = e.secrets.list()
    emit(
        a.raw,
        [{"name": n, "keys": k, "created": c} for n, k, c in rows],
        ["NAME", "KEYS", "CREATED"],
        [(n, ",".join(k), ago(c)) for n, k, c in rows],
    )
    return 0
