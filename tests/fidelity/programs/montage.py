"""Stand-in for ImageMagick's ``montage`` as the opencv example's montage pipeline calls it:
``montage [-option value | -flag]... FILE... OUTPUT``.

Output: OUTPUT holds one tile per FILE, in argument order: ``<dir>/<name>: <bytes>``
and a newline, where ``<dir>`` is the file's parent directory name (the input repo).
"""

from __future__ import annotations

import sys
from pathlib import Path

# montage options that take a value; every other "-x" is a flag
VALUED = {"-background", "-geometry", "-tile", "-label", "-title"}


def split_args(argv: list[str]) -> tuple[list[str], str]:
    """The input files and the output file of a montage command line."""
    files: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in VALUED:
            skip = True
        elif not arg.startswith("-"):
            files.append(arg)
    if not files:
        raise SystemExit("montage: no output file")
    return files[:-1], files[-1]


def main(argv: list[str]) -> int:
    files, output = split_args(argv)
    tiles = [
        f"{Path(f).parent.name}/{Path(f).name}: ".encode() + Path(f).read_bytes() + b"\n"
        for f in files
    ]
    Path(output).write_bytes(b"".join(tiles))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
