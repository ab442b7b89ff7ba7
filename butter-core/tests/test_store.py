import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import anyio
import pytest

from butter.blocks import aiter_assemble, block_id_of, chunk, load_manifest, verify
from butter.errors import BlockCorrupted, ButterConfigError, ButterError, StoreError, StoreFull
from butter.settings import StoreSettings
from butter.store import DEFAULT_FILENAME, BlockStore, MemoryBlockStore, SqliteBlockStore, open_store

pytestmark = pytest.mark.anyio

OpenStore = Callable[..., Awaitable[BlockStore]]


def block(n: int, size: int = 1000) -> tuple[str, bytes]:
    data = n.to_bytes(4, "big") * (size // 4) + b"\xff" * (size % 4)
    return block_id_of(data), data


@pytest.fixture(params=["memory", "sqlite"])
def driver(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def make_store(driver: str, tmp_path: Path) -> AsyncIterator[OpenStore]:
    """``await make_store(capacity)`` opens a store of the parametrized driver; all are closed afterwards."""
    opened: list[BlockStore] = []

    async def make(capacity: int = 1 << 20, name: str = "s") -> BlockStore:
        store = open_store(StoreSettings(driver=driver), data_dir=tmp_path / name, default_capacity=capacity)
        opened.append(store)
        return store

    yield make
    for store in opened:
        await store.aclose()


async def test_put_get_has_delete_addresses(make_store: OpenStore) -> None:
    store = await make_store()
    assert isinstance(store, BlockStore)
    (a, da), (b, db) = block(1), block(2)
    assert await store.get(a) is None and not await store.has(a)
    assert await store.put(a, da) is True
    assert await store.put(b, db) is True
    assert await store.get(a) == da and await store.has(b)
    assert await store.block_ids() == sorted([a, b])
    await store.delete(a)
    await store.delete(a)  # absent: no-op
    assert await store.get(a) is None and await store.block_ids() == [b]
    assert store.used == len(db)


async def test_put_is_idempotent(make_store: OpenStore) -> None:
    store = await make_store(capacity=1500)
    a, data = block(1)
    assert await store.put(a, data) is True
    assert await store.put(a, data) is False  # no double counting, and no StoreFull for a block already held
    assert store.used == 1000 and store.free == 500
    assert await store.block_ids() == [a]


async def test_put_refuses_data_that_does_not_match(make_store: OpenStore) -> None:
    store = await make_store()
    a, _ = block(1)
    with pytest.raises(BlockCorrupted) as info:
        await store.put(a, b"something else")
    assert info.value.address == a
    with pytest.raises(BlockCorrupted):
        await store.put("not-an-address", b"x")
    assert store.used == 0 and await store.block_ids() == []


async def test_store_full_refuses_and_stores_nothing(make_store: OpenStore) -> None:
    store = await make_store(capacity=2500)
    (a, da), (b, db), (c, dc) = block(1), block(2), block(3)
    await store.put(a, da)
    await store.put(b, db)
    assert (store.capacity, store.used, store.free) == (2500, 2000, 500)
    with pytest.raises(StoreFull) as info:
        await store.put(c, dc)
    assert (info.value.needed, info.value.free) == (1000, 500)
    assert StoreFull("custom").needed is None
    assert "1000 bytes asked" in str(info.value) and "500 bytes free" in str(info.value)
    assert isinstance(info.value, StoreError) and isinstance(info.value, ButterError)
    assert not await store.has(c) and store.used == 2000
    small, data = block_id_of(b"x" * 500), b"x" * 500
    assert await store.put(small, data)  # exactly fits
    assert store.free == 0 and store.used == store.capacity
    await store.delete(a)
    assert store.free == 1000
    assert await store.put(c, dc)


async def test_zero_capacity_store_refuses_everything(make_store: OpenStore) -> None:
    store = await make_store(capacity=0)
    a, data = block(1)
    with pytest.raises(StoreFull):
        await store.put(a, data)
    assert store.free == 0 and store.used == 0
    assert await store.put(block_id_of(b""), b"")  # an empty block takes no bytes


async def test_concurrent_puts_never_overfill(make_store: OpenStore) -> None:
    store = await make_store(capacity=5000)
    results: list[bool | str] = []

    async def put(n: int) -> None:
        try:
            results.append(await store.put(*block(n)))
        except StoreFull:
            results.append("full")

    async with anyio.create_task_group() as tg:
        for n in range(12):
            tg.start_soon(put, n)
    assert results.count(True) == 5 and results.count("full") == 7
    assert store.used == 5000 and store.free == 0 and len(await store.block_ids()) == 5


def corrupt(store: BlockStore, address: str, data: bytes) -> None:
    """Replace a stored block's bytes behind the store's back."""
    if isinstance(store, MemoryBlockStore):
        store._blocks[address] = data
        return
    assert isinstance(store, SqliteBlockStore)
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("UPDATE blocks SET data = ? WHERE address = ?", (data, address)).rowcount == 1


def holds_row(store: BlockStore, address: str) -> bool:
    if isinstance(store, MemoryBlockStore):
        return address in store._blocks
    assert isinstance(store, SqliteBlockStore)
    with sqlite3.connect(store.path) as conn:
        return conn.execute("SELECT 1 FROM blocks WHERE address = ?", (address,)).fetchone() is not None


@pytest.mark.parametrize("bad", [b"tampered" * 125, b"short"])
async def test_get_drops_a_tampered_block(make_store: OpenStore, bad: bytes, caplog: pytest.LogCaptureFixture) -> None:
    store = await make_store()
    (a, da), (b, db) = block(1), block(2)
    await store.put(a, da)
    await store.put(b, db)
    corrupt(store, a, bad)
    assert await store.get(a) is None
    assert "corrupted" in caplog.text
    assert not holds_row(store, a) and not await store.has(a)
    assert store.used == len(db) and await store.get(b) == db
    assert await store.put(a, da)  # a good copy can be stored again
    assert await store.get(a) == da


async def test_get_many_returns_the_verified_blocks_present(make_store: OpenStore) -> None:
    store = await make_store()
    blocks = dict(block(n, 100) for n in range(1200))  # more than one SELECT batch
    for address, data in blocks.items():
        await store.put(address, data)
    bad, absent = sorted(blocks)[7], block(5000)[0]
    corrupt(store, bad, b"rotten")
    found = await store.get_many([*blocks, absent])
    assert found == {a: d for a, d in blocks.items() if a != bad}
    assert not holds_row(store, bad) and store.used == 100 * 1199  # the corrupted block is gone, as with get
    assert await store.get_many([]) == {}


async def test_item_round_trip_through_a_store(make_store: OpenStore) -> None:
    store = await make_store()
    data = bytes(range(256)) * 100
    item = chunk(data, block_size=4096, media_type="text/plain")
    for address, block_data in item.all_blocks.items():
        await store.put(address, block_data)
    manifest_block = await store.get(item.content_id)
    assert manifest_block is not None
    manifest = load_manifest(item.content_id, manifest_block)
    assert manifest == item.manifest
    assert b"".join([piece async for piece in aiter_assemble(manifest, store.get)]) == data


async def test_closed_store_raises_store_error(make_store: OpenStore) -> None:
    store = await make_store()
    await store.aclose()
    await store.aclose()  # harmless
    a, data = block(1)
    with pytest.raises(StoreError):
        await store.put(a, data)
    with pytest.raises(StoreError):
        await store.get(a)


# -- sqlite specifics ------------------------------------------------------------------------------------


async def test_sqlite_survives_reopen_and_recounts_used(tmp_path: Path) -> None:
    path = tmp_path / "db" / "blocks.sqlite3"
    async with SqliteBlockStore(path, 10_000) as store:
        for n in range(3):
            await store.put(*block(n))
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    async with SqliteBlockStore(path, 2500) as store:
        assert store.used == 3000 and store.free == 0  # a smaller capacity refuses new blocks, deletes nothing
        assert await store.block_ids() == sorted(block(n)[0] for n in range(3))
        for n in range(3):
            assert await store.get(block(n)[0]) == block(n)[1]
        with pytest.raises(StoreFull):
            await store.put(*block(9))


def test_sqlite_store_is_built_outside_an_event_loop(tmp_path: Path) -> None:
    store = open_store(StoreSettings(driver="sqlite"), data_dir=tmp_path, default_capacity=10_000)

    async def use() -> None:
        try:
            assert await store.put(*block(1))
            assert await store.get(block(1)[0]) == block(1)[1]
        finally:
            await store.aclose()

    anyio.run(use, backend="trio")
    assert isinstance(store, SqliteBlockStore)
    with sqlite3.connect(store.path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM blocks").fetchone()[0] == 1


async def test_open_store_paths_and_errors(tmp_path: Path) -> None:
    with pytest.raises(ButterConfigError, match="path or data_dir"):
        open_store(StoreSettings(driver="sqlite"), data_dir=None, default_capacity=100)
    store = open_store(StoreSettings(driver="sqlite"), data_dir=tmp_path / "d", default_capacity=100)
    assert isinstance(store, SqliteBlockStore) and store.path == tmp_path / "d" / DEFAULT_FILENAME
    assert store.capacity == 100
    await store.aclose()
    explicit = tmp_path / "elsewhere.db"
    settings = StoreSettings(driver="sqlite", path=explicit, capacity="1KiB")
    store = open_store(settings, data_dir=tmp_path / "d", default_capacity=100)
    assert isinstance(store, SqliteBlockStore) and store.path == explicit and store.capacity == 1024
    await store.aclose()
    memory = open_store(StoreSettings(), data_dir=None, default_capacity=4096)
    assert isinstance(memory, MemoryBlockStore) and memory.capacity == 4096
    (tmp_path / "garbage.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(ButterConfigError, match="cannot open"):
        open_store(StoreSettings(driver="sqlite", path=tmp_path / "garbage.db"), data_dir=None, default_capacity=1)


# -- durability: blocks acknowledged before SIGKILL are there after a restart ------------------------------

CHILD = r"""
import sys, anyio
from butter.blocks import block_id_of
from butter.store import SqliteBlockStore

async def main(path):
    store = SqliteBlockStore(path, 1 << 30)
    n = 0
    while True:
        data = n.to_bytes(8, "big") * 512
        address = block_id_of(data)
        await store.put(address, data)
        sys.stdout.write(address + "\n")  # acknowledged: put has returned
        sys.stdout.flush()
        n += 1

anyio.run(main, sys.argv[1])
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_sqlite_keeps_every_acknowledged_block_after_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "blocks.sqlite3"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    watchdog = threading.Timer(20, proc.kill)
    watchdog.start()
    try:
        assert proc.stdout is not None and proc.stderr is not None
        acknowledged: list[str] = []
        while len(acknowledged) < 150:
            line = proc.stdout.readline()
            if not line:
                pytest.fail(f"child exited early: {proc.stderr.read()}")
            acknowledged.append(line.rstrip("\n"))
        proc.send_signal(signal.SIGKILL)  # mid-stream: the child is putting blocks as fast as it can
        rest, _ = proc.communicate(timeout=10)
    finally:
        watchdog.cancel()
        proc.kill()
    assert proc.returncode == -signal.SIGKILL
    acknowledged += [line for line in rest.splitlines(keepends=True) if line.endswith("\n")]
    acknowledged = [line.rstrip("\n") for line in acknowledged]

    async def check() -> None:
        async with SqliteBlockStore(path, 1 << 30) as store:
            held = set(await store.block_ids())
            for address in acknowledged:
                assert address in held
                data = await store.get(address)
                assert data is not None and verify(address, data)
            assert store.used == len(held) * 4096
            assert len(held) >= len(acknowledged)

    anyio.run(check)
