"""Stand-in for ``wget --adjust-extension --no-directories --directory-prefix DIR URL...``
as the word_count example's scraper runs it, without a network.

Usage: ``fetch.py DIR URL...``.
Output: ``DIR/<last path segment of the URL>.html`` per URL, holding the page from a
fixed table of offline pages. An unknown URL exits 8, wget's "server issued an error
response", which the scraper spec accepts (``acceptReturnCode``).
"""

from __future__ import annotations

import sys
from pathlib import Path


def page(body: str) -> str:
    return f"<html>{body}</html>\n"


# examples/word_count/data/Wikipedia and data/Github name these URLs; the counts are
# the README's: `license` 5 times on each Wikipedia page and 23 times on the GitHub one.
PAGES = {
    "https://en.wikipedia.org/wiki/Main_Page": page("license " * 5 + "liberated librarians"),
    "https://en.wikipedia.org/wiki/Pachyderm": page("license " * 5 + "library licenses"),
    "https://github.com/pachyderm/pachyderm": page("license " * 23 + "libraries"),
}


def main(argv: list[str]) -> int:
    target, urls = Path(argv[0]), argv[1:]
    target.mkdir(parents=True, exist_ok=True)
    status = 0
    for url in urls:
        if url not in PAGES:
            status = 8
            continue
        (target / f"{url.rstrip('/').rsplit('/', 1)[-1]}.html").write_text(PAGES[url])
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
