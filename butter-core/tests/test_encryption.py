"""Encrypted items (butter.encryption): the cipher round-trips and refuses a wrong key or altered bytes with
DecryptionFailed; capabilities have one canonical spelling, and no string makes the parser raise anything
but InvalidCapability. The node-level path (store with encrypt=True, retrieve a capability) is tested over the
memory transport and TCP in tests/test_encrypted_items.py."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from butter.encryption import KEY_SIZE, TAG_SIZE, Capability, decrypt, encrypt, is_capability
from butter.errors import ButterError, DecryptionFailed, InvalidCapability

CID = "3f" * 32


@pytest.mark.parametrize("plaintext", [b"", b"x", b"hello world" * 1000])
def test_encrypt_then_decrypt_gives_the_plaintext_back(plaintext: bytes) -> None:
    ciphertext, key = encrypt(plaintext)
    assert len(key) == KEY_SIZE and len(ciphertext) == len(plaintext) + TAG_SIZE
    assert decrypt(ciphertext, key) == plaintext


def test_every_item_gets_a_fresh_key_so_equal_plaintexts_give_unrelated_ciphertexts() -> None:
    (c1, k1), (c2, k2) = encrypt(b"same"), encrypt(b"same")
    assert k1 != k2 and c1 != c2


def test_the_ciphertext_does_not_contain_the_plaintext() -> None:
    plaintext = b"my secret diary " * 64
    ciphertext, _ = encrypt(plaintext)
    assert b"secret" not in ciphertext


def test_a_wrong_key_raises_decryption_failed() -> None:
    ciphertext, _ = encrypt(b"secret")
    _, other = encrypt(b"")
    with pytest.raises(DecryptionFailed, match="wrong key"):
        decrypt(ciphertext, other)


@given(st.data())
def test_any_altered_ciphertext_raises_decryption_failed(data: st.DataObject) -> None:
    ciphertext, key = encrypt(b"some secret bytes")
    position = data.draw(st.integers(0, len(ciphertext) - 1))
    flip = data.draw(st.integers(1, 255))
    altered = bytearray(ciphertext)
    altered[position] ^= flip
    with pytest.raises(DecryptionFailed):
        decrypt(bytes(altered), key)
    with pytest.raises(DecryptionFailed):  # truncated, or with bytes appended
        decrypt(ciphertext[:position], key)
    with pytest.raises(DecryptionFailed):
        decrypt(ciphertext + bytes([flip]), key)


def test_a_capability_round_trips_through_its_string() -> None:
    key = bytes(range(32))
    capability = Capability(CID, key)
    text = str(capability)
    assert text == f"bcap1:{CID}:{base64.urlsafe_b64encode(key).rstrip(b'=').decode()}"
    assert len(text) == len("bcap1:") + 64 + 1 + 43
    assert Capability.parse(text) == capability and is_capability(text) and not is_capability(CID)
    assert "key=<32 bytes>" in repr(capability) and text.rsplit(":", 1)[1] not in repr(capability)


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        (CID, "starts with"),
        ("bcap2:" + CID + ":" + "A" * 43, "starts with"),
        ("bcap1:" + CID, "two colons"),
        ("bcap1:" + CID + ":" + "A" * 43 + ":x", "two colons"),
        ("bcap1:" + CID.upper() + ":" + "A" * 43, "content id"),
        ("bcap1:" + CID[:-2] + ":" + "A" * 43, "content id"),
        ("bcap1:" + CID + ":" + "A" * 42, "key"),
        ("bcap1:" + CID + ":" + "A" * 43 + "=", "key"),
        ("bcap1:" + CID + ":" + "+" * 43, "key"),  # base64, not base64url
        ("bcap1:" + CID + ":" + "A" * 42 + "B", "canonical"),  # the last character's spare bits set
    ],
)
def test_a_malformed_capability_is_refused_saying_which_part_is_wrong(text: str, complaint: str) -> None:
    with pytest.raises(InvalidCapability, match=complaint):
        Capability.parse(text)


def test_a_capability_needs_a_content_id_and_a_32_byte_key() -> None:
    with pytest.raises(InvalidCapability):
        Capability(CID, b"short")
    with pytest.raises(InvalidCapability):
        Capability("nope", bytes(32))


@given(st.text())
def test_no_string_makes_the_parser_raise_anything_but_invalid_capability(text: str) -> None:
    try:
        capability = Capability.parse(text)
    except InvalidCapability as exc:
        assert isinstance(exc, ButterError) and isinstance(exc, ValueError)
    else:
        assert str(capability) == text  # only the canonical spelling parses


@given(st.from_regex(r"bcap1:[0-9a-f]{64}:[A-Za-z0-9_-]{43}", fullmatch=True))
def test_near_capabilities_parse_only_in_their_canonical_form(text: str) -> None:
    try:
        capability = Capability.parse(text)
    except InvalidCapability as exc:
        assert "canonical" in str(exc)
    else:
        assert str(capability) == text


@given(st.binary(min_size=32, max_size=32), st.from_regex(r"[0-9a-f]{64}", fullmatch=True))
def test_every_key_and_content_id_round_trip(key: bytes, content_id: str) -> None:
    capability = Capability(content_id, key)
    assert Capability.parse(str(capability)) == capability
