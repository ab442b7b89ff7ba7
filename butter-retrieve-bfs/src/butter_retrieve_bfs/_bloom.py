"""A Bloom filter of content ids: the compact digest of what a node holds (the report's future work).

Bloom (1970), sized as usual: ``m = ⌈-n ln p / (ln 2)²⌉`` bits and ``k = round(m / n · ln 2)`` hash functions
for ``n`` ids at false-positive rate ``p``. Content ids are already SHA-256 digests, so the ``k`` bit
positions come from them directly by double hashing (Kirsch & Mitzenmacher 2006): ``h1 + i·h2 mod m`` with
``h1``, ``h2`` two 64-bit words of the id. A filter never gives a false negative for an id it was built with;
a stale filter (the holder gained the item since) may, which only costs the search a detour.

Pure data, no I/O: build with :meth:`BloomFilter.build`, test with ``content_id in bloom``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable

__all__ = ["BloomFilter"]

MIN_BITS = 256


def _words(content_id: str) -> tuple[int, int]:
    try:
        raw = bytes.fromhex(content_id)
    except ValueError:
        raw = b""
    if len(raw) < 16:
        raw = hashlib.sha256(content_id.encode()).digest()
    return int.from_bytes(raw[:8], "big"), int.from_bytes(raw[8:16], "big") | 1


class BloomFilter:
    """``nbits`` bits (a multiple of 8), ``hashes`` bit positions per id."""

    __slots__ = ("_bits", "hashes", "nbits")

    def __init__(self, bits: bytes | bytearray, hashes: int) -> None:
        if not bits or hashes < 1:
            raise ValueError("a Bloom filter needs at least one byte and one hash function")
        self._bits = bytearray(bits)
        self.nbits = len(bits) * 8
        self.hashes = hashes

    @classmethod
    def sized(cls, count: int, fp_rate: float, *, max_bytes: int) -> BloomFilter:
        """An empty filter for ``count`` ids at false-positive rate ``fp_rate``, at most ``max_bytes`` bytes
        (past that the rate degrades)."""
        count = max(1, count)
        nbits = max(MIN_BITS, math.ceil(-count * math.log(fp_rate) / math.log(2) ** 2))
        nbytes = min(max_bytes, -(-nbits // 8))
        hashes = max(1, min(16, round(nbytes * 8 / count * math.log(2))))
        return cls(bytes(nbytes), hashes)

    @classmethod
    def build(cls, content_ids: Iterable[str], fp_rate: float = 0.01, *, max_bytes: int) -> BloomFilter:
        ids = list(content_ids)
        bloom = cls.sized(len(ids), fp_rate, max_bytes=max_bytes)
        for content_id in ids:
            bloom.add(content_id)
        return bloom

    def _positions(self, content_id: str) -> list[int]:
        h1, h2 = _words(content_id)
        return [(h1 + i * h2) % self.nbits for i in range(self.hashes)]

    def add(self, content_id: str) -> None:
        for position in self._positions(content_id):
            self._bits[position >> 3] |= 1 << (position & 7)

    def __contains__(self, content_id: object) -> bool:
        if not isinstance(content_id, str):
            return False
        return all(self._bits[p >> 3] & (1 << (p & 7)) for p in self._positions(content_id))

    @property
    def bits(self) -> bytes:
        return bytes(self._bits)

    def fill_ratio(self) -> float:
        """Share of bits set (about 0.5 when sized right and full)."""
        return sum(bin(b).count("1") for b in self._bits) / self.nbits
