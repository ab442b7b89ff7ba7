"""Every route a full node registers (core, PCG, BFS, the ambassador's), fed hostile bodies through the node's
own dispatcher.

The node runs in-process on the memory transport (in a blocking portal, on asyncio and on trio), so a
thousand bodies take seconds; the route table's ``dispatch`` is exactly what the TCP transport calls for each request.
A reply with code ``handler-error`` means a handler raised something it did not mean to (a decoder let bad
input through): that fails the test. Random bodies rarely hit a well-formed map with one field of the wrong
type, the case a decoder most easily lets through (issue 17: ``{"sample": 1}`` to ``known-hosts``), so every
plugin route also gets such bodies on every run (``MISTYPED``, as hypothesis examples and as a check that
each is answered ``bad-request``). Afterwards the node still serves an honest peer and still holds, intact,
the item it stored before the fuzzing.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import example, given
from hypothesis import strategies as st

import butter
from butter.blocks import load_manifest, verify
from butter.capabilities import KeptItems
from butter.settings import ButterSettings
from butter.wire import Reply, Request, encode_payload

from .strategies import bodies, fuzz_settings

ITEM = os.urandom(3 * 4096 + 123)
_networks = itertools.count()

# Every route the node below registers: a route added to Butter must be added here to be fuzzed.
ROUTES = [
    "ping", "host-quality", "known-hosts", "fetch-block", "store", "get-record", "put-record", "delete-item",  # core
    "get-document", "put-revisions",  # core: documents
    "pcg-join", "pcg-leave", "pcg-heartbeat",  # persistence
    "bfs-query", "bfs-digest", "bfs-digest-push",  # retrieval
    "ambassador",  # discovery (the ambassador role)
]

CID = "ab" * 32
ENTRY = ["n1", ["127.0.0.1", 1], 0.5]
BEAT = {"from": "n1", "addr": ["127.0.0.1", 1], "leaving": False, "groups": []}
GROUP = {"cid": CID, "size": 1, "hits": 0, "members": [ENTRY]}
QUERY = {"qid": b"q" * 16, "cid": CID, "ttl": 1, "fraction": 0.5, "hints": True}

# Well-formed maps with one field of the wrong type (or shape, or range), per route.
MISTYPED: list[tuple[str, Any]] = [
    ("known-hosts", {"sample": 1}),  # issue 17: this one answered handler-error
    ("known-hosts", {"sample": [1]}), ("known-hosts", {"from": "me"}), ("known-hosts", [1]),
    *(("host-quality", bad) for bad in ({"id": 1}, {"holds": "yes", "id": "n1"}, {"hold_timeout": "1", "id": "n1"})),
    *(("fetch-block", bad) for bad in ({"block_id": 1}, {"block_id": CID.upper()}, {}, [CID])),
    *(("store", bad) for bad in ({"blocks": 1}, {"blocks": ["x"]}, {"blocks": [], "manifest": "m"})),
    ("ping", [1]),
    *(("get-record", bad) for bad in ({"name": 1}, {"name": CID.upper()}, {"name": CID, "hops": 3},
                                      {"name": CID, "hops": "1"}, {})),
    *(("put-record", bad) for bad in ({"record": "x"}, {"record": 1}, {"record": b"\xc1"}, {},
                                      {"record": encode_payload({"v": 1, "name": CID})},
                                      {"record": encode_payload({"v": 1, "name": CID, "del": "yes"})})),
    *(("delete-item", bad) for bad in ({"tombstone": "x"}, {"tombstone": 1}, {"tombstone": b"\xc1"}, {},
                                       {"tombstone": encode_payload({"v": 1, "cid": CID})})),
    *(("get-document", bad) for bad in ({"doc": 1}, {"doc": CID.upper()}, {"doc": CID, "hops": 3},
                                        {"doc": CID, "heads": [1]}, {"doc": CID, "heads": CID}, {})),
    *(("put-revisions", bad) for bad in ({"doc": CID, "revisions": ["x"]}, {"doc": CID, "revisions": [b"\xc1"]},
                                         {"doc": CID, "revisions": b"x"}, {"revisions": []},
                                         {"doc": CID, "tombstone": b"\xc1"},
                                         {"doc": CID, "revisions": [encode_payload({"v": 1, "clock": -1})]})),
    ("pcg-join", {"items": 1}), ("pcg-join", {"items": [CID]}), ("pcg-join", {"cid": CID, "size": 1, "members": []}),
    *(("pcg-join", {"items": [{"cid": CID, "size": 1, "members": [ENTRY], **bad}]}) for bad in (
        {"cid": 1}, {"size": "1"}, {"size": -1}, {"members": {"n1": ENTRY}}, {"members": [["n1", "127.0.0.1:1", 0]]},
        {"members": [["n1", ["127.0.0.1", 1], "old"]]}, {"members": [["n1", ["127.0.0.1", 1], math.nan]]},
        {"members": [[1, ["127.0.0.1", 1], 0]]}, {"members": None},
        {"record": "x"}, {"record": 1}, {"record": b"\xc1"}, {"record": encode_payload({"v": 1, "name": CID})},
        {"record": b"r" * 5000},
    )),
    *(("pcg-leave", {"cid": bad}) for bad in (1, [CID], CID.upper(), None)),
    *(("pcg-heartbeat", {**BEAT, **bad}) for bad in (
        {"from": 1}, {"addr": "127.0.0.1:1"}, {"leaving": "no"}, {"groups": {"cid": CID}}, {"groups": [CID]},
        {"groups": [{**GROUP, "hits": "2"}]}, {"groups": [{**GROUP, "members": [ENTRY[:2]]}]},
        {"groups": [{**GROUP, "seq": "1"}]}, {"groups": [{**GROUP, "seq": -1}]}, {"groups": [{**GROUP, "seq": 1.5}]},
    )),
    *(("bfs-query", {**QUERY, **bad}) for bad in (
        {"qid": "q" * 16}, {"qid": b"q" * 15}, {"cid": 7}, {"ttl": "1"}, {"ttl": 1.0}, {"fraction": "0.5"},
        {"fraction": 0}, {"hints": 1}, {"qid": None},
    )),
    *(("bfs-digest", {"have": bad}) for bad in ("12345678", 1, [b"x" * 8], b"x" * 9)),
    ("bfs-digest", []),
    *(("bfs-digest", {"from": bad}) for bad in ("127.0.0.1:1", [1, "x"], 5)),
    *(("bfs-digest-push", bad) for bad in (
        {"same": True}, {"tag": b"x" * 7, "k": 1, "n": 1, "bits": b"x"},
        {"tag": b"x" * 8, "k": 0, "n": 1, "bits": b"x"}, {"tag": b"x" * 8, "k": 1, "n": 1, "bits": b""}, [1],
    )),
    ("ambassador", {"service": "x"}),  # reads no body: any is answered
    ("ambassador", [1]),
]


def mistyped_examples(test: Callable[..., None]) -> Callable[..., None]:
    """Run ``test`` on every body of :data:`MISTYPED` first, on every run."""
    for route, obj in MISTYPED:
        test = example(route=route, body=encode_payload(obj))(test)
    return test


@dataclass
class Target:
    portal: BlockingPortal
    node: butter.Node
    honest: butter.Node
    content_id: str

    def send(self, route: str, body: bytes) -> Reply:
        return self.portal.call(self.node._route_table.dispatch, Request(7, route, body))


def memory_settings(network: str, *, ambassador: bool = False) -> ButterSettings:
    serve = {"serve": True, "service_host": "127.0.0.1", "public_host": "127.0.0.1"}
    return ButterSettings(
        transport={"driver": "memory", "options": {"network": network}},
        discovery={"drivers": ["ambassador"], "options": {"ambassador": serve}} if ambassador else {"drivers": []},
        memory_budget="64MiB",
        request_timeout=1.0,
        persistence={"driver": "pcg", "options": {"heartbeat_timeout": 0.5, "fetch_timeout": 0.5}},
    )


@pytest.fixture(scope="module", params=["asyncio", "trio"])
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    network = f"adversarial-routes-{next(_networks)}"
    with start_blocking_portal(request.param) as portal:
        with portal.wrap_async_context_manager(butter.open_node(memory_settings(network, ambassador=True))) as node, \
                portal.wrap_async_context_manager(butter.open_node(memory_settings(network))) as honest:
            content_id = portal.call(node.store, ITEM)
            yield Target(portal, node, honest, content_id)


def test_every_route_is_fuzzed(target: Target) -> None:
    assert sorted(target.node.routes) == sorted(ROUTES), "add new routes to ROUTES (and their MISTYPED bodies)"


@fuzz_settings()
@given(route=st.sampled_from(ROUTES), body=bodies())
@mistyped_examples
def test_every_route_answers_hostile_bodies_with_deliberate_replies(target: Target, route: str, body: bytes) -> None:
    reply = target.send(route, body)
    assert reply.id == 7
    assert reply.error is None or reply.error.code != "handler-error", (route, body, reply.error)


@pytest.mark.parametrize(("route", "obj"), [(r, o) for r, o in MISTYPED if r != "ambassador"])
def test_mistyped_bodies_are_bad_requests(target: Target, route: str, obj: Any) -> None:
    reply = target.send(route, encode_payload(obj))
    assert reply.error is not None and reply.error.code == "bad-request", reply.error


def test_after_the_fuzzing_the_node_serves_and_kept_its_item(target: Target) -> None:
    portal, node = target.portal, target.node
    manifest_bytes = portal.call(node.blocks.get, target.content_id)
    assert manifest_bytes is not None
    manifest = load_manifest(target.content_id, manifest_bytes)
    for address in manifest.blocks:
        data = portal.call(node.blocks.get, address)
        assert data is not None and verify(address, data)
        assert portal.call(target.honest.fetch_block, node.address, address) == data
    kept = node.capability(KeptItems)
    assert kept is not None and target.content_id in kept.kept_items()
