"""The per-address coalescing queue of invitations (``_invitations.py``), with a fake ``pcg-join`` sender: one
request per address in flight, the others' invitations together in the next (bounded by count and bytes), each
answered on its own, and a cancelled invitation never stalls the queue. On asyncio and trio."""

from __future__ import annotations

from collections.abc import Sequence

import anyio
import pytest

from butter.errors import ButterError, PeerGone, RemoteError
from butter.peers import PeerAddress
from butter_persist_pcg._invitations import Invitations
from butter_persist_pcg._messages import Invitation, JoinReply, Refusal

pytestmark = pytest.mark.anyio

A, B = PeerAddress("127.0.0.1", 1), PeerAddress("127.0.0.1", 2)
ENTRY = ("n1", A, 0.0)


def invitation(i: int, record: bytes | None = None) -> Invitation:
    return Invitation(f"{i:064x}", 100, (ENTRY,), record)


class FakePeers:
    """Answers each request once released: joins every item, but refuses those in ``refuse`` (cid -> code);
    ``fail``: the whole request raises it."""

    def __init__(self) -> None:
        self.requests: list[tuple[PeerAddress, list[str]]] = []
        self.release = anyio.Event()
        self.refuse: dict[str, str] = {}
        self.fail: ButterError | None = None

    async def send(self, address: PeerAddress, invitations: Sequence[Invitation]) -> JoinReply:
        self.requests.append((address, [i.content_id for i in invitations]))
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        cids = [i.content_id for i in invitations]
        return JoinReply([c for c in cids if c not in self.refuse],
                         [Refusal(c, self.refuse[c], "no") for c in cids if c in self.refuse])


async def outcome(invitations: Invitations, address: PeerAddress, item: Invitation, out: dict[str, str]) -> None:
    try:
        await invitations.invite(address, item)
        out[item.content_id] = "joined"
    except RemoteError as exc:
        out[item.content_id] = exc.code
    except ButterError as exc:
        out[item.content_id] = type(exc).__name__


async def test_one_request_in_flight_per_address_and_the_rest_go_together() -> None:
    peers = FakePeers()
    invitations = Invitations(peers.send, max_items=3, max_bytes=1 << 20)
    items = [invitation(i) for i in range(6)]
    peers.refuse[items[2].content_id] = "joins-full"
    out: dict[str, str] = {}
    async with anyio.create_task_group() as tg:
        tg.start_soon(outcome, invitations, A, items[0], out)
        tg.start_soon(outcome, invitations, B, items[5], out)
        await anyio.wait_all_tasks_blocked()
        for item in items[1:5]:  # while A's first request is in flight, one after another
            tg.start_soon(outcome, invitations, A, item, out)
            await anyio.wait_all_tasks_blocked()
        peers.release.set()
    cids = [i.content_id for i in items]
    assert [c for a, c in peers.requests if a == A] == [cids[:1], cids[1:4], cids[4:5]]  # at most 3 each
    assert [c for a, c in peers.requests if a == B] == [cids[5:]]
    assert out == {c: "joins-full" if c == cids[2] else "joined" for c in cids}
    assert not invitations._queues  # every address idle again


async def test_a_request_is_bounded_by_bytes_and_a_failure_answers_each_of_its_invitations() -> None:
    peers = FakePeers()
    big = [invitation(i, record=bytes(3000)) for i in range(4)]
    invitations = Invitations(peers.send, max_items=64, max_bytes=len(big[0].encode()) * 2)
    peers.fail = PeerGone("nothing listens there")
    out: dict[str, str] = {}
    async with anyio.create_task_group() as tg:
        for item in big:
            tg.start_soon(outcome, invitations, A, item, out)
            await anyio.wait_all_tasks_blocked()
        peers.release.set()
    assert [len(cids) for _, cids in peers.requests] == [1, 2, 1]  # the first alone, then 2 fit the bytes
    assert set(out.values()) == {"PeerGone"} and len(out) == 4


async def test_a_cancelled_invitation_does_not_stall_the_others() -> None:
    peers = FakePeers()
    invitations = Invitations(peers.send, max_items=8, max_bytes=1 << 20)
    out: dict[str, str] = {}
    async with anyio.create_task_group() as tg:
        tg.start_soon(outcome, invitations, A, invitation(0), out)
        await anyio.wait_all_tasks_blocked()
        async with anyio.create_task_group() as waiting:
            waiting.start_soon(outcome, invitations, A, invitation(1), out)
            await anyio.wait_all_tasks_blocked()
            waiting.cancel_scope.cancel()  # the oldest waiting, next to send: gives up before it is sent
        tg.start_soon(outcome, invitations, A, invitation(2), out)
        await anyio.wait_all_tasks_blocked()
        peers.release.set()
    assert [cids for _, cids in peers.requests] == [[invitation(0).content_id], [invitation(2).content_id]]
    assert out == {invitation(0).content_id: "joined", invitation(2).content_id: "joined"}
    assert not invitations._queues
