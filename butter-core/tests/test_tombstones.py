"""Signed tombstones (butter.tombstones) and the manifest's owner field, sans-IO: signing, each reason a
tombstone is refused, the book's outcomes, and a decoder that raises only ProtocolError."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from butter import codec
from butter.blocks import Manifest, chunk, load_manifest
from butter.errors import InvalidManifest, ProtocolError, TombstoneRejected
from butter.records import public_key_bytes
from butter.tombstones import Tombstone, TombstoneBook, sign_tombstone

NOW = 1_800_000_000
OWNER = Ed25519PrivateKey.generate()
OTHER = Ed25519PrivateKey.generate()
ITEM = chunk(b"an owned item" * 10, owner=public_key_bytes(OWNER))


def tombstone(key: Ed25519PrivateKey = OWNER, content_id: str = ITEM.content_id, exp: int = NOW + 100) -> Tombstone:
    return sign_tombstone(key, content_id, deleted_at=exp - 200, expires_at=exp)


def test_the_owner_is_in_the_manifest_and_the_content_id_commits_to_it() -> None:
    unowned = chunk(b"an owned item" * 10)
    assert ITEM.manifest.owner == public_key_bytes(OWNER)
    assert ITEM.content_id != unowned.content_id
    assert load_manifest(ITEM.content_id, ITEM.manifest_block) == ITEM.manifest
    assert b"owner" not in unowned.manifest_block  # a manifest without one encodes as before the field existed
    assert load_manifest(unowned.content_id, unowned.manifest_block).owner is None
    with pytest.raises(InvalidManifest, match="owner"):
        Manifest(0, (), owner=b"short")


def test_a_tombstone_round_trips_and_verifies_against_the_owners_manifest() -> None:
    signed = tombstone()
    decoded = Tombstone.decode(signed.encode())
    assert decoded == signed and len(signed.encode()) < 256
    assert decoded.verify(ITEM.content_id, ITEM.manifest, now=NOW) == signed


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: tombstone(OTHER), "not the item's owner"),
        (lambda: dataclasses.replace(tombstone(), expires_at=NOW + 10**6), "signature"),  # replayed with a new expiry
        (lambda: dataclasses.replace(tombstone(OTHER), public_key=public_key_bytes(OWNER)), "signature"),
        (lambda: tombstone(exp=NOW), "expired"),
    ],
)
def test_a_tombstone_is_refused_for_the_wrong_key_a_forged_signature_or_expiry(make, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TombstoneRejected, match=match):
        make().verify(ITEM.content_id, ITEM.manifest, now=NOW)


def test_an_item_without_owner_or_another_item_cannot_be_deleted() -> None:
    unowned = chunk(b"nobody's")
    with pytest.raises(TombstoneRejected, match="no owner"):
        tombstone(content_id=unowned.content_id).verify(unowned.content_id, unowned.manifest, now=NOW)
    with pytest.raises(TombstoneRejected, match="offered for"):
        tombstone().verify(unowned.content_id, unowned.manifest, now=NOW)
    with pytest.raises(ValueError, match="expires after"):
        sign_tombstone(OWNER, ITEM.content_id, deleted_at=NOW, expires_at=NOW)
    with pytest.raises(ValueError, match="cannot sign"):
        sign_tombstone(OWNER, "not hex", deleted_at=NOW, expires_at=NOW + 1)


def test_the_book_keeps_valid_tombstones_until_they_expire_and_counts_the_rest() -> None:
    book = TombstoneBook(capacity=1)
    unowned = chunk(b"nobody's")
    assert book.offer(tombstone(OTHER), ITEM.manifest, now=NOW) == "forged"
    assert book.offer(tombstone(), None, now=NOW) == "unknown"
    assert book.offer(tombstone(content_id=unowned.content_id), unowned.manifest, now=NOW) == "unowned"
    assert book.offer(tombstone(exp=NOW), ITEM.manifest, now=NOW) == "expired"
    assert book.offer(tombstone(), ITEM.manifest, now=NOW) == "accepted"
    assert book.offer(tombstone(), None, now=NOW) == "duplicate"  # a replay changes nothing
    assert book.get(ITEM.content_id, now=NOW) == tombstone()
    other_item = chunk(b"another", owner=public_key_bytes(OWNER))
    assert book.offer(tombstone(content_id=other_item.content_id), other_item.manifest, now=NOW) == "full"
    assert book.get(ITEM.content_id, now=NOW + 100) is None
    later = tombstone(content_id=other_item.content_id, exp=NOW + 200)
    assert book.offer(later, other_item.manifest, now=NOW + 100) == "accepted"  # the expired one made room
    assert len(book) == 1
    assert book.counts == {"accepted": 2, "duplicate": 1, "forged": 1, "expired": 1, "unowned": 1, "unknown": 1,
                           "full": 1}


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=600) | st.dictionaries(
    st.sampled_from(["v", "cid", "at", "exp", "key", "sig"]),
    st.one_of(st.integers(-(2**63), 2**64 - 1), st.binary(max_size=70), st.text(max_size=70), st.none())).map(
        codec.encode))
def test_the_decoder_raises_only_protocol_errors(body: bytes) -> None:
    try:
        Tombstone.decode(body)
    except ProtocolError:
        pass


def test_a_tombstone_under_a_key_of_small_order_is_refused_though_openssl_verifies_its_zero_signature() -> None:
    """As for records: a manifest naming the all-zero key as owner must not let anyone delete the item with
    the all-zero signature, which OpenSSL accepts for about one message in four."""
    weak = bytes(32)
    for i in range(200):
        tombstone = Tombstone(1, f"{i:064x}", 0, 2**40, weak, bytes(64))
        try:
            Ed25519PublicKey.from_public_bytes(weak).verify(bytes(64), tombstone.signed_bytes())
        except InvalidSignature:  # this message is not one of the quarter
            continue
        break
    else:
        pytest.fail("no content id in 200 whose zero signature OpenSSL accepts under the all-zero key")
    with pytest.raises(TombstoneRejected, match="small order"):
        tombstone.check_signature()
