"""pluggy hook specifications: one factory hook per slot, plus event hooks.

Hooks are synchronous (pluggy cannot await). A factory hook receives the node being built as
:class:`~butter.slots.NodeServices` (the plugin contract: all a plugin may use of its node) and returns the
slot object (see :mod:`butter.slots`). An event hook may return ``None`` or an awaitable, which the node
awaits in its own task group; a service subscribes to its node's events with ``node.subscribe(obj)``.

Write an implementation with ``@butter.hookimpl`` on a method of your plugin class::

    class MyTransportPlugin:
        class Options(pydantic.BaseModel): ...
        def __init__(self, options: Options) -> None: ...
        @butter.hookimpl
        def butter_transport(self, node): return MyTransport(...)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from .peers import PeerInfo
    from .slots import Discovery, HostManager, NodeServices, Persistence, Retrieval, Transport

__all__ = ["PROJECT", "hookimpl", "hookspec"]  # the hook specifications below are read by pluggy, not imported

PROJECT = "butter"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec(firstresult=True)
def butter_transport(node: NodeServices) -> Transport:  # type: ignore[empty-body]
    """Build the node's transport (slot ``transport``, group ``butter.transport``)."""


@hookspec
def butter_discovery(node: NodeServices) -> Discovery:  # type: ignore[empty-body]
    """Build one discovery service; several drivers may answer (slot ``discovery``)."""


@hookspec(firstresult=True)
def butter_host_manager(node: NodeServices) -> HostManager:  # type: ignore[empty-body]
    """Build the known-host manager (slot ``host_manager``, group ``butter.host_manager``)."""


@hookspec(firstresult=True)
def butter_persistence(node: NodeServices) -> Persistence:  # type: ignore[empty-body]
    """Build the persistence service (slot ``persistence``, group ``butter.persistence``)."""


@hookspec(firstresult=True)
def butter_retrieval(node: NodeServices) -> Retrieval:  # type: ignore[empty-body]
    """Build the retrieval service (slot ``retrieval``, group ``butter.retrieval``)."""


@hookspec
def butter_node_started(node: NodeServices) -> Any:
    """The node is listening and every service has started."""


@hookspec
def butter_node_stopping(node: NodeServices) -> Any:
    """The node is about to exit (graceful exit has begun)."""


@hookspec
def butter_peer_discovered(node: NodeServices, peer: PeerInfo) -> Any:
    """A peer entered the node's known hosts."""


@hookspec
def butter_peer_lost(node: NodeServices, peer: PeerInfo) -> Any:
    """A peer left the node's known hosts (dead, or evicted for diversity)."""


@hookspec
def butter_item_stored(node: NodeServices, content_id: str) -> Any:
    """An item (its content id, hex) was stored on this node by :meth:`~butter.Node.store` or the ``store``
    route."""


@hookspec
def butter_block_served(node: NodeServices, block_id: str) -> Any:
    """This node served the block ``block_id`` (hex) on route ``fetch-block`` (persistence counts these
    hits on manifests to raise the replication of popular items)."""


@hookspec
def butter_request_served(node: NodeServices, route: str, seconds: float, error_code: str | None) -> Any:
    """This node answered a request on ``route`` (a registered route) after ``seconds`` in its handler;
    ``error_code`` is the error reply's code (``"bad-request"``, ``"handler-error"``, a
    :class:`~butter.errors.RouteError`'s code) or ``None`` for a success. Emitted by the route table for every
    request it hands a handler (metrics count them), so an implementation must be cheap and return ``None``.
    Requests to unregistered routes and refused while leaving are not reported."""
