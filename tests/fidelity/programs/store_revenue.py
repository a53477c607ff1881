"""Stand-in for the group example's ``main.py`` (pipeline ``group_store_revenue``).

Usage: ``store_revenue.py STORES PURCHASES RETURNS OUTPUT``.
Input: one group datum: every file of the three repos whose STOREID is the datum's
group. The store's id comes from ``PACH_DATUM_stores_GROUP_BY``, which the worker sets
only when the datum holds a stores file; without one the store is ``0``, as the
original assumes.
Output: ``OUTPUT/<store id>.txt``: a line naming the store, then the order total, the
return total and the net amount (orders - returns) of the store. One file per datum.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def amount(folder: Path) -> float:
    """Sum of QTY * UNIT_PRICE over the ``SKU|sku|QTY|n|UNIT_PRICE|p`` rows of the folder."""
    total = 0.0
    for order in sorted(folder.glob("*.txt")) if folder.is_dir() else []:
        for row in order.read_text().splitlines():
            cells = row.split("|")
            if cells[0] == "SKU":
                total += float(cells[3]) * float(cells[5])
    return total


def main(argv: list[str]) -> int:
    stores, purchases, returns, out = (Path(a) for a in argv[:4])
    # the worker names the variable after the input, in the input's case
    group = os.environ.get("PACH_DATUM_stores_GROUP_BY")  # noqa: SIM112
    store_id = "0" if group is None else group
    line = "\nThis return store does not exist \n"
    if store_id != "0":
        store = json.loads((stores / f"STOREID{store_id}.txt").read_text())
        line = f"\nStore: {store_id} - {store['name']} \n"
    ordered, returned = amount(purchases), amount(returns)
    totals = f"ORDER_AMOUNT|{ordered}|RETURN_AMOUNT|{returned}|NET_AMOUNT|{ordered - returned}"
    (out / f"{store_id}.txt").write_text(f"{line}\n{totals}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
