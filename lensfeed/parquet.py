"""Parquet writer options shared by every stage, pinned so equal tables give equal bytes.

(Byte equality also needs the same pyarrow version: it writes its version into
each file, which the pinned requirements guarantee.)
"""

from __future__ import annotations

from typing import Any

#: Options for ``pyarrow.parquet.write_table`` / ``ParquetWriter``.
WRITER_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 3,
    "use_dictionary": True,
    "write_statistics": True,
    "version": "2.6",
    "data_page_version": "1.0",
    "data_page_size": 1 << 20,
    "store_schema": True,
    "write_page_index": False,
    "write_page_checksum": False,
}
#: The same with a fixed row-group size, for writers that do not chunk rows themselves.
TABLE_OPTIONS: dict[str, Any] = {**WRITER_OPTIONS, "row_group_size": 1 << 20}
