"""Signed mutable records (butter.records, issue 15 item 1, sans-IO): names, signing, verification with a
precise error for each fault, the order between versions, the holder's book, owner key files; adversarial
cases (a forged record, a replayed old sequence, a record moved to another name); and hypothesis: no bytes
make the decoder raise anything but ProtocolError, and no alteration of a signed record verifies."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import msgpack
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given
from hypothesis import strategies as st

from butter import Identity
from butter.encryption import Capability
from butter.errors import (
    ButterConfigError,
    ProtocolError,
    RecordExpired,
    RecordNameMismatch,
    RecordRejected,
    RecordSignatureInvalid,
)
from butter.records import (
    MAX_INLINE_VALUE,
    RecordBook,
    SignedRecord,
    create_owner_key,
    load_owner_key,
    newest,
    public_key_bytes,
    record_name,
    sign_deletion,
    sign_record,
)

NOW = 1_800_000_000
LATER = NOW + 3600
CID = "3f" * 32
OWNER = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
MALLORY = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))


def signed(seq: int = 1, value: Any = CID, *, key: Ed25519PrivateKey = OWNER, label: str = "blog",
           expires_at: int = LATER) -> SignedRecord:
    return sign_record(key, label, value, sequence=seq, expires_at=expires_at)


# -- names, signing, round trips ------------------------------------------------------------------------------


def test_a_name_is_the_hash_of_the_owners_key_and_the_label() -> None:
    key = public_key_bytes(OWNER)
    name = record_name(key, "blog")
    assert len(name) == 64 and name == record_name(key, "blog")
    assert name != record_name(key, "blog2") != record_name(public_key_bytes(MALLORY), "blog")
    with pytest.raises(ValueError, match="32 bytes"):
        record_name(b"short", "blog")


@pytest.mark.parametrize("value", [CID, str(Capability(CID, bytes(32))), b"", b"x" * MAX_INLINE_VALUE])
def test_a_signed_record_round_trips_and_verifies(value: Any) -> None:
    record = signed(value=value)
    assert record.name == record_name(public_key_bytes(OWNER), "blog")
    decoded = SignedRecord.decode(record.encode())
    assert decoded == record and type(decoded.value) is type(value)
    assert decoded.verify(now=NOW, name=record.name) is decoded


@pytest.mark.parametrize(
    ("value", "sequence", "expires_at", "label"),
    [
        (b"x" * (MAX_INLINE_VALUE + 1), 1, LATER, "blog"),  # inline value too large
        ("not a content id", 1, LATER, "blog"),
        ("bcap1:" + CID, 1, LATER, "blog"),  # a malformed capability
        (7, 1, LATER, "blog"),
        (CID, -1, LATER, "blog"),
        (CID, 2**64, LATER, "blog"),
        (CID, 1, -5, "blog"),
        (CID, 1, LATER, "x" * 129),
        (CID, 1, LATER, "\udc80"),  # not encodable as UTF-8
    ],
)
def test_signing_refuses_what_peers_would_refuse(value: Any, sequence: int, expires_at: int, label: str) -> None:
    with pytest.raises(ValueError, match="cannot sign"):
        sign_record(OWNER, label, value, sequence=sequence, expires_at=expires_at)


def test_the_node_identity_can_own_records() -> None:
    identity = Identity.generate()
    record = sign_record(identity.private_key, "home", b"hi", sequence=0, expires_at=LATER)
    assert record.public_key == identity.public_bytes and record.verify(now=NOW)


# -- verification: one precise error per fault ---------------------------------------------------------------


def test_an_expired_record_is_refused() -> None:
    record = signed(expires_at=NOW)
    with pytest.raises(RecordExpired, match="expired"):
        record.verify(now=NOW)
    assert record.verify(now=NOW - 1)


def test_a_record_of_another_name_than_asked_is_refused() -> None:
    with pytest.raises(RecordNameMismatch, match="asked for"):
        signed(label="blog").verify(now=NOW, name=signed(label="other").name)


def test_adversarial_a_forged_record_under_the_owners_key_is_refused() -> None:
    """Mallory signs a record claiming the owner's key (so the name matches): the signature gives it away."""
    genuine = signed(seq=1)
    forged_unsigned = dataclasses.replace(genuine, sequence=99, value=b"mallory was here")
    forged = dataclasses.replace(forged_unsigned, signature=MALLORY.sign(forged_unsigned.signed_bytes()))
    with pytest.raises(RecordSignatureInvalid, match="forged, altered"):
        forged.verify(now=NOW)


def test_adversarial_mallorys_own_record_cannot_take_the_owners_name() -> None:
    """Mallory signs correctly with her own key but sets the owner's name: the name is not her key's."""
    mine = signed(key=MALLORY, seq=99)
    moved = dataclasses.replace(mine, name=signed().name)
    moved = dataclasses.replace(moved, signature=MALLORY.sign(moved.signed_bytes()))
    with pytest.raises(RecordNameMismatch, match="not the hash of its key and label"):
        moved.verify(now=NOW)
    relabelled = dataclasses.replace(signed(), label="other")  # the owner's record moved to another label
    with pytest.raises(RecordNameMismatch):
        relabelled.verify(now=NOW)


def test_every_rejection_is_a_protocol_error_with_its_code() -> None:
    assert issubclass(RecordRejected, ProtocolError)
    assert {RecordSignatureInvalid.code, RecordNameMismatch.code, RecordExpired.code} == {
        "bad-signature", "wrong-name", "record-expired"}


# -- order: newer versions replace older ones -----------------------------------------------------------------


def test_a_deletion_record_is_signed_as_such_and_replaces_the_older_records_of_its_name() -> None:
    deletion = sign_deletion(OWNER, "blog", sequence=5, expires_at=LATER)
    assert deletion.deleted and deletion.value == b"" and deletion.name == signed().name
    assert SignedRecord.decode(deletion.encode()) == deletion
    assert deletion.verify(now=NOW) == deletion
    assert deletion.replaces(signed(seq=4)) and not signed(seq=4).replaces(deletion)
    with pytest.raises(RecordSignatureInvalid):  # the flag is signed: dropping it breaks the signature
        dataclasses.replace(deletion, deleted=False).verify(now=NOW)
    with pytest.raises(RecordSignatureInvalid):  # and nobody can turn a record into a deletion
        dataclasses.replace(signed(seq=6, value=b""), deleted=True).verify(now=NOW)
    book = RecordBook()
    assert book.offer(deletion, now=NOW) == "accepted"
    assert book.offer(signed(seq=4), now=NOW) == "stale"  # an older record does not come back


def test_a_higher_sequence_replaces_a_lower_one_and_never_the_reverse() -> None:
    old, new = signed(seq=1), signed(seq=2)
    assert new.replaces(old) and not old.replaces(new) and not old.replaces(old)
    assert newest([old, new, old]) == new and newest([]) is None


def test_equal_sequences_are_ordered_by_expiry_then_signature_so_replicas_agree() -> None:
    a, b = signed(seq=5, value=b"a"), signed(seq=5, value=b"b")
    assert a.replaces(b) != b.replaces(a)  # exactly one wins, whatever the order they arrive in
    assert newest([a, b]) == newest([b, a])
    assert signed(seq=5, expires_at=LATER + 1).replaces(signed(seq=5))


def test_records_of_other_names_never_replace_each_other() -> None:
    assert not signed(seq=9, label="a").replaces(signed(seq=1, label="b"))


# -- the holder's book ----------------------------------------------------------------------------------------


def test_adversarial_a_replayed_old_sequence_is_refused_as_stale_and_counted() -> None:
    book = RecordBook()
    old, new = signed(seq=1), signed(seq=2)
    assert book.offer(old, now=NOW) == "accepted"
    assert book.offer(new, now=NOW) == "accepted"
    assert book.offer(old, now=NOW) == "stale"  # the replay
    assert book.offer(new, now=NOW) == "duplicate"
    assert book.get(new.name, now=NOW) == new and book.sequences() == {new.name: 2}
    assert book.counts["stale"] == 1 and book.counts["accepted"] == 2


def test_the_book_counts_forged_and_expired_records_and_keeps_none_of_them() -> None:
    book = RecordBook()
    genuine = signed(seq=1)
    forged = dataclasses.replace(genuine, value=b"altered")
    assert book.offer(forged, now=NOW) == "forged"
    assert book.offer(signed(expires_at=NOW), now=NOW) == "expired"
    assert len(book) == 0 and book.counts["forged"] == 1 and book.counts["expired"] == 1


def test_an_expired_record_gives_way_and_the_book_is_bounded() -> None:
    book = RecordBook(capacity=1)
    short = signed(seq=7, expires_at=NOW + 10)
    assert book.offer(short, now=NOW) == "accepted"
    assert book.offer(signed(seq=1, label="other"), now=NOW) == "full"
    assert book.get(short.name, now=NOW + 10) is None
    assert book.offer(signed(seq=1, label="other"), now=NOW + 10) == "accepted"  # the expired one was pruned
    assert book.offer(signed(seq=1), now=NOW + 10) == "full"
    assert book.offer(signed(seq=2, label="other"), now=NOW + 10) == "accepted"  # a known name is never full


# -- owner key files ------------------------------------------------------------------------------------------


def test_an_owner_key_file_is_created_once_and_loaded_on_another_machine(tmp_path: Path) -> None:
    path = tmp_path / "owner.pem"
    key = create_owner_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    assert public_key_bytes(load_owner_key(path)) == public_key_bytes(key)
    with pytest.raises(ButterConfigError, match="already exists"):
        create_owner_key(path)


def test_a_missing_or_wrong_key_file_is_a_clear_config_error(tmp_path: Path) -> None:
    with pytest.raises(ButterConfigError, match="does not exist"):
        load_owner_key(tmp_path / "nope.pem")
    (tmp_path / "bad.pem").write_text("not a key")
    with pytest.raises(ButterConfigError, match="cannot read key file"):
        load_owner_key(tmp_path / "bad.pem")


def test_a_nodes_key_file_is_an_owner_key(tmp_path: Path) -> None:
    identity = Identity.load_or_create(tmp_path)
    assert public_key_bytes(load_owner_key(tmp_path / "node_key.pem")) == identity.public_bytes


# -- hypothesis ----------------------------------------------------------------------------------------------

PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=80)
    | st.binary(max_size=80),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=8),
    max_leaves=20,
)
FIELD_VALUES = {
    "v": st.integers(0, 2) | PLAIN,
    "name": st.just(signed().name) | st.text(max_size=70) | PLAIN,
    "label": st.just("blog") | st.text(max_size=130) | PLAIN,
    "value": st.just(CID) | st.binary(max_size=1100) | st.text(max_size=120) | PLAIN,
    "seq": st.integers(-1, 2**64 - 1) | PLAIN,
    "exp": st.integers(-1, 2**64 - 1) | PLAIN,
    "key": st.binary(min_size=31, max_size=33) | PLAIN,
    "sig": st.binary(min_size=63, max_size=65) | PLAIN,
    "del": st.booleans() | PLAIN.filter(lambda v: v is not None),  # nil is absent: the default, false
}


@given(st.binary(max_size=300))
def test_no_bytes_make_the_decoder_raise_anything_but_protocol_error(body: bytes) -> None:
    try:
        SignedRecord.decode(body)
    except ProtocolError:
        pass


@given(st.fixed_dictionaries({}, optional=FIELD_VALUES))
def test_no_map_makes_decode_and_verify_raise_anything_but_protocol_error(fields: dict[str, Any]) -> None:
    try:
        record = SignedRecord.decode(msgpack.packb(fields, use_bin_type=True))
    except ProtocolError:
        return
    with pytest.raises(RecordRejected):  # no signature made by OWNER is in these maps
        record.verify(now=NOW)


@given(st.sampled_from(["v", "name", "label", "value", "seq", "exp", "key", "sig", "del"]), st.data())
def test_no_alteration_of_a_signed_record_verifies(field: str, data: st.DataObject) -> None:
    genuine = signed(seq=3).to_wire()
    altered = dict(genuine)
    altered[field] = data.draw(FIELD_VALUES[field].filter(lambda v: v != genuine[field] or type(v) is not type(
        genuine[field])))
    try:
        record = SignedRecord.decode(msgpack.packb(altered, use_bin_type=True))
    except ProtocolError:
        return
    with pytest.raises(RecordRejected):
        record.verify(now=NOW)


def test_a_record_under_a_key_of_small_order_is_refused_though_openssl_verifies_its_zero_signature() -> None:
    """OpenSSL's Ed25519 check accepts the all-zero signature under the all-zero public key (a point of order
    4) for about one message in four: without the small-order check, anyone could publish that name."""
    weak = bytes(32)
    for label in (f"label-{i}" for i in range(200)):
        record = SignedRecord(1, record_name(weak, label), label, b"hijacked", 1, 2**40, weak, bytes(64))
        try:
            Ed25519PublicKey.from_public_bytes(weak).verify(bytes(64), record.signed_bytes())
        except InvalidSignature:  # this message is not one of the quarter
            continue
        break
    else:
        pytest.fail("no label in 200 whose zero signature OpenSSL accepts under the all-zero key")
    with pytest.raises(RecordSignatureInvalid, match="small order"):
        record.verify(now=0)
