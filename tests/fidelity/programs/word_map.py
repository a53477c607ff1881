"""Stand-in for the word_count example's ``map.go`` (the ``app`` of its image).

Usage: ``word_map.py INPUT OUTPUT``.
Input: every file under INPUT (one scraped page per datum, glob ``/*/*``).
Output: ``OUTPUT/$PACH_DATUM_ID/<word>`` per word, holding how many times the word
occurs, then a newline. Words are runs of ASCII letters, lower-cased, as ``map.go``
splits them. A datum writes under its own id, so no two datums write one path.
"""

from __future__ import annotations

import os
import re
import sys
from collections import Counter
from pathlib import Path


def count_words(text: str) -> Counter[str]:
    """Occurrences of each lower-cased run of letters."""
    return Counter(w for w in re.split(r"[^A-Za-z]+", text.lower()) if w)


def main(argv: list[str]) -> int:
    source, out = Path(argv[0]), Path(argv[1]) / os.environ["PACH_DATUM_ID"]
    counts: Counter[str] = Counter()
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        counts.update(count_words(path.read_text()))
    out.mkdir(parents=True, exist_ok=True)
    for word, n in counts.items():
        (out / word).write_text(f"{n}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
