"""Multi-writer documents: a grow-only set of signed revisions that every replica merges (formats:
docs/protocol/documents.md).

Sans-IO: this module encodes, signs and verifies revisions, merges them into a :class:`DocumentState` (a
state-based CRDT: the union of revision sets) and keeps the documents a node holds (:class:`DocumentBook`);
it sends nothing. The format, version 1:

* **Revision**: the msgpack map ``{"v": 1, "doc": hex | nil, "parents": [hex, ...], "clock": int,
  "author": 32 bytes, "at": int, "body": bytes, "writers": [32 bytes, ...] | nil, "sig": 64 bytes}``
  (:class:`Revision`, at most 20 KiB encoded). ``doc`` is the document id (nil for the genesis revision),
  ``parents`` the ids of the revisions it follows (sorted, no repeats; empty for the genesis only),
  ``clock`` its Lamport clock (0 for the genesis, else the highest parent clock plus one), ``author`` the
  raw Ed25519 public key of its writer, ``at`` when it was written (Unix seconds, as the author's clock
  says; shown, never trusted for order), ``body`` the content (at most 16 KiB), ``writers`` (the genesis
  only) the keys that may add revisions, nil for anyone.
* **Ids**: a revision's id is the SHA-256 of its encoding, 64 lowercase hex (:attr:`Revision.id`); a
  document's id is the id of its genesis revision, whose author is the document's creator.
* **Signature**: Ed25519 (RFC 8032) by the author over ``b"butter document revision v1\\x00"`` followed by
  the msgpack list ``[v, doc, parents, clock, author, at, body, writers]`` (:meth:`Revision.signed_bytes`).
* **Merge**: a replica keeps every valid revision whose parents it has (the set only grows; merging is a
  union, so it is commutative, associative and idempotent). A valid revision whose parents are not all
  here yet is held back (at most ``MAX_PENDING`` per document) and admitted when they arrive.
* **Current version** (:meth:`DocumentState.current`): among the heads (revisions no other revision names
  as parent), the greatest ``(clock, author, id)``; so every replica holding the same set shows the same.
  :meth:`DocumentState.history` lists the revisions by ``(clock, author, id)``, a topological order (a
  revision's clock is above its parents').

Sources: the grow-only set merged by union is the G-Set of Shapiro, Preguiça, Baquero and Zawirski,
"Conflict-free Replicated Data Types" (SSS 2011); the clock is Lamport's, "Time, Clocks, and the Ordering of
Events in a Distributed System" (CACM 1978); revisions naming their parents by hash make a Merkle DAG, as
in Git's commits.

:meth:`Revision.check` refuses, with :class:`~butter.errors.RevisionRefused`, a revision whose shape is
wrong (a non-genesis without parents or document, parents unsorted, a genesis with a clock or a
non-genesis with writers), whose author or a writer is a key of small order (under which signatures verify
without a private key), or whose signature does not verify; :meth:`DocumentState.add` also refuses one
of another document, whose author is not on the writers list, or whose clock is not its parents' highest
plus one. Decoding a malformed revision raises :class:`~butter.errors.ProtocolError`, whatever the bytes.
Keys are the ones records use (:func:`butter.records.load_owner_key`; default the node's identity key).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Iterable
from typing import Literal

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from . import codec
from ._identity import signature_valid, small_order
from .codec import wire
from .errors import ProtocolError, RevisionRefused
from .records import public_key_bytes

__all__ = [
    "BOOK_BYTES",
    "DOCUMENT_VERSION",
    "MAX_BODY",
    "MAX_PARENTS",
    "MAX_PENDING",
    "MAX_REVISIONS",
    "MAX_REVISION_SIZE",
    "MAX_WRITERS",
    "Document",
    "DocumentBook",
    "DocumentState",
    "Offer",
    "Revision",
    "sign_revision",
]

DOCUMENT_VERSION = 1
MAX_BODY = 16 * 1024  # bytes of a revision's body
MAX_PARENTS = 64  # parents a revision names (the heads it merges)
MAX_WRITERS = 64  # keys on a writers list
MAX_REVISION_SIZE = 20 * 1024  # bytes of an encoded revision (body, 64 parents, 64 writers fit)
MAX_PENDING = 256  # revisions held back per document until their parents arrive
MAX_REVISIONS = 4096  # revisions a replica keeps per document (each at most 20 KiB)
BOOK_BYTES = 64 * 1024 * 1024  # bytes of revisions a DocumentBook keeps, all documents together
_SIGNING_DOMAIN = b"butter document revision v1\x00"

Offer = Literal["accepted", "duplicate", "pending", "forged", "refused", "deleted", "full"]
"""What a replica did with a revision (:meth:`DocumentState.add`, :meth:`DocumentBook.offer`): kept it
(``accepted``), had it already (``duplicate``), held it back until its parents arrive (``pending``), refused
it for a bad signature or shape (``forged``), for breaking the document's rules: another document, an author
not on the writers list, a wrong clock (``refused``), because the document is deleted (``deleted``), or
because a bound is reached (``full``)."""


class Revision(codec.Record):
    """One signed revision of a document (see the module docstring for the format).

    Build one with :func:`sign_revision`; read one from the network with :meth:`decode` (raises
    :class:`~butter.errors.ProtocolError`), then :meth:`check` it (a :class:`DocumentState` does).
    """

    MAX_SIZE = MAX_REVISION_SIZE

    version: int = wire("v", codec.integer(DOCUMENT_VERSION, DOCUMENT_VERSION))
    parents: tuple[str, ...] = wire("parents", codec.sequence(codec.content_id, max_items=MAX_PARENTS))
    clock: int = wire("clock", codec.integer())
    author: bytes = wire("author", codec.blob(size=32))
    at: int = wire("at", codec.integer())  # Unix seconds
    body: bytes = wire("body", codec.blob(max_length=MAX_BODY))
    signature: bytes = wire("sig", codec.blob(size=64))
    document_id: str | None = wire("doc", codec.content_id, default=None)  # None: the genesis
    writers: tuple[bytes, ...] | None = wire("writers", codec.sequence(codec.blob(size=32), max_items=MAX_WRITERS),
                                             default=None)  # the genesis only; None: anyone may write

    @functools.cached_property
    def id(self) -> str:
        """This revision's id: SHA-256 of its encoding, 64 lowercase hex."""
        return hashlib.sha256(self.encode()).hexdigest()

    @property
    def genesis(self) -> bool:
        """Whether this is a document's first revision (its id is the document id)."""
        return self.document_id is None

    def signed_bytes(self) -> bytes:
        """What the author signs: the domain ``b"butter document revision v1\\x00"``, then the msgpack list
        ``[v, doc, parents, clock, author, at, body, writers]``."""
        writers = list(self.writers) if self.writers is not None else None
        fields = [self.version, self.document_id, list(self.parents), self.clock, self.author, self.at, self.body,
                  writers]
        return _SIGNING_DOMAIN + codec.encode(fields)

    def check(self) -> Revision:
        """Return this revision if its shape is right and its signature verifies under its author's key.
        Raises :class:`~butter.errors.RevisionRefused` (``reason`` says why) otherwise. What needs the
        rest of the document (parents, clock, writers) is :meth:`DocumentState.add`'s."""
        if self.genesis != (not self.parents):
            raise RevisionRefused("a genesis revision has no parents and every other names at least one")
        if list(self.parents) != sorted(set(self.parents)):
            raise RevisionRefused("a revision's parents are sorted, without repeats")
        if self.genesis and self.clock != 0:
            raise RevisionRefused("a genesis revision's clock is 0")
        if not self.genesis and self.writers is not None:
            raise RevisionRefused("only the genesis revision names writers")
        if small_order(self.author) or any(small_order(key) for key in self.writers or ()):
            raise RevisionRefused("a key of small order signs nothing: a signature under it proves no author")
        if not signature_valid(self.author, self.signature, self.signed_bytes()):
            raise RevisionRefused("the signature does not verify (forged or altered)")
        return self


def sign_revision(
    author: Ed25519PrivateKey,
    body: bytes,
    *,
    document_id: str | None,
    parents: Iterable[Revision] = (),
    at: int,
    writers: Iterable[bytes] | None = None,
) -> Revision:
    """A revision by ``author`` with ``body`` (at most 16 KiB), following ``parents`` (none for a genesis,
    whose ``document_id`` is ``None``), written at ``at`` (Unix seconds), signed; its clock is the parents'
    highest plus one. ``writers`` (raw 32-byte keys, genesis only) limits who may add revisions; the author
    is added to it. Raises ``ValueError`` for a body over 16 KiB, more than 64 parents or writers, a writer
    key of small order, or a genesis with parents."""
    chosen = list(parents)
    clock = max((p.clock for p in chosen), default=-1) + 1
    key = public_key_bytes(author)
    listed = None if writers is None else tuple(sorted({key, *writers}))
    try:  # the decoder's checks, so that every revision signed here is one every peer accepts
        unsigned = Revision(DOCUMENT_VERSION, tuple(sorted({p.id for p in chosen})), clock, key, at, bytes(body),
                            bytes(64), document_id=document_id, writers=listed)
        Revision.decode(unsigned.encode())
    except (ProtocolError, TypeError, OverflowError) as exc:
        raise ValueError(f"cannot sign this revision: {exc}") from None
    if unsigned.genesis == bool(chosen):
        raise ValueError("a genesis revision (document_id None) has no parents, and every other has some")
    if any(small_order(k) for k in listed or ()):
        raise ValueError("a writer key of small order would let anyone write: it is refused")
    return dataclasses.replace(unsigned, signature=author.sign(unsigned.signed_bytes()))


def _order(revision: Revision) -> tuple[int, bytes, str]:
    return revision.clock, revision.author, revision.id


class DocumentState:
    """One replica of a document: its admitted revisions (a grow-only set, closed under parents) and those
    held back until their parents arrive. ``genesis`` is the checked genesis revision.

    Raises :class:`~butter.errors.RevisionRefused` when ``genesis`` is not a valid genesis revision.
    """

    def __init__(self, genesis: Revision, *, max_revisions: int = MAX_REVISIONS,
                 max_pending: int = MAX_PENDING) -> None:
        if not genesis.genesis:
            raise RevisionRefused("a document starts with a genesis revision (no document id, no parents)")
        self.genesis = genesis.check()
        self.document_id = genesis.id
        self.max_revisions = max_revisions
        self.max_pending = max_pending
        self._revisions: dict[str, Revision] = {genesis.id: genesis}
        self._heads: set[str] = {genesis.id}
        self._pending: dict[str, Revision] = {}
        self.size = len(genesis.encode())  # bytes of the revisions kept and held back

    @property
    def owner(self) -> bytes:
        """The creator's key (the genesis author): the one key that may delete the document."""
        return self.genesis.author

    @property
    def writers(self) -> tuple[bytes, ...] | None:
        """The keys that may add revisions, ``None`` for anyone."""
        return self.genesis.writers

    def may_write(self, key: bytes) -> bool:
        """Whether the writers list admits ``key`` (raw 32 bytes)."""
        return self.genesis.writers is None or key in self.genesis.writers

    def add(self, revision: Revision) -> Offer:
        """Admit ``revision`` if it is valid and its parents are here, hold it back if they are not (and
        admit the held ones it completes); returns the outcome. Never raises for a bad revision."""
        if revision.id in self._revisions or revision.id in self._pending:
            return "duplicate"
        try:
            revision.check()
        except RevisionRefused:
            return "forged"
        if revision.document_id != self.document_id or not self.may_write(revision.author):
            return "refused"
        if any(parent not in self._revisions for parent in revision.parents):
            if len(self._pending) >= self.max_pending:
                return "full"
            self._pending[revision.id] = revision
            self.size += len(revision.encode())
            return "pending"
        outcome = self._admit(revision)
        if outcome == "accepted":
            self._admit_pending()
        return outcome

    def _admit(self, revision: Revision) -> Offer:
        if revision.clock != max(self._revisions[p].clock for p in revision.parents) + 1:
            return "refused"
        if len(self._revisions) >= self.max_revisions:
            return "full"
        self._revisions[revision.id] = revision
        self.size += len(revision.encode())
        self._heads.difference_update(revision.parents)
        self._heads.add(revision.id)
        return "accepted"

    def _admit_pending(self) -> None:
        progress = True
        while progress and self._pending:
            progress = False
            for rid, held in list(self._pending.items()):
                if all(parent in self._revisions for parent in held.parents):
                    del self._pending[rid]
                    self.size -= len(held.encode())
                    progress = self._admit(held) == "accepted" or progress

    def merge(self, other: DocumentState) -> None:
        """Add every revision ``other`` holds, admitted and held back (the CRDT merge: a union)."""
        for revision in (*other.history(), *other._pending.values()):
            self.add(revision)

    def revision(self, revision_id: str) -> Revision | None:
        """The admitted revision ``revision_id``, or ``None``."""
        return self._revisions.get(revision_id)

    @property
    def pending(self) -> int:
        """How many revisions are held back, waiting for their parents."""
        return len(self._pending)

    def __contains__(self, revision_id: object) -> bool:
        """Whether ``revision_id`` is admitted or held back here."""
        return revision_id in self._revisions or revision_id in self._pending

    def ids(self) -> frozenset[str]:
        """The ids of the admitted revisions."""
        return frozenset(self._revisions)

    def heads(self) -> tuple[Revision, ...]:
        """The admitted revisions that no other names as parent, in :meth:`history` order."""
        return tuple(sorted((self._revisions[h] for h in self._heads), key=_order))

    def current(self) -> Revision:
        """The current version: the head with the greatest ``(clock, author, id)``."""
        return max((self._revisions[h] for h in self._heads), key=_order)

    def history(self) -> tuple[Revision, ...]:
        """Every admitted revision by ``(clock, author, id)``: parents before children."""
        return tuple(sorted(self._revisions.values(), key=_order))

    def lacking(self, heads: Iterable[str]) -> list[Revision]:
        """The admitted revisions that a replica whose heads are ``heads`` lacks, in :meth:`history` order:
        all but the ancestors of those of ``heads`` this replica has (a replica's set is closed under
        parents, so its heads summarise it)."""
        known = [h for h in heads if h in self._revisions]
        seen: set[str] = set(known)
        stack = known
        while stack:
            for parent in self._revisions[stack.pop()].parents:
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
        return [r for r in self.history() if r.id not in seen]

    def __len__(self) -> int:
        return len(self._revisions)


@dataclasses.dataclass(frozen=True)
class Document:
    """A document as :meth:`butter.Node.read_document` returns it.

    ``document_id`` (64 hex); ``current`` the current version's revision (:meth:`DocumentState.current`),
    whose ``body`` is :attr:`body`; ``heads`` the concurrent latest revisions (more than one until a writer
    appends after seeing them all); ``history`` every revision, parents first; ``creator`` the genesis
    author's key; ``writers`` the keys that may write (``None``: anyone); ``asked`` and ``answered`` how
    many peers the read asked and how many answered (few or none: the document may be stale).
    """

    document_id: str
    current: Revision
    heads: tuple[Revision, ...]
    history: tuple[Revision, ...]
    creator: bytes
    writers: tuple[bytes, ...] | None
    asked: int
    answered: int

    @property
    def body(self) -> bytes:
        """The current version's body."""
        return self.current.body

    @classmethod
    def of(cls, state: DocumentState, *, asked: int, answered: int) -> Document:
        """A snapshot of ``state``."""
        return cls(state.document_id, state.current(), state.heads(), state.history(), state.owner, state.writers,
                   asked, answered)


class DocumentBook:
    """The documents a node keeps replicas of, and counts of what it did with each revision offered.

    ``capacity`` is the number of documents kept (default 1,000) and ``max_bytes`` the bytes of their
    revisions (default 64 MiB); a new document or revision beyond either is refused ``full``. ``counts``
    maps each :data:`Offer` outcome to how often it happened. Deleted documents are dropped (:meth:`drop`);
    their genesis is kept so that their tombstone can be checked.
    """

    def __init__(self, capacity: int = 1_000, max_bytes: int = BOOK_BYTES) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.size = 0  # bytes of the revisions kept and held back, all documents together
        self.counts: dict[Offer, int] = dict.fromkeys(
            ("accepted", "duplicate", "pending", "forged", "refused", "deleted", "full"), 0)
        self._documents: dict[str, DocumentState] = {}
        self._deleted: dict[str, Revision] = {}

    def offer(self, document_id: str, revision: Revision) -> Offer:
        """Add ``revision`` to document ``document_id`` (a genesis starts it, when its id is that); returns
        (and counts) the outcome. Never raises for a bad revision."""
        if document_id in self._deleted:
            return self._count("deleted")
        state = self._documents.get(document_id)
        if state is not None and revision.id in state:
            return self._count("duplicate")
        if self.size >= self.max_bytes:
            return self._count("full")
        if state is not None:
            before = state.size
            outcome = state.add(revision)
            self.size += state.size - before
            return self._count(outcome)
        if not revision.genesis or revision.id != document_id:
            return self._count("refused")
        try:
            state = DocumentState(revision)
        except RevisionRefused:
            return self._count("forged")
        if len(self._documents) >= self.capacity:
            return self._count("full")
        self._documents[document_id] = state
        self.size += state.size
        return self._count("accepted")

    def get(self, document_id: str) -> DocumentState | None:
        """The replica of ``document_id`` kept here, or ``None``."""
        return self._documents.get(document_id)

    def genesis(self, document_id: str) -> Revision | None:
        """The genesis of ``document_id``, kept or deleted, or ``None``."""
        state = self._documents.get(document_id)
        return state.genesis if state is not None else self._deleted.get(document_id)

    def drop(self, genesis: Revision) -> None:
        """Forget the revisions of the document that ``genesis`` starts, deleted by its creator (the genesis
        stays, to check the tombstone against), and refuse new ones."""
        state = self._documents.pop(genesis.id, None)
        if state is not None:
            self.size -= state.size
        if len(self._deleted) < self.capacity:
            self._deleted[genesis.id] = genesis

    def __len__(self) -> int:
        return len(self._documents)

    def _count(self, outcome: Offer) -> Offer:
        self.counts[outcome] += 1
        return outcome
