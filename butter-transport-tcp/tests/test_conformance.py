"""The transport conformance kit (:mod:`butter.testing.conformance`) against TcpTransport on 127.0.0.1."""

from collections.abc import Awaitable, Callable

import anyio
import pytest

from butter.testing.conformance import TRANSPORT_CHECKS, TransportFactory

from .helpers import TcpFactory

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("secure", [True, False], ids=["secure", "plaintext"])
@pytest.mark.parametrize("check", TRANSPORT_CHECKS, ids=lambda c: c.__name__)
async def test_tcp_transport_conformance(check: Callable[[TransportFactory], Awaitable[None]], secure: bool) -> None:
    with anyio.fail_after(20):
        await check(TcpFactory(secure=secure))
