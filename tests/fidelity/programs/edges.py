"""Stand-in for the opencv example's ``edges.py`` (OpenCV Canny edge detection).

Input: every file under INPUT (default ``/pfs/images``), walked like the original.
Output: ``OUTPUT/<stem>.png`` per input file (default ``/pfs/out``); the "edge map" is
the input's bytes behind a marker, so a test can tell which image it came from.
Idempotent: the same inputs give the same bytes.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def edge_map(image: bytes) -> bytes:
    """The stand-in's edge detection: the image's bytes behind a marker."""
    return b"edges of " + image


def main(argv: list[str]) -> int:
    source = Path(argv[0] if argv else "/pfs/images")
    out = Path(argv[1] if len(argv) > 1 else "/pfs/out")
    for dirpath, _dirs, files in os.walk(source):
        for name in files:
            image = Path(dirpath) / name
            (out / f"{image.stem}.png").write_bytes(edge_map(image.read_bytes()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
