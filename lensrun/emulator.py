"""The GCS emulator for tests and the demo, and the simulated exporter's uploads.

:class:`EmulatorServer` runs ``gcp-storage-emulator`` in-process on 127.0.0.1;
:func:`upload_exports` lands generated :class:`lensrun.generate.ExportObject`
objects with their landing time in ``custom_time`` and in metadata ``landed_at``
(RFC 3339), with the completion markers of their snapshot runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any

from google.cloud import storage

from lensfeed.gcs import LANDED_AT, make_client, rfc3339
from lensfeed.parquet import parquet_bytes
from lensfeed.snapshots import plan_markers

if TYPE_CHECKING:
    from lensrun.generate import ExportObject


def upload_bytes(bucket: Any, name: str, data: bytes, landed: datetime) -> None:
    """Upload one object with its landing time in ``custom_time`` and ``landed_at``."""
    blob = bucket.blob(name)
    blob.custom_time = landed
    blob.metadata = {LANDED_AT: rfc3339(landed)}
    blob.upload_from_string(data, content_type="application/octet-stream")


def upload_exports(
    bucket: Any,
    objects: Iterable[ExportObject],
    landed: Callable[[ExportObject], datetime],
    *,
    markers: bool = True,
) -> list[str]:
    """Land generated export objects in ``bucket`` (a ``storage.Bucket``) as Parquet.

    With ``markers`` (the default, as the exporter does), the completion marker of
    every snapshot run whose parts are all in ``objects``
    (:func:`lensfeed.snapshots.plan_markers`) is uploaded after the parts, landing
    with the run's last part to land; ``markers=False`` lands exports from before
    that contract.

    Returns:
        The object names, in upload order.
    """
    objects = list(objects)
    names = []
    for obj in objects:
        upload_bytes(bucket, obj.name, parquet_bytes(obj.table_data), landed(obj))
        names.append(obj.name)
    for marker in plan_markers(objects) if markers else []:
        last = max(landed(objects[i]) for i in marker.members)
        upload_bytes(bucket, marker.name, marker.data, last)
        names.append(marker.name)
    return names


class EmulatorServer:
    """An in-memory ``gcp-storage-emulator`` on 127.0.0.1 and a free port, as a context manager.

    ``host`` is ``http://127.0.0.1:PORT`` (the value for ``STORAGE_EMULATOR_HOST``).
    """

    def __init__(self, bucket: str = "lens-exports") -> None:
        self.bucket = bucket
        self.host = ""
        self._server: Any = None

    def start(self) -> EmulatorServer:
        from gcp_storage_emulator.server import create_server

        # port 0 lets the OS pick a free port without a probe-then-bind race; the
        # emulator's own start() would wait forever if its bind failed
        server = create_server("127.0.0.1", 0, in_memory=True, default_bucket=self.bucket)
        api = server._api
        api.start()
        if not api.is_running.wait(timeout=10):
            raise RuntimeError("the GCS emulator did not start within 10 s")
        self.host = f"http://127.0.0.1:{api._httpd.server_address[1]}"
        self._server = server
        return self

    def client(self) -> storage.Client:
        return make_client(self.host)

    def wipe(self) -> None:
        """Delete every object, keeping the buckets."""
        self._server.wipe(keep_buckets=True)

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
