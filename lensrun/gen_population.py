"""The simulated population as it stands at ``end``: profiles (``public_profile``,
ids minted in creation order, some wallets owning several) and the follow graph
(``public_follower``, heavy-tailed in-degrees with the OG profiles on top).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lensfeed.eigentrust import OG_HANDLES
from lensfeed.schemas import FOLLOWERS_SPEC, MIN_TIMESTAMP, PROFILES_SPEC
from lensrun.gen_values import (
    DAY,
    Ints,
    hex_ids,
    null_where,
    random_addresses,
    timestamps,
    to_us,
    weighted_draw,
    zipf_weights,
)
from lensrun.gen_vocabulary import STEMS

#: Where the "OG" pretrust handles (lensfeed.eigentrust.OG_HANDLES) go: early profile ids.
OG_PROFILE_NUMBERS: tuple[int, ...] = (0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x08, 0x09, 0x0B, 0x0D)
MIN_PROFILES = 20

BURNT_SHARE = 0.003
FINALISATION_DELAY = timedelta(minutes=15)


def default_profiles(n_posts: int) -> int:
    """Profiles generated for ``n_posts`` posts when none is given (about 20 posts each)."""
    return max(100, min(n_posts // 20, 200_000))


@dataclass(frozen=True)
class Profiles:
    """The profiles table and what the other tables draw from it."""

    table: Any
    ids: Any  # string array, one per profile
    created_us: Ints
    owner: Ints  # wallet index of each profile
    addresses: Any  # owners first, then wallets without a profile
    og: Ints
    origin_us: int


def generate_profiles(rng: np.random.Generator, n: int, start_us: int, end_us: int) -> Profiles:
    """public_profile: one row per profile, ids minted in creation order."""
    origin_us = max(to_us(MIN_TIMESTAMP) + DAY, start_us - 365 * DAY)
    n_before = n - n // 5
    created = np.sort(
        np.concatenate(
            [
                rng.integers(origin_us, start_us + 1, size=n_before),
                rng.integers(start_us, end_us + 1, size=n - n_before),
            ]
        )
    ).astype(np.int64)
    numbers = np.arange(1, n + 1, dtype=np.int64)
    og = np.array(OG_PROFILE_NUMBERS, dtype=np.int64) - 1
    is_og = np.zeros(n, dtype=np.bool_)
    is_og[og] = True

    # most wallets own one profile, some own several
    counts = np.minimum(rng.geometric(0.75, size=n), 12).astype(np.int64)
    cumulative = np.cumsum(counts)
    n_owners = int(np.searchsorted(cumulative, n)) + 1
    counts = counts[:n_owners]
    counts[-1] -= int(cumulative[n_owners - 1]) - n
    owner = np.repeat(np.arange(n_owners, dtype=np.int64), counts)[rng.permutation(n)]
    n_free = max(1, round(0.3 * n_owners))
    addresses = random_addresses(rng, n_owners + n_free)

    stems = pa.array(STEMS).take(pa.array(rng.integers(0, len(STEMS), size=n)))
    handles = pc.binary_join_element_wise(stems, pa.array(numbers).cast(pa.string()), ".lens", "")
    handles = pc.replace_with_mask(handles, pa.array(is_og), pa.array(OG_HANDLES))
    names = null_where(pc.utf8_capitalize(stems), (rng.random(n) < 0.35) & ~is_og)

    is_default = np.zeros(n, dtype=np.bool_)
    first_of_wallet = np.unique(owner, return_index=True)[1]
    is_default[first_of_wallet] = rng.random(len(first_of_wallet)) < 0.7
    has_metadata = (rng.random(n) < 0.6) | is_og
    metadata_us = np.minimum(created + rng.exponential(3 * DAY, size=n).astype(np.int64), end_us)

    ids = hex_ids(numbers)
    table = pa.Table.from_arrays(
        [
            ids,
            handles,
            addresses.take(pa.array(owner)),
            names,
            pa.array((rng.random(n) < BURNT_SHARE) & ~is_og),
            pa.array(is_default),
            timestamps(created),
            timestamps(metadata_us, has_metadata),
        ],
        schema=PROFILES_SPEC.schema,
    )
    return Profiles(table, ids, created, owner, addresses, og, origin_us)


def generate_followers(
    rng: np.random.Generator, profiles: Profiles, end_us: int
) -> tuple[Any, Ints]:
    """public_follower: one row per (wallet, followed profile); also the in-degrees."""
    n = len(profiles.created_us)
    n_wallets = len(profiles.addresses)
    n_owners = int(profiles.owner.max()) + 1
    degree = np.floor(np.exp(rng.normal(math.log(8.0), 1.0, size=n_wallets))).astype(np.int64)
    degree[rng.random(n_wallets) < 0.1] = 0
    degree = np.minimum(degree, min(n - 1, 5000))
    source = np.repeat(np.arange(n_wallets, dtype=np.int64), degree)
    # heavy-tailed in-degree: a Zipf draw with the OG profiles on the first ranks
    weights = zipf_weights(rng, n, profiles.og, 1.0)
    weights[profiles.og] = np.maximum(weights[profiles.og], 0.4)  # every OG is much followed
    target = weighted_draw(rng, weights, len(source))
    own = (source < n_owners) & (profiles.owner[target] == source)
    keys = np.unique(source[~own] * n + target[~own])
    source, target = keys // n, keys % n

    low = np.maximum(profiles.created_us[target], profiles.origin_us)
    followed_us = low + (rng.random(len(source)) * (end_us - low)).astype(np.int64)
    order = np.argsort(followed_us, kind="stable")
    source, target, followed_us = source[order], target[order], followed_us[order]
    finalised = followed_us <= end_us - FINALISATION_DELAY // timedelta(microseconds=1)
    table = pa.Table.from_arrays(
        [
            profiles.addresses.take(pa.array(source)),
            profiles.ids.take(pa.array(target)),
            timestamps(followed_us),
            pa.array(finalised),
        ],
        schema=FOLLOWERS_SPEC.schema,
    )
    return table, np.bincount(target, minlength=n).astype(np.int64)
