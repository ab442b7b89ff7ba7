"""The web front end: a Starlette app over a :class:`~articles.Wiki`, served by hypercorn inside the node.

=================  =========================================================================================
``GET /``          welcome page
``GET /write``     form: title and Markdown body; ``POST /write`` stores it and redirects to the article
``GET /find``      form: an article id; with ``?id=...`` redirects to the article
``GET /article/ID``  the article, rendered, with its Peer Content Group's state when this node holds it;
                   404 with a clear page when it is not found
``GET /articles``  the articles this node has seen (written or read here): titles and ids
=================  =========================================================================================

Every page escapes what it shows and is sent with a Content-Security-Policy that forbids scripts.
"""

from __future__ import annotations

import socket
from html import escape
from typing import Any
from urllib.parse import quote, urlsplit

import anyio
from hypercorn.config import Config
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

import butter

from .articles import MAX_BODY, ArticleNotFound, Wiki
from .render import markdown_to_html

# No script may run on these pages, whatever an article contains (inline style only, for the page layout).
# No other site may frame them (clickjacking), and only this node's own pages may post to it (see `same_origin`).
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src *; form-action 'self'; "
    "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
}

MAX_FORM = 4 * MAX_BODY + 4096  # bytes of a posted form: the body's characters, URL-encoded UTF-8 at worst
DRAIN_LIMIT = 64 * 1024 * 1024  # bytes of an oversized form read and dropped, so that the sender reads the 413


def same_origin(request: Request) -> bool:
    """Whether a form post comes from this node's own pages. A browser names the page that posts in ``Origin``
    (or at least ``Referer``); a post made by another site (cross-site request forgery: any page a visitor
    opens could otherwise write through their local node) names that site and is refused. Clients that are not
    browsers (curl, scripts) send neither header and are let through."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    return origin is None or urlsplit(origin).netloc == request.headers.get("host")

STYLE = """body{font-family:sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;line-height:1.5}
header a{text-decoration:none;color:inherit}footer{margin-top:3rem;color:#777;font-size:.9rem}
input,textarea{width:100%;font:inherit}textarea{height:16rem}code{word-break:break-all}
.button{display:inline-block;padding:.4rem .9rem;border:1px solid #888;border-radius:4px;margin-right:.5rem}"""


def page(title: str, body_html: str, status_code: int = 200) -> HTMLResponse:
    """The page template: ``title`` is escaped here; ``body_html`` must already be safe."""
    return HTMLResponse(
        f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)} · Butter dwiki</title>
<style>{STYLE}</style></head><body>
<header><h2><a href="/">Butter dwiki 🧈</a></h2></header>
<main>{body_html}</main>
<footer>Powered by the Butter framework: no server, no central database.</footer></body></html>""",
        status_code=status_code,
        headers=HEADERS,
    )


def not_found(message: str) -> HTMLResponse:
    return page("Not found", f'<h1>Not found</h1><p id="not-found">{escape(message)}</p>'
                             '<p><a class="button" href="/find">Find another article</a></p>', 404)


WRITE_FORM = """<h1>Write an article</h1>
<form method="post" action="/write">
<p><label>Title<br><input name="title" required maxlength="200"></label></p>
<p><label>Body (Markdown)<br><textarea name="body"></textarea></label></p>
<p><button type="submit" id="publish">Publish</button></p></form>"""

FIND_FORM = """<h1>Find an article</h1>
<form method="get" action="/find">
<p><label>Article id<br><input name="id" required></label></p>
<p><button type="submit" id="find">Find</button></p></form>"""


def build_app(wiki: Wiki) -> Starlette:
    """The ASGI app for ``wiki``."""

    async def home(request: Request) -> Response:
        return page("Home", f"""<h1>Welcome</h1>
<p>Articles on this wiki live on the Butter network, kept alive by the peers that run it: there is no server
and no central database. Every article has an id, its content address; anyone with the id can find it from
any node.</p>
<p><a class="button" href="/write">Write an article</a><a class="button" href="/find">Find an article</a>
<a class="button" href="/articles">Articles seen here ({len(wiki.seen)})</a></p>
<p>This node: <code>{escape(str(wiki.node.address))}</code>; peers it knows: {len(wiki.node.hosts.peers())}.</p>""")

    async def write(request: Request) -> Response:
        if request.method == "GET":
            return page("Write", WRITE_FORM)
        if not same_origin(request):
            return page("Refused", "<h1>Refused</h1><p>Articles can only be written from this wiki's own pages.</p>",
                        403)
        length = int(request.headers.get("content-length") or 0)
        if length > MAX_FORM:
            if length <= DRAIN_LIMIT:  # read it first: a server that answers and closes mid-upload breaks the pipe
                async for _ in request.stream():
                    pass
            return page("Too large", f"<h1>Too large</h1><p>An article form is at most {MAX_FORM} bytes.</p>", 413)
        form = await request.form()
        title, body = form.get("title"), form.get("body")
        try:
            if not isinstance(title, str) or not isinstance(body, str):
                raise ValueError("the form needs a title and a body")
            content_id = await wiki.write(title, body)
        except (ValueError, butter.StoreFull) as exc:
            return page("Not stored", f"<h1>Not stored</h1><p>{escape(str(exc))}</p>{WRITE_FORM}", 400)
        return RedirectResponse(f"/article/{content_id}", status_code=303)

    async def find(request: Request) -> Response:
        content_id = request.query_params.get("id", "").strip()
        if not content_id:
            return page("Find", FIND_FORM)
        return RedirectResponse(f"/article/{quote(content_id.lower(), safe='')}", status_code=303)

    async def article(request: Request) -> Response:
        content_id = request.path_params["content_id"]
        try:
            found = await wiki.read(content_id)
        except ArticleNotFound as exc:
            return not_found(str(exc))
        group = wiki.group(content_id)
        held = "; this node holds a replica: {} of {} ({})".format(*group) if group else ""
        return page(found.title, f"""<h1 id="title">{escape(found.title)}</h1>
<article id="body">{markdown_to_html(found.body)}</article>
<p><small>id <code id="content-id">{escape(content_id)}</code>{escape(held)}</small></p>""")

    async def articles(request: Request) -> Response:
        rows = "".join(f'<li><a href="/article/{cid}">{escape(title)}</a> <small><code>{cid}</code></small></li>'
                       for cid, title in reversed(wiki.seen.items()))  # ids are checked hex: safe as they are
        return page("Articles", f'<h1>Articles seen here</h1><ul id="articles">{rows or "<li>none yet</li>"}</ul>')

    async def unknown_path(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException) and exc.status_code != 404:
            return page("Error", f"<h1>{exc.status_code}</h1><p>{escape(exc.detail)}</p>", exc.status_code)
        return not_found(f"there is no page {request.url.path}")

    return Starlette(
        routes=[
            Route("/", home),
            Route("/write", write, methods=["GET", "POST"]),
            Route("/find", find),
            Route("/article/{content_id}", article),
            Route("/articles", articles),
        ],
        exception_handlers={HTTPException: unknown_path},
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening socket for the web page, bound before the node starts so a taken port fails at once
    (``OSError``); port 0 lets the OS pick."""
    sock = socket.create_server((host, port), backlog=128)
    sock.set_inheritable(True)
    return sock


async def serve(app: Any, sock: socket.socket, stop: anyio.Event, backend: str) -> None:
    """Serve ``app`` on ``sock`` until ``stop`` is set (then finish open requests) or the task is cancelled.

    hypercorn runs on asyncio and on trio: ``backend`` names the running event loop's. Giving it a
    ``shutdown_trigger`` also keeps it from installing signal handlers of its own: the node owns Ctrl-C.
    """
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]  # hypercorn takes the socket over (and closes it)
    config.accesslog = None
    config.loglevel = "WARNING"
    config.graceful_timeout = 3.0  # seconds open requests get once ``stop`` is set
    if backend == "trio":
        from hypercorn.trio import serve as hypercorn_serve
    else:
        from hypercorn.asyncio import serve as hypercorn_serve  # type: ignore[assignment]
    await hypercorn_serve(app, config, shutdown_trigger=stop.wait)
