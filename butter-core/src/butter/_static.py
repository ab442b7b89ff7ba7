"""The ``static`` discovery driver: peers from a configured list of addresses (where multicast does not reach).

While the node knows nobody it offers every configured address to host management, every ``interval``
seconds; once it knows a peer it stops asking, and starts again if it becomes lonely. The addresses come
from the node setting ``peers`` plus this driver's own ``peers`` option.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskStatus
from pydantic import BaseModel, ConfigDict, Field, field_validator

from .hookspecs import hookimpl
from .peers import PeerAddress

if TYPE_CHECKING:
    from .slots import NodeServices

__all__ = ["StaticDiscovery", "StaticDiscoveryPlugin"]

log = logging.getLogger("butter.discovery.static")


class StaticDiscovery:
    """Offers fixed ``addresses`` to ``node`` whenever it has no known host, every ``interval`` seconds."""

    def __init__(self, node: NodeServices, addresses: list[PeerAddress], interval: float) -> None:
        self.node = node
        self.addresses = addresses
        self.interval = interval

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        if not self.addresses:
            log.info("static discovery has no peers configured; waiting to be found")
            return
        while True:
            if not self.node.hosts.peers():
                log.debug("lonely: offering %d configured peers", len(self.addresses))
                self.node.introduce(self.addresses)
            await anyio.sleep(self.interval)


class StaticDiscoveryPlugin:
    """Entry point ``butter.discovery:static``."""

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        peers: list[str] = Field(default_factory=list, description="HOST:PORT addresses, added to settings.peers")
        interval: float = Field(2.0, gt=0, description="seconds between attempts while the node knows nobody")

        @field_validator("peers")
        @classmethod
        def _parse(cls, value: list[str]) -> list[str]:
            for text in value:
                PeerAddress.parse(text)
            return value

    def __init__(self, options: Options) -> None:
        self.options = options

    @hookimpl
    def butter_discovery(self, node: NodeServices) -> StaticDiscovery:
        texts = dict.fromkeys([*node.settings.peers, *self.options.peers])
        return StaticDiscovery(node, [PeerAddress.parse(t) for t in texts], self.options.interval)
