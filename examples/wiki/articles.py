"""The wiki itself, shared by the web page and the command line: write an article, read one, list those seen.

An article is a small JSON document ``{"title": str, "body": str (Markdown), "created": float (Unix s)}``.
It is stored on the overlay with ``node.store`` (Peer Content Groups keep it alive) and found again with
``node.retrieve`` (random breadth-first search); its content id, the hex SHA-256 of its manifest, is its
address. Nothing else is stored anywhere: a node only remembers the titles and ids of the articles written
or read through it, in memory.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass

import butter
from butter.blocks import is_block_id
from butter.capabilities import GroupStatus

MEDIA_TYPE = "application/vnd.butter-wiki+json"
MAX_TITLE = 200  # characters
MAX_BODY = 256 * 1024  # characters of Markdown


class ArticleNotFound(LookupError):
    """No article with this id: a malformed id, an item the overlay does not hold, or one that is not an
    article. The message says which."""


@dataclass(frozen=True, slots=True)
class Article:
    title: str
    body: str  # Markdown source; rendered safely by render.py
    created: float  # Unix time, seconds

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> Article:
        """Parse a stored article; raises ``ValueError`` for anything else."""
        try:
            value = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not JSON: {exc}") from None
        if not (isinstance(value, dict) and isinstance(value.get("title"), str)
                and isinstance(value.get("body"), str) and isinstance(value.get("created"), int | float)):
            raise ValueError('expected {"title": str, "body": str, "created": number}')
        return cls(value["title"], value["body"], float(value["created"]))


class Wiki:
    """The wiki on one node. ``seen`` maps content id -> title, oldest first."""

    def __init__(self, node: butter.Node) -> None:
        self.node = node
        self.seen: dict[str, str] = {}

    async def write(self, title: str, body: str) -> str:
        """Store a new article; returns its content id. Raises ``ValueError`` for an empty or too long title
        or body, and :class:`butter.StoreFull` when this node has no room."""
        title = title.strip()
        if not 0 < len(title) <= MAX_TITLE:
            raise ValueError(f"the title must be 1 to {MAX_TITLE} characters")
        if len(body) > MAX_BODY:
            raise ValueError(f"the body must be at most {MAX_BODY} characters")
        article = Article(title, body, time.time())
        content_id = await self.node.store(article.to_bytes(), media_type=MEDIA_TYPE)
        self.seen[content_id] = title
        return content_id

    async def read(self, content_id: str) -> Article:
        """Find the article ``content_id`` on the overlay (or in this node's store). Raises
        :class:`ArticleNotFound`."""
        content_id = content_id.strip().lower()
        if not is_block_id(content_id):
            raise ArticleNotFound("an article id is 64 hexadecimal characters")
        try:
            data = await self.node.retrieve(content_id)
        except butter.ItemNotFound:
            raise ArticleNotFound(
                f"no article {content_id} was found on the network (an article written a moment ago may need a "
                "few seconds to reach the peers this node knows: try again)"
            ) from None
        try:
            article = Article.from_bytes(data)
        except ValueError as exc:
            raise ArticleNotFound(f"item {content_id} is not a wiki article ({exc})") from None
        self.seen[content_id] = article.title
        return article

    def group(self, content_id: str) -> tuple[int, int, str] | None:
        """``(replicas, target, "cold" | "goldilocks" | "hot")`` of the article's group when this node keeps
        it, else ``None`` (also when the persistence driver does not offer the optional
        :class:`~butter.capabilities.GroupStatus` capability; ``pcg`` does)."""
        groups = self.node.capability(GroupStatus)
        status = groups.group_status(content_id) if groups is not None else None
        if status is None:
            return None
        return status.replicas, status.target, status.state
