"""Handlers learn who called them over TCP on 127.0.0.1: the node id the secure channel authenticated, and
the connection's remote address; in plaintext only the address (asyncio and trio)."""

import anyio
import pytest

import butter
from butter.errors import RemoteError
from butter.settings import ButterSettings
from butter.wire import decode_payload, encode_payload

pytestmark = pytest.mark.anyio


def settings(*, secure: bool) -> ButterSettings:
    return ButterSettings(
        host="127.0.0.1", port=0, transport={"driver": "tcp", "options": {"secure": secure}},
        discovery={"drivers": ["static"]}, persistence={"driver": ""}, retrieval={"driver": ""},
    )


@pytest.mark.parametrize("secure", [True, False], ids=["secure", "plaintext"])
async def test_a_handler_sees_the_authenticated_caller_and_its_remote_address(secure: bool) -> None:
    with anyio.fail_after(15):
        async with butter.open_node(settings(secure=secure)) as a, butter.open_node(settings(secure=secure)) as b:
            seen: list[butter.RouteRequest] = []

            @a.route("whoami")
            async def whoami(request: butter.RouteRequest) -> bytes:
                seen.append(request)
                return b""

            await b.request(a.address, "whoami")
            (request,) = seen
            assert request.caller.node_id == (b.node_id if secure else None)
            assert request.caller.address is not None and request.caller.address.host == "127.0.0.1"
            assert request.caller.address.port != b.address.port  # where the connection came from, not b's port
            posing = encode_payload({"id": "f" * 64, "holds": True})
            if secure:
                with pytest.raises(RemoteError, match="sender-mismatch"):
                    await b.request(a.address, "host-quality", posing)
                assert a.quality().known_by == 0 and a.stats.sender_mismatches == 1
            else:  # nothing authenticated: the body's claim is believed, as before
                assert decode_payload(await b.request(a.address, "host-quality", posing))["id"] == a.node_id
                assert a.quality().known_by == 1 and a.stats.sender_mismatches == 0
