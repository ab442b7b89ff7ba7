"""butter.testing.overlay: the test overlay every node of which knows the others, and wait_for's failure."""

from __future__ import annotations

import pytest

from butter import RouteRequest
from butter.errors import ButterConfigError
from butter.testing.overlay import open_overlay, transport_settings, wait_for

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("kind", ["memory", "tcp"])
async def test_every_node_of_an_overlay_knows_every_other_and_a_route_answers(kind: str) -> None:
    async with open_overlay(4, transport=kind, persistence="", retrieval="") as nodes:
        assert len({n.node_id for n in nodes}) == 4
        for node in nodes:
            assert {p.node_id for p in node.hosts.peers()} == {n.node_id for n in nodes} - {node.node_id}

        @nodes[0].route("ohce")
        async def ohce(request: RouteRequest) -> bytes:
            return bytes(request.body[::-1])

        assert await nodes[3].request(nodes[0].address, "ohce", b"abc", timeout=10) == b"cba"


async def test_wait_for_takes_plain_and_async_predicates_and_names_what_did_not_happen() -> None:
    calls = []

    async def third_call() -> bool:
        calls.append(1)
        return len(calls) >= 3

    await wait_for(third_call, "the third call")
    assert len(calls) == 3
    with pytest.raises(AssertionError, match=r"the sky fell: not within 0\.2 s"):
        await wait_for(lambda: False, "the sky fell", timeout=0.2)


def test_an_unknown_test_transport_is_refused() -> None:
    with pytest.raises(ButterConfigError, match="unknown test transport 'udp'"):
        transport_settings("udp")
