import hashlib
from collections.abc import Callable
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from butter.blocks import (
    DEFAULT_BLOCK_SIZE,
    DEFAULT_MAX_BLOCKS,
    Manifest,
    aiter_assemble,
    assemble,
    block_id_of,
    chunk,
    is_block_id,
    iter_assemble,
    load_manifest,
    verify,
)
from butter.errors import (
    BlockCorrupted,
    BlockNotFound,
    ButterError,
    IncompleteItem,
    InvalidManifest,
    ItemTooLarge,
    ProtocolError,
)
from butter.wire import DEFAULT_MAX_FRAME

block_sizes = st.integers(min_value=1, max_value=600)


@settings(max_examples=200)
@given(st.binary(max_size=5000), block_sizes, st.text(min_size=1, max_size=40))
def test_chunk_assemble_round_trip(data: bytes, block_size: int, media_type: str) -> None:
    item = chunk(data, block_size=block_size, media_type=media_type)
    manifest = item.manifest
    assert manifest.size == len(data) == item.size
    assert manifest.block_size == block_size and manifest.media_type == media_type
    assert len(manifest.blocks) == -(-len(data) // block_size)
    ordered = list(item.ordered_blocks())
    assert [b.address for b in ordered] == list(manifest.blocks)
    assert list(item.blocks) == list(dict.fromkeys(manifest.blocks))  # distinct, in order of first appearance
    assert all(len(b.data) == block_size for b in ordered[:-1])
    assert all(0 < len(b.data) <= block_size for b in ordered)
    assert b"".join(b.data for b in ordered) == data
    assert item.content_id == block_id_of(item.manifest_block) == hashlib.sha256(item.manifest_block).hexdigest()
    assert Manifest.decode(item.manifest_block) == manifest
    assert load_manifest(item.content_id, item.manifest_block) == manifest
    assert assemble(manifest, item.all_blocks) == data
    assert b"".join(iter_assemble(manifest, item.all_blocks.get)) == data
    assert item.stored_size == sum(len(d) for d in item.all_blocks.values())


@given(st.integers(min_value=1, max_value=300), st.sampled_from([-1, 0, 1]), st.integers(min_value=0, max_value=3))
def test_block_boundaries(block_size: int, delta: int, whole_blocks: int) -> None:
    size = max(0, whole_blocks * block_size + delta)
    data = bytes(i % 251 for i in range(size))
    item = chunk(data, block_size=block_size)
    assert len(item.manifest.blocks) == -(-size // block_size)
    assert assemble(item.manifest, item.all_blocks) == data


@pytest.mark.parametrize(
    ("size", "blocks", "last"),
    [(0, 0, None), (1, 1, 1), (4095, 1, 4095), (4096, 1, 4096), (4097, 2, 1), (8192, 2, 4096)],
)
def test_default_block_size_edges(size: int, blocks: int, last: int | None) -> None:
    data = b"\x07" * size
    item = chunk(data)
    assert item.manifest.block_size == DEFAULT_BLOCK_SIZE == 4096
    assert len(item.manifest.blocks) == blocks
    if last is not None:
        assert len(item.blocks[item.manifest.blocks[-1]]) == last  # no zero padding
    assert assemble(item.manifest, item.all_blocks) == data


def test_empty_item_has_manifest_and_no_blocks() -> None:
    item = chunk(b"")
    assert dict(item.blocks) == {} and item.manifest.blocks == () and item.manifest.size == 0
    assert list(item.all_blocks) == [item.content_id]
    assert assemble(item.manifest, {}) == b""


def test_content_id_is_deterministic_and_covers_metadata() -> None:
    a, b = chunk(b"hello" * 1000), chunk(b"hello" * 1000)
    assert a.content_id == b.content_id and is_block_id(a.content_id)
    assert a == b and hash(a) == hash(b)
    with pytest.raises(TypeError):
        a.blocks[a.manifest.blocks[0]] = b"x"  # type: ignore[index]
    assert chunk(b"hello" * 1000, media_type="text/plain").content_id != a.content_id
    assert chunk(b"hello" * 1000, block_size=1000).content_id != a.content_id


def test_repeated_content_repeats_addresses_and_dedups_storage() -> None:
    item = chunk(b"\x00" * 4096 * 3)
    assert len(set(item.manifest.blocks)) == 1 and len(item.manifest.blocks) == 3
    assert len(item.blocks) == 1 and len(list(item.ordered_blocks())) == 3
    assert len(item.all_blocks) == 2  # the manifest and one data block
    assert item.stored_size == len(item.manifest_block) + 4096
    assert next(iter(item.all_blocks)) == item.content_id


def test_manifest_wire_shape() -> None:
    item = chunk(b"abc" * 3000, block_size=4096, media_type="text/plain")
    obj = msgpack.unpackb(item.manifest_block, raw=False)
    assert obj == {
        "v": 1,
        "size": 9000,
        "media_type": "text/plain",
        "block_size": 4096,
        "blocks": list(item.manifest.blocks),
    }


def test_verify_and_is_address() -> None:
    assert verify(block_id_of(b"x"), b"x")
    assert not verify(block_id_of(b"x"), b"y")
    assert not verify("not an address", b"x")
    assert not verify(None, b"x")  # type: ignore[arg-type]
    assert is_block_id("a" * 64)
    assert not is_block_id("A" * 64)
    assert not is_block_id("a" * 63)
    assert not is_block_id("a" * 64 + "\n")
    assert not is_block_id(b"a" * 64)


# -- tampering and missing blocks ----------------------------------------------------------------------


def tampered(item_blocks: dict[str, bytes], address: str) -> dict[str, bytes]:
    blocks = dict(item_blocks)
    data = bytearray(blocks[address])
    data[len(data) // 2] ^= 0x01
    blocks[address] = bytes(data)
    return blocks


def test_assemble_detects_a_tampered_block() -> None:
    item = chunk(bytes(range(256)) * 40, block_size=1000)
    target = item.manifest.blocks[3]
    with pytest.raises(BlockCorrupted) as info:
        assemble(item.manifest, tampered(dict(item.all_blocks), target))
    assert info.value.address == target and "block 3" in str(info.value)


def test_assemble_lists_every_missing_block() -> None:
    item = chunk(bytes(range(256)) * 40, block_size=1000)
    blocks = dict(item.all_blocks)
    gone = [item.manifest.blocks[1], item.manifest.blocks[4]]
    for address in gone:
        del blocks[address]
    with pytest.raises(IncompleteItem) as info:
        assemble(item.manifest, blocks)
    assert info.value.missing == tuple(gone)


def test_block_of_wrong_length_is_refused() -> None:
    # A self-consistent manifest that names a real block of the wrong length for its position.
    short = b"abc"
    manifest = Manifest(size=10, blocks=(block_id_of(short),), block_size=10)
    with pytest.raises(InvalidManifest, match="3 bytes"):
        assemble(manifest, {block_id_of(short): short})


def test_iter_assemble_never_yields_bad_data() -> None:
    item = chunk(bytes(range(256)) * 40, block_size=1000)
    blocks = tampered(dict(item.all_blocks), item.manifest.blocks[5])
    good: list[bytes] = []
    with pytest.raises(BlockCorrupted):
        for piece in iter_assemble(item.manifest, blocks.get):
            good.append(piece)
    assert good == [b.data for b in list(item.ordered_blocks())[:5]]

    del blocks[item.manifest.blocks[5]]
    with pytest.raises(BlockNotFound) as info:
        list(iter_assemble(item.manifest, blocks.get))
    assert info.value.missing == (item.manifest.blocks[5],)
    assert isinstance(info.value, IncompleteItem)


@pytest.mark.anyio
async def test_aiter_assemble_with_async_getter() -> None:
    data = bytes(range(256)) * 50
    item = chunk(data, block_size=777)
    calls: list[str] = []

    async def get(address: str) -> bytes | None:
        calls.append(address)
        return item.all_blocks.get(address)

    out = [piece async for piece in aiter_assemble(item.manifest, get)]
    assert b"".join(out) == data
    assert calls == list(item.manifest.blocks)

    async def corrupt_get(address: str) -> bytes | None:
        return b"nope"

    with pytest.raises(BlockCorrupted):
        async for _ in aiter_assemble(item.manifest, corrupt_get):
            pass


def test_load_manifest_checks_the_content_id() -> None:
    item = chunk(b"data")
    with pytest.raises(BlockCorrupted):
        load_manifest(chunk(b"other").content_id, item.manifest_block)


def test_chunk_limits() -> None:
    with pytest.raises(ItemTooLarge):
        chunk(b"x" * 101, block_size=10, max_blocks=10)
    assert len(chunk(b"x" * 100, block_size=10, max_blocks=10).manifest.blocks) == 10
    for bad in (0, -1, 2 * 1024 * 1024):
        with pytest.raises(InvalidManifest):
            chunk(b"x", block_size=bad)
    with pytest.raises(InvalidManifest):
        chunk(b"x", media_type="")


def test_largest_default_manifest_fits_in_a_frame() -> None:
    manifest = Manifest(DEFAULT_MAX_BLOCKS * 4096, (block_id_of(b""),) * DEFAULT_MAX_BLOCKS, 4096)
    encoded = manifest.encode()
    assert len(encoded) <= DEFAULT_MAX_FRAME
    assert Manifest.decode(encoded) == manifest
    with pytest.raises(InvalidManifest, match="maximum"):
        Manifest.decode(encoded, max_blocks=DEFAULT_MAX_BLOCKS - 1)


# -- manifest decoding: only InvalidManifest, with a reason ----------------------------------------------


def valid_manifest_obj() -> dict[str, Any]:
    a = block_id_of(b"a" * 10)
    return {"v": 1, "size": 25, "media_type": "text/plain", "block_size": 10, "blocks": [a, a, block_id_of(b"x")]}


def mutate(**changes: Any) -> Callable[[], bytes]:
    def build() -> bytes:
        obj = valid_manifest_obj()
        for key, value in changes.items():
            if value is ...:
                del obj[key]
            else:
                obj[key] = value
        packed: bytes = msgpack.packb(obj, use_bin_type=True)
        return packed

    return build


@pytest.mark.parametrize(
    ("build", "reason"),
    [
        (lambda: b"", "not msgpack"),
        (lambda: b"\xc1", "not msgpack"),
        (lambda: msgpack.packb([1, 2]), "must be a map"),
        (mutate(v=2), "version"),
        (mutate(v=True), "version"),
        (mutate(v=...), "version"),
        (mutate(size=-1), "non-negative"),
        (mutate(size="25"), "size must be an integer"),
        (mutate(size=25.0), "size must be an integer"),
        (mutate(size=...), "no size"),
        (mutate(size=31), "need 4"),
        (mutate(size=20), "need 2"),
        (mutate(block_size=0), "block_size"),
        (mutate(block_size=True), "block_size"),
        (mutate(media_type=7), "media_type"),
        (mutate(media_type=""), "media_type"),
        (mutate(blocks="abc"), "list"),
        (mutate(blocks=[b"\x00" * 32] * 3), "block 0"),
        (mutate(blocks=["A" * 64] * 3), "lowercase hex"),
        (mutate(blocks=["a" * 63] * 3), "block 0"),
        (mutate(blocks=[block_id_of(b"")] * 3 + [1]), "block 3"),
    ],
)
def test_malformed_manifests_are_refused_with_a_reason(build: Callable[[], bytes], reason: str) -> None:
    with pytest.raises(InvalidManifest) as info:
        Manifest.decode(build())
    assert reason in str(info.value)
    assert isinstance(info.value, ProtocolError) and info.value.code == "invalid-manifest"


def test_valid_manifest_obj_decodes_and_unknown_keys_are_ignored() -> None:
    assert Manifest.decode(mutate()()).size == 25
    assert Manifest.decode(mutate(keywords=["x"])()).size == 25


def test_too_many_blocks_is_refused() -> None:
    with pytest.raises(InvalidManifest, match="maximum of 2"):
        Manifest.decode(mutate()(), max_blocks=2)


@settings(max_examples=500)
@given(st.binary(max_size=2048))
def test_manifest_decode_garbage_bytes(data: bytes) -> None:
    try:
        Manifest.decode(data)
    except InvalidManifest:
        pass


scalars = (
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=70) | st.binary() | st.floats()
)
values = st.recursive(
    scalars, lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=12), c), max_leaves=12
)
manifest_like = st.fixed_dictionaries(
    {},
    optional={
        "v": st.one_of(st.just(1), values),
        "size": st.one_of(st.integers(-5, 10_000), values),
        "media_type": st.one_of(st.just("a/b"), values),
        "block_size": st.one_of(st.integers(-1, 2_000_000), values),
        "blocks": st.one_of(st.lists(st.sampled_from([block_id_of(b"")]) | values, max_size=6), values),
    },
)


@settings(max_examples=200)
@given(st.one_of(values, manifest_like))
def test_manifest_decode_structured_garbage(obj: object) -> None:
    data = msgpack.packb(obj, use_bin_type=True)
    try:
        manifest = Manifest.decode(data)
    except InvalidManifest as exc:
        assert isinstance(exc, ButterError) and str(exc)
    else:
        assert Manifest.decode(manifest.encode()) == manifest
