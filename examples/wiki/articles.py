"""The wiki itself, shared by the web page and the command line: write, edit, read, diff and delete articles.

An article is a Butter document (:mod:`butter.documents`): a grow-only set of signed revisions that every
peer merges the same way. Each revision's body is the article's full text at that point, the JSON
``{"title": str, "body": str (Markdown)}``; the first (genesis) revision is the article as written, each edit
appends a revision with the new full text, and differences are computed on display (:func:`diff`). The
article id is the document id (64 hex). The revision's author key and time say who wrote it and when; the
genesis author is the article's creator, the only key that can delete it. A node only remembers the titles
and ids of the articles written or read through it, in memory.
"""

from __future__ import annotations

import difflib
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import butter
from butter.blocks import is_block_id
from butter.documents import MAX_BODY
from butter.records import public_key_bytes

MAX_TITLE = 200  # characters
MAX_ARTICLE = MAX_BODY  # bytes of an article's JSON: one revision body (16 KiB)
SHORT = 12  # hex characters of a key or revision id shown to people


class ArticleNotFound(LookupError):
    """No article with this id: a malformed id, a document neither this node nor the peers it asked hold, or
    one that is not an article. The message says which."""


class ArticleDeleted(ArticleNotFound):
    """The article was deleted by its creator (a signed tombstone says so)."""


@dataclass(frozen=True, slots=True)
class Article:
    """One version of an article's text."""

    title: str
    body: str  # Markdown source; rendered safely by render.py

    def to_bytes(self) -> bytes:
        """The JSON of a revision body. Raises ``ValueError`` for an empty or too long title, or an article
        over :data:`MAX_ARTICLE` bytes."""
        if not 0 < len(self.title) <= MAX_TITLE:
            raise ValueError(f"the title must be 1 to {MAX_TITLE} characters")
        data = json.dumps({"title": self.title, "body": self.body}, ensure_ascii=False).encode("utf-8")
        if len(data) > MAX_ARTICLE:
            raise ValueError(f"an article is at most {MAX_ARTICLE} bytes of UTF-8 (this one: {len(data)})")
        return data

    @classmethod
    def from_bytes(cls, data: bytes) -> Article:
        """Parse a revision body; raises ``ValueError`` for anything else."""
        try:
            value = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not (isinstance(value, dict) and isinstance(value.get("title"), str)
                and isinstance(value.get("body"), str)):
            raise ValueError('expected {"title": str, "body": str}')
        return cls(value["title"], value["body"])

    def lines(self) -> list[str]:
        """The text compared by :func:`diff`: the title, a blank line, then the body's lines."""
        return [self.title, "", *self.body.splitlines()]


@dataclass(frozen=True, slots=True)
class Version:
    """One revision of an article: its id (64 hex), its parents' ids, its author's public key (64 hex), the
    time it was written (Unix seconds, as its author's clock said) and the article's text then."""

    revision: str
    parents: tuple[str, ...]
    author: str
    at: float
    article: Article

    @property
    def when(self) -> str:
        """``at`` as ``YYYY-MM-DD HH:MM:SS UTC``."""
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(self.at))


@dataclass(frozen=True, slots=True)
class Page:
    """An article as a read found it: ``history`` is every revision, oldest first (the document's order:
    by Lamport clock, so parents before children), ``current`` the version every peer with the same
    revisions shows (one of the ``heads``: when edits were saved at the same time on different nodes, each
    is a head until an edit follows them all), and ``answered`` how many of the ``asked`` peers answered
    the read (0: only this node's own copy was seen)."""

    id: str
    current: Version
    history: tuple[Version, ...]
    heads: tuple[str, ...]  # ids of the versions no later revision follows: several after concurrent edits
    creator: str  # the public key (64 hex) that wrote the first revision: the one that may delete it
    asked: int
    answered: int

    @property
    def stale(self) -> bool:
        """Whether this may not be the newest version: no peer answered, so edits made elsewhere may be missing."""
        return self.answered == 0

    def version(self, revision: str) -> Version:
        """The revision ``revision`` (its full id or a unique prefix of it). Raises ``KeyError``."""
        found = [v for v in self.history if v.revision.startswith(revision.lower())] if revision else []
        if len(found) != 1:
            raise KeyError(revision)
        return found[0]

    def compare(self, to: str | None = None, since: str | None = None) -> tuple[Version | None, Version]:
        """The two versions :func:`diff` compares: ``since`` (default: the first parent of ``to``, the
        version the edit started from; ``None`` for the first revision) and ``to`` (default: the current
        version), each a revision id or a unique prefix. Raises ``KeyError`` naming a revision not found."""
        new = self.version(to) if to else self.current
        if since:
            return self.version(since), new
        return (self.version(new.parents[0]) if new.parents else None), new


def diff(old: Version | None, new: Version) -> list[str]:
    """The unified diff (:func:`difflib.unified_diff`, 3 lines of context) from ``old`` (``None``: nothing,
    for the first revision) to ``new``, one line per item, without line ends."""
    return list(difflib.unified_diff(
        old.article.lines() if old else [], new.article.lines(),
        f"revision {old.revision[:SHORT]}" if old else "nothing", f"revision {new.revision[:SHORT]}", lineterm="",
    ))


def checked_id(article_id: str) -> str:
    """``article_id`` stripped and in lowercase; raises :class:`ArticleNotFound` when it is not 64 hex."""
    article_id = article_id.strip().lower()
    if not is_block_id(article_id):
        raise ArticleNotFound("an article id is 64 hexadecimal characters")
    return article_id


@contextmanager
def found(article_id: str) -> Iterator[None]:
    """Turn the document layer's not-found and deleted errors into the wiki's."""
    try:
        yield
    except butter.DocumentDeleted:
        raise ArticleDeleted(f"article {article_id} was deleted by its creator") from None
    except butter.DocumentNotFound as exc:
        asked = "no peer answered" if exc.answered == 0 else f"{exc.answered} peer(s) answered"
        raise ArticleNotFound(
            f"no article {article_id} was found on the network ({asked}; an article written a moment ago may "
            "need a few seconds to reach the peers this node knows: try again)"
        ) from None


class Wiki:
    """The wiki on one node. ``owner`` signs what this node writes (default: the node's identity key);
    ``key`` is its public key (64 hex); ``seen`` maps article id -> title, oldest first."""

    def __init__(self, node: butter.Node, owner: Ed25519PrivateKey | None = None) -> None:
        self.node = node
        self.owner = owner or node.identity.private_key
        self.key = public_key_bytes(self.owner).hex()
        self.seen: dict[str, str] = {}

    async def write(self, title: str, body: str) -> str:
        """Create an article (pushed to the node's peers); returns its id. Raises ``ValueError`` for an empty
        or too long title or article."""
        article = Article(title.strip(), body)
        article_id = await self.node.create_document(article.to_bytes(), owner=self.owner)
        self.seen[article_id] = article.title
        return article_id

    async def edit(self, article_id: str, title: str, body: str) -> tuple[str, tuple[str, ...]]:
        """Append a revision with the new full text to article ``article_id`` (the document layer reads it
        first, so the revision follows the newest heads the peers know); returns the revision id and its
        parents' ids (the versions it replaces: one, or several it merges). Raises ``ValueError`` as
        :meth:`write` does, :class:`ArticleNotFound` and :class:`ArticleDeleted`."""
        article = Article(title.strip(), body)
        data = article.to_bytes()
        article_id = checked_id(article_id)
        with found(article_id):
            revision = await self.node.append(article_id, data, owner=self.owner)
        self.seen[article_id] = article.title
        return revision.id, revision.parents

    async def read(self, article_id: str) -> Page:
        """Find the article ``article_id``: this node's copy merged with what the peers asked hold. Raises
        :class:`ArticleNotFound` and :class:`ArticleDeleted`."""
        article_id = checked_id(article_id)
        with found(article_id):
            document = await self.node.read_document(article_id)
        try:
            history = tuple(
                Version(r.id, r.parents, r.author.hex(), float(r.at), Article.from_bytes(r.body))
                for r in document.history
            )
        except ValueError as exc:
            raise ArticleNotFound(f"document {article_id} is not a wiki article ({exc})") from None
        current = next(v for v in history if v.revision == document.current.id)
        self.seen[article_id] = current.article.title
        heads = tuple(r.id for r in document.heads)
        return Page(article_id, current, history, heads, document.creator.hex(), document.asked, document.answered)

    async def delete(self, article_id: str) -> None:
        """Delete article ``article_id`` with this wiki's key (a tombstone pushed to the node's peers). Raises
        :class:`ArticleNotFound`, :class:`ArticleDeleted` (already deleted) and ``PermissionError`` when this
        key did not create it."""
        article_id = checked_id(article_id)
        try:
            with found(article_id):
                await self.node.delete_document(article_id, owner=self.owner)
        except butter.TombstoneRejected:
            raise PermissionError("only its creator can delete this article") from None
        self.seen.pop(article_id, None)
