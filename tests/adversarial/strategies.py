"""Hypothesis strategies for hostile route bodies: random bytes, and msgpack maps that look almost right.

A body that is nearly valid (the right keys with values of the wrong type, size or range) reaches deeper
into a decoder than random bytes do, so most examples are maps built from the field names Butter's routes
actually use.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st

from butter.wire import encode_payload

# Field names used by the bodies of every route and message (core, PCG, BFS, multicast beacons, the
# ambassador's service protocol, the flood example).
KEYS = [
    "v", "id", "addr", "address", "blocks", "block_id", "manifest", "holds", "hold_timeout", "ttl", "from", "sample",
    "quality",
    "uptime", "available_storage", "known_hosts", "known_by", "ambassador", "cid", "size", "hits", "members",
    "groups", "leaving", "unknown", "qid", "fraction", "hints", "kind", "try", "have", "tag", "k", "n", "bits",
    "same", "t", "media_type", "block_size", "route", "body", "ok", "error", "code", "message", "q", "holder",
    "local", "port", "observed", "subnet", "peers", "reachable", "relayed", "token", "duration", "data",
    "circuit", "punch", "target", "peer", "service",
    "doc", "parents", "clock", "author", "at", "writers", "sig", "revisions", "heads", "hops", "tombstone",
]
HEX64 = st.text("0123456789abcdef", min_size=64, max_size=64)
NUMBERS = st.one_of(
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, -1, 1, 2**31, 2**63 - 1, 1e308, -1e308]),
)
SCALARS = st.one_of(
    st.none(), st.booleans(), NUMBERS, st.text(max_size=80), st.binary(max_size=80), HEX64,
    st.sampled_from(["127.0.0.1", "", "hit", "miss", "seen", "ping", "hello", "welcome", "refused", "x" * 300]),
)
ADDRESSES = st.one_of(
    st.tuples(st.sampled_from(["127.0.0.1", "", "::1", "x" * 300]), st.integers(-5, 70000)).map(list),
    st.lists(SCALARS, max_size=3),
)
VALUES: st.SearchStrategy[Any] = st.recursive(
    st.one_of(SCALARS, ADDRESSES),
    lambda inner: st.one_of(
        st.lists(inner, max_size=6), st.dictionaries(st.sampled_from(KEYS), inner, max_size=6)
    ),
    max_leaves=12,
)
# A map's values are scalars, addresses or nested values alike: most decoders read top-level fields, and a
# nested value for every key made a map cost 3-4 times as much to generate (hypothesis's recursive draws).
MAPS = st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=10)), st.one_of(SCALARS, ADDRESSES, VALUES),
                       max_size=8)


def bodies() -> st.SearchStrategy[bytes]:
    """Bytes a hostile peer might send as a route body."""
    return st.one_of(
        st.binary(max_size=300),
        MAPS.map(encode_payload),
        VALUES.map(encode_payload),
        MAPS.map(encode_payload).flatmap(lambda b: st.integers(0, len(b)).map(lambda n: b[:n])),  # truncated
    )


def fuzz_settings(scale: float = 1.0) -> settings:
    """Settings for one fuzzer: the ``ci`` profile when the environment variable ``CI`` is set, else ``fuzz``
    (both registered in ``conftest.py``), with ``scale`` times the profile's examples."""
    profile = settings.get_profile("ci" if os.environ.get("CI") else "fuzz")
    return settings(profile, max_examples=max(1, round(profile.max_examples * scale)))
