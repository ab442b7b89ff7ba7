"""Multi-writer documents, sans-IO (butter.documents): signing and checking revisions, the merge (a CRDT:
commutative, associative, idempotent), the current version chosen the same whatever the order of arrival,
revisions held back until their parents arrive, the writers list, the summary by heads, and hostile input
(forged, altered and malformed revisions; hypothesis fuzzes the decoder and the checks)."""

from __future__ import annotations

import dataclasses

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st

from butter import codec
from butter.documents import (
    MAX_BODY,
    Document,
    DocumentBook,
    DocumentState,
    Revision,
    sign_revision,
)
from butter.errors import ProtocolError, RevisionRefused
from butter.records import public_key_bytes
from butter.tombstones import TombstoneBook, sign_tombstone

KEYS = [Ed25519PrivateKey.from_private_bytes(bytes([i + 1]) * 32) for i in range(4)]
CREATOR = KEYS[0]
GENESIS = sign_revision(CREATOR, b"genesis", document_id=None, at=1_700_000_000)
DOC = GENESIS.id

# A plan of appends: (writer, which of the last 6 revisions it follows, as a bit mask; 0: the latest).
PLANS = st.lists(st.tuples(st.integers(0, len(KEYS) - 1), st.integers(0, 63)), min_size=1, max_size=14)


def build(plan: list[tuple[int, int]]) -> list[Revision]:
    """The genesis and one revision per step of ``plan``, parents before children."""
    revisions = [GENESIS]
    for step, (writer, mask) in enumerate(plan):
        recent = revisions[-6:]
        parents = [r for i, r in enumerate(recent) if mask >> i & 1] or [revisions[-1]]
        revisions.append(sign_revision(KEYS[writer], b"step %d" % step, document_id=DOC, parents=parents,
                                       at=1_700_000_000 + step))
    return revisions


def replica(revisions: list[Revision]) -> DocumentState:
    state = DocumentState(GENESIS)
    for revision in revisions:
        state.add(revision)
    return state


def union(*states: DocumentState) -> DocumentState:
    merged = DocumentState(GENESIS)
    for state in states:
        merged.merge(state)
    return merged


def view(state: DocumentState) -> tuple[frozenset[str], int, str, tuple[str, ...]]:
    return state.ids(), state.pending, state.current().id, tuple(r.id for r in state.history())


@settings(max_examples=60)
@given(plan=PLANS, split=st.lists(st.integers(0, 7), min_size=15, max_size=15))
def test_the_merge_is_commutative_associative_and_idempotent(plan: list[tuple[int, int]], split: list[int]) -> None:
    revisions = build(plan)
    # each revision goes to some of three replicas (bit i: replica i), so some hold revisions without parents
    a, b, c = (replica([r for r, bits in zip(revisions, split, strict=False) if bits >> i & 1]) for i in range(3))
    assert view(union(a, b)) == view(union(b, a))
    assert view(union(union(a, b), c)) == view(union(a, union(b, c)))
    assert view(union(a, a)) == view(union(a))
    everything = union(a, b, c, replica(revisions))
    assert everything.ids() == {r.id for r in revisions} and everything.pending == 0


@settings(max_examples=60)
@given(plan=PLANS, data=st.data())
def test_every_order_of_arrival_gives_the_same_set_and_current_version(plan: list[tuple[int, int]],
                                                                       data: st.DataObject) -> None:
    revisions = build(plan)
    in_order = replica(revisions)
    shuffled = replica(data.draw(st.permutations(revisions)))
    assert view(shuffled) == view(in_order)
    assert shuffled.pending == 0 and len(shuffled) == len(revisions)
    heads = shuffled.heads()
    assert shuffled.current() == max(heads, key=lambda r: (r.clock, r.author, r.id))
    named = {p for r in revisions for p in r.parents}
    assert {h.id for h in heads} == {r.id for r in revisions} - named


@settings(max_examples=40)
@given(plan=PLANS, cut=st.integers(1, 15))
def test_the_heads_summarise_a_replica_and_lacking_is_exactly_what_it_misses(plan: list[tuple[int, int]],
                                                                            cut: int) -> None:
    revisions = build(plan)
    full, behind = replica(revisions), replica(revisions[:cut])  # a prefix: closed under parents
    lacking = full.lacking(r.id for r in behind.heads())
    assert {r.id for r in lacking} == full.ids() - behind.ids()
    for revision in lacking:  # parents first, so the receiver admits each at once
        assert behind.add(revision) in ("accepted", "duplicate")
    assert view(behind) == view(full)


def test_a_revision_is_held_back_until_its_parents_arrive_and_the_pending_set_is_bounded() -> None:
    first = sign_revision(KEYS[1], b"1", document_id=DOC, parents=[GENESIS], at=1)
    second = sign_revision(KEYS[2], b"2", document_id=DOC, parents=[first], at=2)
    state = DocumentState(GENESIS, max_pending=1)
    assert state.add(second) == "pending" and state.current() == GENESIS and state.pending == 1
    assert state.add(second) == "duplicate"
    third = sign_revision(KEYS[2], b"3", document_id=DOC, parents=[second], at=3)
    assert state.add(third) == "full"
    assert state.add(first) == "accepted"
    assert state.pending == 0 and state.current() == second and len(state) == 3


def test_signing_sets_the_clock_sorts_parents_and_puts_the_author_on_the_writers_list() -> None:
    genesis = sign_revision(CREATOR, b"", document_id=None, at=5, writers=[public_key_bytes(KEYS[1])])
    assert genesis.clock == 0 and genesis.writers == tuple(sorted(public_key_bytes(k) for k in KEYS[:2]))
    left = sign_revision(KEYS[1], b"l", document_id=genesis.id, parents=[genesis], at=6)
    right = sign_revision(CREATOR, b"r", document_id=genesis.id, parents=[genesis], at=6)
    top = sign_revision(CREATOR, b"t", document_id=genesis.id, parents=[right, left, left], at=7)
    assert top.clock == 2 and top.parents == tuple(sorted({left.id, right.id}))
    assert Revision.decode(top.encode()) == top and Revision.decode(top.encode()).id == top.id
    with pytest.raises(ValueError, match="16384"):
        sign_revision(CREATOR, b"x" * (MAX_BODY + 1), document_id=None, at=0)
    with pytest.raises(ValueError, match="genesis"):
        sign_revision(CREATOR, b"x", document_id=None, parents=[genesis], at=0)
    with pytest.raises(ValueError, match="genesis"):
        sign_revision(CREATOR, b"x", document_id=genesis.id, at=0)


def resign(revision: Revision, key: Ed25519PrivateKey, **changes: object) -> Revision:
    """``revision`` with ``changes``, signed again by ``key``: well signed, whatever else is wrong."""
    unsigned = dataclasses.replace(revision, author=public_key_bytes(key), **changes)  # type: ignore[arg-type]
    return dataclasses.replace(unsigned, signature=key.sign(unsigned.signed_bytes()))


def test_adversarial_forged_altered_and_rule_breaking_revisions_are_refused() -> None:
    state = DocumentState(GENESIS)
    honest = sign_revision(KEYS[1], b"honest", document_id=DOC, parents=[GENESIS], at=1)
    forger = KEYS[3]
    cases = {
        "altered body": (dataclasses.replace(honest, body=b"changed"), "forged"),
        "another author": (dataclasses.replace(honest, author=public_key_bytes(forger)), "forged"),
        "zero signature": (dataclasses.replace(honest, signature=bytes(64)), "forged"),
        "no parents": (resign(honest, forger, parents=()), "forged"),
        "repeated parents": (resign(honest, forger, parents=(GENESIS.id, GENESIS.id)), "forged"),
        "writers on a non-genesis": (resign(honest, forger, writers=()), "forged"),
        "wrong clock": (resign(honest, forger, clock=7), "refused"),
        "another document": (resign(honest, forger, document_id="ab" * 32), "refused"),
        "a second genesis": (sign_revision(forger, b"g", document_id=None, at=0), "refused"),
    }
    for what, (revision, outcome) in cases.items():
        assert state.add(revision) == outcome, what
        if outcome == "forged":  # refused on its own, before the document is looked at
            with pytest.raises(RevisionRefused):
                revision.check()
    assert sum(state.add(r) == "duplicate" for r, _ in cases.values()) == 0  # refused ones are not kept
    assert state.add(honest) == "accepted" and state.current() == honest and len(state) == 2


def test_the_writers_list_admits_only_its_keys() -> None:
    genesis = sign_revision(CREATOR, b"members", document_id=None, at=0, writers=[public_key_bytes(KEYS[1])])
    state = DocumentState(genesis)
    member = sign_revision(KEYS[1], b"ok", document_id=genesis.id, parents=[genesis], at=1)
    outsider = sign_revision(KEYS[2], b"no", document_id=genesis.id, parents=[genesis], at=1)
    assert state.add(outsider) == "refused" and state.add(member) == "accepted"
    assert state.may_write(public_key_bytes(CREATOR)) and not state.may_write(public_key_bytes(KEYS[2]))
    not_genesis = sign_revision(KEYS[1], b"x", document_id=genesis.id, parents=[genesis], at=1)
    with pytest.raises(RevisionRefused, match="genesis"):
        DocumentState(not_genesis)


def test_the_book_keeps_documents_counts_outcomes_and_refuses_deleted_ones() -> None:
    book = DocumentBook(capacity=1)
    child = sign_revision(KEYS[1], b"c", document_id=DOC, parents=[GENESIS], at=1)
    assert book.offer(DOC, child) == "refused"  # a child of a document this book does not know
    assert book.offer(DOC, GENESIS) == "accepted" and book.offer(DOC, child) == "accepted"
    other = sign_revision(KEYS[1], b"other", document_id=None, at=0)
    assert book.offer(other.id, other) == "full"
    assert book.offer("ab" * 32, other) == "refused"  # a genesis offered under another id
    book.drop(GENESIS)
    assert book.get(DOC) is None and book.genesis(DOC) == GENESIS
    assert book.offer(DOC, child) == "deleted"
    assert book.counts == {"accepted": 2, "duplicate": 0, "pending": 0, "forged": 0, "refused": 2, "deleted": 1,
                           "full": 1}
    assert book.size == 0


def test_the_book_keeps_at_most_max_bytes_of_revisions() -> None:
    book = DocumentBook(max_bytes=len(GENESIS.encode()) + 1)
    first = sign_revision(KEYS[1], b"1", document_id=DOC, parents=[GENESIS], at=1)
    second = sign_revision(KEYS[1], b"2", document_id=DOC, parents=[first], at=2)
    assert book.offer(DOC, GENESIS) == "accepted" and book.offer(DOC, first) == "accepted"  # under the bound before
    assert book.offer(DOC, second) == "full" and book.offer(DOC, first) == "duplicate"
    assert book.size == len(GENESIS.encode()) + len(first.encode())


def test_a_document_is_deleted_by_the_creators_tombstone_only() -> None:
    state = DocumentState(GENESIS)
    tombstones = TombstoneBook()
    stranger = sign_tombstone(KEYS[1], DOC, deleted_at=1, expires_at=10**10)
    assert tombstones.offer(stranger, state, now=2) == "forged"
    assert tombstones.offer(sign_tombstone(CREATOR, DOC, deleted_at=1, expires_at=10**10), state, now=2) == "accepted"


def test_a_document_snapshot_names_its_current_version_and_history() -> None:
    left = sign_revision(KEYS[1], b"left", document_id=DOC, parents=[GENESIS], at=1)
    right = sign_revision(KEYS[2], b"right", document_id=DOC, parents=[GENESIS], at=1)
    document = Document.of(replica([left, right]), asked=3, answered=1)
    assert document.body == max(left, right, key=lambda r: (r.clock, r.author, r.id)).body
    assert set(document.heads) == {left, right} and document.history[0] == GENESIS
    assert document.creator == public_key_bytes(CREATOR) and document.writers is None
    assert (document.asked, document.answered) == (3, 1)


# -- fuzzing -----------------------------------------------------------------------------------------------------

HEX = st.text("0123456789abcdef", min_size=64, max_size=64)
REVISIONS = st.builds(
    Revision,
    version=st.just(1),
    parents=st.lists(st.one_of(HEX, st.just(DOC)), max_size=3).map(tuple),
    clock=st.integers(0, 3),
    author=st.one_of(st.binary(min_size=32, max_size=32), st.sampled_from([public_key_bytes(k) for k in KEYS])),
    at=st.integers(0, 2**40),
    body=st.binary(max_size=64),
    signature=st.binary(min_size=64, max_size=64),
    document_id=st.one_of(st.none(), HEX, st.just(DOC)),
    writers=st.one_of(st.none(), st.lists(st.binary(min_size=32, max_size=32), max_size=2).map(tuple)),
)


@settings(max_examples=300)
@given(revision=REVISIONS)
def test_fuzz_checks_refuse_with_revision_refused_only_and_the_state_never_raises(revision: Revision) -> None:
    try:
        revision.check()
        signed = True
    except RevisionRefused:
        signed = False
    state = DocumentState(GENESIS)
    outcome = state.add(revision)
    assert outcome in ("forged", "refused", "pending", "full")
    assert signed or outcome == "forged"  # nothing whose signature fails is ever kept or held
    assert outcome != "accepted"  # no signature made up by hypothesis verifies (small-order keys are refused)
    assert view(state) == view(DocumentState(GENESIS))
    assert DocumentBook().offer(revision.id, revision) in ("forged", "refused")


def test_keys_of_small_order_are_refused_as_authors_and_writers() -> None:
    """What the fuzzing found: OpenSSL's Ed25519 check (RFC 8032, cofactorless) accepts the all-zero signature
    under the all-zero public key, a point of order 4, for about one message in four: anyone could "sign" as
    that key. The 8 points of small order, in every encoding, are refused."""
    weak = Revision(1, (), 0, bytes(32), 0, b"", bytes(64))
    Ed25519PublicKey.from_public_bytes(weak.author).verify(weak.signature, weak.signed_bytes())  # it does verify
    with pytest.raises(RevisionRefused, match="small order"):
        weak.check()
    assert DocumentBook().offer(weak.id, weak) == "forged"
    identity, minus_one = (1).to_bytes(32, "little"), (2**255 - 20).to_bytes(32, "little")
    for key in (bytes(32), identity, minus_one, (2**255 - 19).to_bytes(32, "little"), bytes(31) + b"\x80"):
        with pytest.raises(ValueError, match="small order"):
            sign_revision(CREATOR, b"", document_id=None, at=0, writers=[key])


@settings(max_examples=300)
@given(fields=st.dictionaries(
    st.sampled_from(["v", "doc", "parents", "clock", "author", "at", "body", "writers", "sig"]),
    st.one_of(st.none(), st.integers(-5, 2**64 - 1), st.binary(max_size=80), st.text(max_size=70), HEX,
              st.lists(st.one_of(HEX, st.binary(min_size=32, max_size=32), st.integers(-5, 2**63)), max_size=3)),
))
def test_fuzz_the_decoder_raises_only_protocol_errors(fields: dict[str, object]) -> None:
    try:
        revision = Revision.decode(codec.encode(fields))
    except ProtocolError:
        return
    assert Revision.decode(revision.encode()) == revision


def test_an_oversize_revision_does_not_decode() -> None:
    big = dataclasses.replace(GENESIS, body=b"x" * (21 * 1024))
    with pytest.raises(ProtocolError):
        Revision.decode(big.encode())
