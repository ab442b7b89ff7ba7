"""Markdown to safe HTML. Anyone on the network can write an article, so its body must never run in a reader's
browser: markdown-it-py with raw HTML disabled (``<script>`` comes out as text) and its link check (no
``javascript:`` URLs), then nh3 (the Ammonia sanitiser) keeps only harmless tags and attributes, in case a
future Markdown extension lets something through."""

from __future__ import annotations

import nh3
from markdown_it import MarkdownIt

_markdown = MarkdownIt("commonmark", {"html": False}).enable("table").enable("strikethrough")


def markdown_to_html(text: str) -> str:
    return nh3.clean(_markdown.render(text), link_rel="noopener noreferrer nofollow")
