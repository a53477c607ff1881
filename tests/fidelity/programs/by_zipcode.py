"""Stand-in for the joins example's ``inner/main.py`` and ``outer/main.py``.

Usage: ``by_zipcode.py KIND STORES ORDERS OUTPUT``, KIND ``Purchase`` or ``Return``.
Input: one join datum: at most one ``STORES/STOREID<n>.txt`` (JSON with ``storeid``,
``name`` and ``address.zipcode``) and at most one order file in ORDERS. The store's id
comes from ``PACH_DATUM_stores_JOIN_ON``, which the worker sets only when the datum
holds a stores file, as the original reads it.
Output: ``OUTPUT/<zipcode>/<order file name>`` (the store file's name when the datum
has no order; zipcode ``UNKNOWN`` when it has no store): a separator line naming the
store, then the order's text. One file per datum, so the job is idempotent.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def separator(kind: str, store: dict[str, str] | None) -> str:
    """The line the original writes before the order: which store the order is from."""
    if store is None:
        return "\nThis return store does not exist \n"
    return f"\n{kind} at store: {store['storeid']} - {store['name']} \n"


def main(argv: list[str]) -> int:
    kind, stores, orders, out = argv[0], Path(argv[1]), Path(argv[2]), Path(argv[3])
    # the worker names the variable after the input, in the input's case
    store_id = os.environ.get("PACH_DATUM_stores_JOIN_ON")  # noqa: SIM112
    store_file = stores / f"STOREID{store_id}.txt"
    store = json.loads(store_file.read_text()) if store_id is not None else None
    zipcode = store["address"]["zipcode"] if store else "UNKNOWN"
    order_files = sorted(orders.glob("*.txt")) if orders.is_dir() else []
    name = order_files[0].name if order_files else store_file.name
    text = separator(kind, store) + (order_files[0].read_text() if order_files else "")
    (out / zipcode).mkdir(parents=True, exist_ok=True)
    (out / zipcode / name).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
