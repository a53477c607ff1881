"""The GCS bucket the BigQuery exports land in, behind a small interface.

:class:`ExportStore` is all the ingest stage needs: list the objects under a
prefix (name, size, generation, MD5, times, custom metadata) and read one exact
generation. :class:`GcsExportStore` implements it with google-cloud-storage;
every call is retried a bounded number of times with exponential backoff on
connection errors, timeouts, 429 and 5xx, then fails with :class:`StoreError`
naming the bucket (never a credential or the endpoint).

:func:`make_client` uses anonymous credentials against an emulator whenever
``emulator_host`` is non-empty (an empty ``STORAGE_EMULATOR_HOST`` means real
GCS), otherwise the default credentials (``GOOGLE_APPLICATION_CREDENTIALS``).

The emulator server and the simulated exporter's uploads are the local
runner's (:mod:`lensrun.emulator`).
"""

from __future__ import annotations

import hashlib
import time
from base64 import b64encode
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

import requests
from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

from lensfeed.retry import Backoff, retrying

#: The interface to an export bucket; the repos' Parquet bytes are :mod:`lensfeed.parquet`'s.
__all__ = [
    "LANDED_AT",
    "ExportStore",
    "GcsExportStore",
    "ObjectGone",
    "ObjectInfo",
    "StoreError",
    "make_client",
    "md5_base64",
    "parse_rfc3339",
    "rfc3339",
]

EMULATOR_PROJECT = "lens-emulator"
LANDED_AT = "landed_at"
_RETRYABLE = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
    auth_exceptions.TransportError,
    api_exceptions.ServerError,
    api_exceptions.TooManyRequests,
)
T = TypeVar("T")


class StoreError(RuntimeError):
    """The bucket cannot be listed or read (unreachable, denied, missing): fatal for a tick."""


class ObjectGone(LookupError):
    """The listed generation of an object no longer exists (overwritten or deleted)."""


@dataclass(frozen=True)
class ObjectInfo:
    """One object version as a listing shows it. ``md5`` is base64 (None for composites)."""

    name: str
    size: int
    generation: int
    md5: str | None
    time_created: datetime
    custom_time: datetime | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


class ExportStore(Protocol):
    """Read access to the export bucket."""

    @property
    def bucket(self) -> str: ...

    def list_objects(self, prefix: str) -> list[ObjectInfo]:
        """Every live object whose name starts with ``prefix``, sorted by name."""
        ...

    def read(self, name: str, generation: int) -> bytes:
        """The bytes of exactly this generation; :class:`ObjectGone` if it no longer exists."""
        ...


def make_client(emulator_host: str = "") -> storage.Client:
    """A storage client: anonymous against ``emulator_host`` if non-empty, else real GCS."""
    if emulator_host:
        return storage.Client(
            project=EMULATOR_PROJECT,
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
            client_options={"api_endpoint": emulator_host},
        )
    try:
        return storage.Client()
    except (auth_exceptions.GoogleAuthError, OSError) as exc:  # OSError: no project found
        raise StoreError(
            f"cannot create a GCS client ({type(exc).__name__}); "
            "check GOOGLE_APPLICATION_CREDENTIALS"
        ) from None


def _describe(exc: BaseException) -> str:
    """The error's kind and HTTP status only: messages can carry endpoints or tokens."""
    code = getattr(exc, "code", None)
    return f"{type(exc).__name__} {code}" if isinstance(code, int) else type(exc).__name__


class GcsExportStore:
    """:class:`ExportStore` over one bucket, with bounded retries.

    Args:
        client: a ``google.cloud.storage.Client`` (see :func:`make_client`).
        bucket: the bucket name.
        attempts: tries per call (>= 1); waits ``base_delay * 2**k`` (at most
            ``max_delay``) between them.
        timeout: seconds per HTTP request.
        sleep: the wait function (tests pass a no-op).
    """

    def __init__(
        self,
        client: storage.Client,
        bucket: str,
        *,
        attempts: int = 5,
        base_delay: float = 0.5,
        max_delay: float = 30.0,
        timeout: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {attempts}")
        self._client = client
        self._bucket = bucket
        self.attempts = attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.timeout = timeout
        self._sleep = sleep

    @property
    def bucket(self) -> str:
        return self._bucket

    def _retrying(self, what: str, call: Callable[[], T]) -> T:
        backoff = Backoff(self.attempts, self.base_delay, self.max_delay)
        try:
            return retrying(call, backoff, _RETRYABLE, sleep=self._sleep)
        except _RETRYABLE as exc:
            raise StoreError(
                f"gs://{self._bucket}: {what} failed after {self.attempts} attempts "
                f"(last error: {_describe(exc)}); is the bucket reachable?"
            ) from None
        except api_exceptions.GoogleAPICallError as exc:
            raise StoreError(f"gs://{self._bucket}: {what} failed ({_describe(exc)})") from None

    def list_objects(self, prefix: str) -> list[ObjectInfo]:
        def listing() -> list[ObjectInfo]:
            blobs = self._client.list_blobs(
                self._bucket, prefix=prefix, retry=None, timeout=self.timeout
            )
            return [_info(blob) for blob in blobs]

        return sorted(self._retrying(f"listing {prefix!r}", listing), key=lambda o: o.name)

    def read(self, name: str, generation: int) -> bytes:
        blob = self._client.bucket(self._bucket).blob(name, generation=generation)

        def download() -> bytes:
            try:
                data: bytes = blob.download_as_bytes(
                    retry=None, timeout=self.timeout, checksum=None
                )
            except api_exceptions.NotFound:
                raise ObjectGone(f"generation {generation} no longer exists") from None
            return data

        return self._retrying(f"reading {name!r}", download)


def _info(blob: Any) -> ObjectInfo:
    return ObjectInfo(
        name=blob.name,
        size=int(blob.size or 0),
        generation=int(blob.generation),
        md5=blob.md5_hash,
        time_created=blob.time_created,
        custom_time=blob.custom_time,
        metadata=dict(blob.metadata or {}),
    )


def md5_base64(data: bytes) -> str:
    """The MD5 of ``data`` as GCS lists it (base64 of the digest)."""
    return b64encode(hashlib.md5(data).digest()).decode("ascii")


def rfc3339(moment: datetime) -> str:
    """UTC RFC 3339 with ``Z``; microseconds only when non-zero."""
    text = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    return text.removesuffix(".000000") + "Z"


def parse_rfc3339(text: str) -> datetime | None:
    """The time :func:`rfc3339` (or any ISO 8601 time with a zone) writes; None if not one."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo is not None else None
