"""The LAN beacon as a pure state machine: feed it time and datagrams, get datagrams and events out (sans-IO).

Rules this module keeps (in prose: docs/protocol/multicast.md):

* Two states. ``QUIET``: the node knows at least one host; it only listens. ``PINGING``: it knows nobody; it
  multicasts a :class:`~._messages.Ping` at once, then every ``interval`` seconds, each wait stretched by a
  random factor in ``[1 - jitter, 1 + jitter]`` so a room of nodes started together drifts out of step.
  Whether the node is lonely is an input (the caller asks host management); the table
  :data:`TRANSITIONS` maps ``(state, lonely)`` to the next state.
* Every listener answers every ping (the answer itself travels over the node's transport, not UDP), except:
  its own echo, recognised by node id, so several nodes may share one process or host; a ping claiming the
  listener's own address; and pings over the rate limits: one answer per pinger per ``answer_interval``
  seconds, and at most ``answer_rate`` answers per second in all (a token bucket of ``answer_rate`` tokens).
* A datagram that is oversized, undecodable, of another version or of an unknown kind is dropped and counted
  in :class:`BeaconStats`; nothing a peer sends can raise.
* Times are seconds on any monotonic clock the caller likes (the driver uses ``anyio.current_time()``).

Use::

    beacon = Beacon(node_id, address)
    tick = beacon.tick(now, lonely=not hosts)   # tick.datagram: multicast it if not None
    ...                                         # call tick() again at tick.wake_at at the latest
    event = beacon.receive(datagram, now)       # PeerFound: answer event.address; otherwise nothing to do
"""

from __future__ import annotations

import enum
import random
from dataclasses import asdict, dataclass
from typing import Literal

from butter.peers import PeerAddress

from ._messages import Dropped, DropReason, Ping, decode_datagram, encode_ping

__all__ = [
    "DEFAULT_MAX_DATAGRAM",
    "TRANSITIONS",
    "Beacon",
    "BeaconStats",
    "Ignored",
    "PeerFound",
    "State",
    "Tick",
]

DEFAULT_MAX_DATAGRAM = 512  # bytes; a ping is about 100 bytes plus the host name
MAX_TRACKED_PINGERS = 4096  # rate-limit entries kept; older ones are forgotten first


class State(enum.Enum):
    QUIET = "quiet"  # knows someone: listen only
    PINGING = "pinging"  # knows nobody: multicast a ping every interval (± jitter)


TRANSITIONS: dict[tuple[State, bool], State] = {
    (State.QUIET, False): State.QUIET,
    (State.QUIET, True): State.PINGING,  # became lonely: ping at once
    (State.PINGING, True): State.PINGING,
    (State.PINGING, False): State.QUIET,  # found someone: stop pinging
}


@dataclass(frozen=True, slots=True)
class Tick:
    """What :meth:`Beacon.tick` asks of the driver: multicast ``datagram`` (when not ``None``) now, and call
    ``tick`` again no later than ``wake_at`` (same clock as ``now``)."""

    datagram: bytes | None
    wake_at: float


@dataclass(frozen=True, slots=True)
class PeerFound:
    """A lonely node pinged: answer it at ``address`` over the transport and introduce it to host management."""

    node_id: str
    address: PeerAddress


@dataclass(frozen=True, slots=True)
class Ignored:
    """A valid ping that gets no answer: this node's own echo, one claiming this node's address, or one over
    a rate limit."""

    reason: Literal["own-echo", "own-address", "rate-limited"]
    node_id: str


@dataclass(slots=True)
class BeaconStats:
    """Counters since start. The protocol fills the first group; the driver adds the I/O failures."""

    pings_sent: int = 0
    pings_received: int = 0  # valid pings from other nodes, answered or not
    answers_due: int = 0  # PeerFound events produced
    own_echoes: int = 0
    rate_limited: int = 0
    oversized: int = 0
    malformed: int = 0
    unsupported_version: int = 0
    unknown_kind: int = 0
    # filled by the driver (MulticastDiscovery)
    answers_sent: int = 0
    answers_failed: int = 0
    answers_shed: int = 0  # PeerFound events dropped because too many answers were in flight
    send_errors: int = 0
    receive_errors: int = 0

    @property
    def dropped(self) -> int:
        """Datagrams dropped as unusable (oversized, malformed, other version, unknown kind)."""
        return self.oversized + self.malformed + self.unsupported_version + self.unknown_kind

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "dropped": self.dropped}

    def count_drop(self, reason: DropReason) -> None:
        """Count a datagram dropped for ``reason`` (a :class:`~._messages.Dropped` reason)."""
        if reason == "oversized":
            self.oversized += 1
        elif reason == "malformed":
            self.malformed += 1
        elif reason == "version":
            self.unsupported_version += 1
        else:
            self.unknown_kind += 1


class Beacon:
    """One node's side of the LAN beacon protocol.

    ``node_id`` and ``address`` identify this node (its transport address, carried in its pings).
    ``interval`` (seconds, default 1) is the wait between pings while lonely, stretched by a random factor in
    ``[1 - jitter, 1 + jitter]`` (``jitter`` from 0 to below 1, default 0.25). ``check_interval`` (seconds,
    default a quarter of ``interval``) is how often the caller should report loneliness while quiet.
    ``answer_interval`` (seconds) spaces answers to one pinger; ``answer_rate`` (per second) caps all answers.
    ``max_datagram`` (bytes) bounds datagrams both ways. ``rng`` makes the jitter reproducible; ``stats``
    lets the caller share its counters object.

    Raises ``ValueError`` for out-of-range parameters, or when this node's own ping would not fit in
    ``max_datagram``.
    """

    def __init__(
        self,
        node_id: str,
        address: PeerAddress,
        *,
        interval: float = 1.0,
        jitter: float = 0.25,
        check_interval: float | None = None,
        answer_interval: float = 0.5,
        answer_rate: float = 50.0,
        max_datagram: int = DEFAULT_MAX_DATAGRAM,
        rng: random.Random | None = None,
        stats: BeaconStats | None = None,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be positive, got {interval!r}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {jitter!r}")
        if answer_interval < 0 or not answer_rate > 0:
            raise ValueError("answer_interval must be >= 0 and answer_rate > 0")
        self.node_id = node_id
        self.address = address
        self.interval = interval
        self.jitter = jitter
        self.check_interval = interval / 4 if check_interval is None else check_interval
        self.answer_interval = answer_interval
        self.answer_rate = answer_rate
        self.max_datagram = max_datagram
        self.state = State.QUIET
        self.stats = stats if stats is not None else BeaconStats()
        self._rng = rng or random.Random()
        self._ping = encode_ping(Ping(node_id, address))
        if len(self._ping) > max_datagram:
            raise ValueError(f"this node's ping takes {len(self._ping)} bytes, over max_datagram={max_datagram}")
        self._next_ping: float | None = None
        self._answered: dict[str, float] = {}  # pinger node id -> when it was last answered
        self._tokens = answer_rate
        self._tokens_at: float | None = None

    # -- sending ------------------------------------------------------------------------------------------

    def tick(self, now: float, *, lonely: bool) -> Tick:
        """Advance to ``now`` knowing whether the node is ``lonely`` (has no known host)."""
        state = TRANSITIONS[(self.state, lonely)]
        if state is State.PINGING and self.state is State.QUIET:
            self._next_ping = now
        elif state is State.QUIET:
            self._next_ping = None
        self.state = state
        datagram = None
        if self._next_ping is not None and now >= self._next_ping:
            datagram = self._ping
            self.stats.pings_sent += 1
            self._next_ping = now + self.interval * self._rng.uniform(1 - self.jitter, 1 + self.jitter)
        wake_at = now + self.check_interval
        if self._next_ping is not None:
            wake_at = min(wake_at, self._next_ping)
        return Tick(datagram, wake_at)

    # -- receiving ----------------------------------------------------------------------------------------

    def receive(self, data: bytes, now: float) -> PeerFound | Ignored | Dropped:
        """Handle one datagram received from the group at time ``now``. Never raises."""
        message = decode_datagram(data, self.max_datagram)
        if isinstance(message, Dropped):
            self.stats.count_drop(message.reason)
            return message
        if message.node_id == self.node_id:
            self.stats.own_echoes += 1
            return Ignored("own-echo", message.node_id)
        self.stats.pings_received += 1
        if message.address == self.address:
            return Ignored("own-address", message.node_id)
        if not self._admit_answer(message.node_id, now):
            self.stats.rate_limited += 1
            return Ignored("rate-limited", message.node_id)
        self.stats.answers_due += 1
        return PeerFound(message.node_id, message.address)

    def _admit_answer(self, pinger: str, now: float) -> bool:
        last = self._answered.get(pinger)
        if last is not None and now - last < self.answer_interval:
            return False
        if self._tokens_at is not None:
            self._tokens = min(self.answer_rate, self._tokens + (now - self._tokens_at) * self.answer_rate)
        self._tokens_at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        self._answered.pop(pinger, None)
        if len(self._answered) >= MAX_TRACKED_PINGERS:
            self._forget(now)
        self._answered[pinger] = now
        return True

    def _forget(self, now: float) -> None:
        """Make room in the rate-limit table: entries older than ``answer_interval`` no longer matter; if
        that is not enough, the oldest go."""
        self._answered = {p: t for p, t in self._answered.items() if now - t < self.answer_interval}
        while len(self._answered) >= MAX_TRACKED_PINGERS:
            del self._answered[next(iter(self._answered))]
