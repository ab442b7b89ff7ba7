"""The web front end: a Starlette app over a :class:`~articles.Wiki`, served by hypercorn inside the node.

=================  =========================================================================================
``GET /``          welcome page
``GET /write``     form: title and Markdown body; ``POST /write`` stores it and redirects to the article
``GET /find``      form: an article id; with ``?id=...`` redirects to the article
``GET /article/ID``  the current version, rendered: author, time, links to edit, history and (on the node
                   whose key created it) delete, and a notice when the read may be stale; 404 when it is not
                   found, 410 when its creator deleted it
``/article/ID/edit``  form filled with the current text; ``POST`` appends a revision, redirects to the article,
                   or says (with links to their changes) that others edited it after the form was opened
``GET /article/ID/history``  every revision (id, author, time, title), newest first; pick two to compare
``GET /article/ID/revision/R``  the article as revision ``R`` (a unique prefix will do) left it
``GET /article/ID/diff``  ``?to=R&from=S``: unified diff from ``S`` (default: ``R``'s first parent) to ``R``
                   (default: the current version)
``/article/ID/delete``  asks to confirm (the creator's node only); ``POST`` deletes it (a signed tombstone),
                   then redirects to the article, which says it is deleted
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

from .articles import MAX_ARTICLE, MAX_TITLE, SHORT, Article, ArticleDeleted, ArticleNotFound, Page, Version, Wiki, diff
from .render import markdown_to_html

# No script may run on these pages, whatever an article contains (inline style only, for the page layout).
# No other site may frame them (clickjacking), and only this node's own pages may post to it (see `same_origin`).
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; img-src *; form-action 'self'; "
    "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
}

MAX_FORM = 3 * MAX_ARTICLE + 4096  # bytes of a posted form: the article's UTF-8, percent-encoded at worst
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
.button{display:inline-block;padding:.4rem .9rem;border:1px solid #888;border-radius:4px;margin-right:.5rem}
.notice{background:#fff3cd;border:1px solid #e0c060;padding:.5rem}
pre{overflow-x:auto}.add{background:#dfd}.del{background:#fdd}.hunk{color:#777}
td{padding:0 .4rem}"""


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


def article_form(action: str, heading: str, article: Article | None, button: str, base: str = "") -> str:
    """The write and edit form, filled with ``article`` (escaped) when given; ``base``: the revision an edit
    starts from, posted back to tell whether others edited the article meanwhile."""
    title, body = (escape(article.title), escape(article.body)) if article else ("", "")
    hidden = f'<input type="hidden" name="base" value="{escape(base)}">' if base else ""
    return f"""<h1>{escape(heading)}</h1>
<form method="post" action="{escape(action)}">{hidden}
<p><label>Title<br><input name="title" required maxlength="{MAX_TITLE}" value="{title}"></label></p>
<p><label>Body (Markdown)<br><textarea name="body">{body}</textarea></label></p>
<p><button type="submit" id="{button}">{button.capitalize()}</button></p></form>"""


WRITE_FORM = article_form("/write", "Write an article", None, "publish")

FIND_FORM = """<h1>Find an article</h1>
<form method="get" action="/find">
<p><label>Article id<br><input name="id" required></label></p>
<p><button type="submit" id="find">Find</button></p></form>"""


def short(hex_id: str) -> str:
    return escape(hex_id[:SHORT])


def deleted(article_id: str) -> HTMLResponse:
    return page("Deleted", f'<h1>Deleted</h1><p id="deleted">Article <code>{escape(article_id)}</code> was deleted '
                           "by its creator.</p>", 410)


def freshness(found: Page) -> str:
    """The notice of how fresh a read is: a visible warning when no peer answered it."""
    if found.stale:
        why = "this node knows no peer" if found.asked == 0 else f"none of the {found.asked} peers asked answered"
        return (f'<p id="stale" class="notice">This may be stale: {why}, so this is the copy this node already '
                "had, and edits made on other nodes may be missing. Reload to ask again.</p>")
    return f'<p><small id="fresh">{found.answered} of {found.asked} peers asked answered this read.</small></p>'


def article_html(found: Page, version: Version, mine: bool) -> str:
    """An article page: ``version``'s text, who wrote it when, the links to edit, see the history, and delete
    (only on the creator's node)."""
    base = f"/article/{found.id}"  # a checked hex id: safe as it is
    old = "" if version is found.current else (
        f'<p id="old" class="notice">This is revision {short(version.revision)}, not the current one: '
        f'<a href="{base}">see the current version</a>.</p>')
    others = ", ".join(f'<a href="{base}/revision/{head}">{short(head)}</a> by <code>{short(other.author)}</code>'
                       for head in found.heads if (other := found.version(head)) is not found.current)
    concurrent = (f'<p id="concurrent" class="notice">This article has {len(found.heads)} versions saved at the same '
                  f"time on different nodes; every node shows this one. The others: {others}. The next edit saved "
                  "follows them all.</p>") if others else ""
    delete = f'<a class="button" href="{base}/delete" id="delete">Delete</a>' if mine else ""
    return f"""{freshness(found)}{concurrent}{old}<h1 id="title">{escape(version.article.title)}</h1>
<article id="body">{markdown_to_html(version.article.body)}</article>
<p><small>revision <code id="revision">{short(version.revision)}</code>
by <code id="author">{short(version.author)}</code>
at <span id="time">{escape(version.when)}</span>; {len(found.history)} revision(s)</small></p>
<p><a class="button" href="{base}/edit" id="edit">Edit</a>
<a class="button" href="{base}/history" id="history">History</a>
<a class="button" href="{base}/diff?to={escape(version.revision)}">Changes</a>{delete}</p>
<p><small>id <code id="content-id">{escape(found.id)}</code></small></p>"""


def history_html(found: Page) -> str:
    """Every revision, newest first, with radio buttons to compare any two."""
    base = f"/article/{found.id}"
    rows = []
    for version in reversed(found.history):
        rev = escape(version.revision)
        mark = " <strong>current</strong>" if version is found.current else ""
        rows.append(
            f'<tr class="revision"><td><input type="radio" name="from" value="{rev}"></td>'
            f'<td><input type="radio" name="to" value="{rev}"></td>'
            f'<td><a href="{base}/revision/{rev}"><code>{short(version.revision)}</code></a>{mark}</td>'
            f"<td><code>{short(version.author)}</code></td><td>{escape(version.when)}</td>"
            f'<td>{escape(version.article.title)}</td><td><a href="{base}/diff?to={rev}">diff</a></td></tr>')
    return f"""{freshness(found)}<h1>History of <a href="{base}">{escape(found.current.article.title)}</a></h1>
<form method="get" action="{base}/diff"><table id="history-list"><tr><th>from</th><th>to</th><th>revision</th>
<th>author</th><th>time</th><th>title</th><th></th></tr>{"".join(rows)}</table>
<p><button type="submit" id="compare">Compare the selected revisions</button></p></form>"""


def diff_html(found: Page, old: Version | None, new: Version) -> str:
    base = f"/article/{found.id}"
    lines = []
    for line in diff(old, new)[2:]:  # the two file header lines are said in the heading instead
        kind = {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "same")
        lines.append(f'<span class="{kind}">{escape(line)}</span>')
    since = f"revision {short(old.revision)}" if old else "nothing (the first revision)"
    shown = "\n".join(lines) or "(no change)"
    return f"""<h1>Changes to <a href="{base}">{escape(found.current.article.title)}</a></h1>
<p>From {since} to revision <a href="{base}/revision/{escape(new.revision)}"><code>{short(new.revision)}</code></a>
by <code>{short(new.author)}</code> at {escape(new.when)}.</p>
<pre id="diff">{shown}</pre>
<p><a class="button" href="{base}/history">History</a></p>"""


def build_app(wiki: Wiki) -> Starlette:
    """The ASGI app for ``wiki``."""

    async def posted_form(request: Request) -> Response | dict[str, str]:
        """The posted form's text fields, or the page refusing it: a post from another site (403) or a form
        over ``MAX_FORM`` bytes (413)."""
        if not same_origin(request):
            return page("Refused", "<h1>Refused</h1><p>Articles can only be changed from this wiki's own pages.</p>",
                        403)
        length = int(request.headers.get("content-length") or 0)
        if length > MAX_FORM:
            if length <= DRAIN_LIMIT:  # read it first: a server that answers and closes mid-upload breaks the pipe
                async for _ in request.stream():
                    pass
            return page("Too large", f"<h1>Too large</h1><p>An article form is at most {MAX_FORM} bytes.</p>", 413)
        form = await request.form()
        return {key: value for key, value in form.items() if isinstance(value, str)}

    async def read(article_id: str) -> Response | Page:
        """The article, or the page saying it is deleted (410) or not found (404)."""
        try:
            return await wiki.read(article_id)
        except ArticleDeleted:
            return deleted(article_id)
        except ArticleNotFound as exc:
            return not_found(str(exc))

    async def home(request: Request) -> Response:
        return page("Home", f"""<h1>Welcome</h1>
<p>Articles on this wiki live on the Butter network, kept by the peers that run it: there is no server
and no central database. Anyone can edit an article from any node, and every revision stays in its history;
every article has an id, and anyone with the id can find it from any node.</p>
<p><a class="button" href="/write">Write an article</a><a class="button" href="/find">Find an article</a>
<a class="button" href="/articles">Articles seen here ({len(wiki.seen)})</a></p>
<p>This node: <code>{escape(str(wiki.node.address))}</code>; peers it knows: {len(wiki.node.hosts.peers())};
it writes as <code>{short(wiki.key)}</code>.</p>""")

    async def write(request: Request) -> Response:
        if request.method == "GET":
            return page("Write", WRITE_FORM)
        form = await posted_form(request)
        if isinstance(form, Response):
            return form
        try:
            article_id = await wiki.write(form.get("title", ""), form.get("body", ""))
        except ValueError as exc:
            return page("Not stored", f"<h1>Not stored</h1><p>{escape(str(exc))}</p>{WRITE_FORM}", 400)
        return RedirectResponse(f"/article/{article_id}", status_code=303)

    async def find(request: Request) -> Response:
        article_id = request.query_params.get("id", "").strip()
        if not article_id:
            return page("Find", FIND_FORM)
        return RedirectResponse(f"/article/{quote(article_id.lower(), safe='')}", status_code=303)

    async def article(request: Request) -> Response:
        found = await read(request.path_params["article_id"])
        if isinstance(found, Response):
            return found
        return page(found.current.article.title, article_html(found, found.current, found.creator == wiki.key))

    async def revision(request: Request) -> Response:
        found = await read(request.path_params["article_id"])
        if isinstance(found, Response):
            return found
        try:
            version = found.version(request.path_params["revision"])
        except KeyError:
            return not_found(f"article {found.id} has no revision {request.path_params['revision']}")
        return page(version.article.title, article_html(found, version, found.creator == wiki.key))

    async def edit(request: Request) -> Response:
        article_id = request.path_params["article_id"]
        if request.method == "GET":
            found = await read(article_id)
            if isinstance(found, Response):
                return found
            title = f"Edit {found.current.article.title}"
            return page("Edit", freshness(found) + article_form(f"/article/{found.id}/edit", title,
                                                                found.current.article, "save", found.current.revision))
        form = await posted_form(request)
        if isinstance(form, Response):
            return form
        title, body, base = form.get("title", ""), form.get("body", ""), form.get("base", "")
        try:
            revision, parents = await wiki.edit(article_id, title, body)
        except ArticleDeleted:
            return deleted(article_id)
        except ArticleNotFound as exc:
            return not_found(str(exc))
        except ValueError as exc:
            action = f"/article/{quote(article_id, safe='')}/edit"
            form_html = article_form(action, "Edit", Article(title, body), "save")
            return page("Not saved", f"<h1>Not saved</h1><p>{escape(str(exc))}</p>{form_html}", 400)
        url = f"/article/{quote(article_id, safe='')}"
        if not base or parents == (base,):
            return RedirectResponse(url, status_code=303)
        others = "".join(f'<li><a href="{url}/diff?from={quote(base)}&amp;to={p}">the changes up to revision '
                         f"<code>{short(p)}</code></a></li>" for p in parents if p != base)
        return page("Saved", f"""<h1>Saved</h1><div id="conflict" class="notice"><p>Your edit is revision
<code>{short(revision)}</code>, but the article was edited after you opened the form (at revision
<code>{short(base)}</code>): your text replaced theirs, which stays in the history. Check that nothing of
theirs was lost:</p><ul>{others}</ul></div>
<p><a class="button" href="{url}">The article</a><a class="button" href="{url}/history">History</a></p>""")

    async def history(request: Request) -> Response:
        found = await read(request.path_params["article_id"])
        if isinstance(found, Response):
            return found
        return page("History", history_html(found))

    async def changes(request: Request) -> Response:
        found = await read(request.path_params["article_id"])
        if isinstance(found, Response):
            return found
        try:
            old, new = found.compare(request.query_params.get("to"), request.query_params.get("from"))
        except KeyError as exc:
            return not_found(f"article {found.id} has no revision {exc.args[0]}")
        return page("Changes", diff_html(found, old, new))

    async def delete(request: Request) -> Response:
        if request.method == "GET":  # ask first: deleting cannot be undone
            found = await read(request.path_params["article_id"])
            if isinstance(found, Response):
                return found
            if found.creator != wiki.key:
                return page("Refused", "<h1>Refused</h1><p>only its creator can delete this article</p>", 403)
            return page("Delete", f"""<h1>Delete {escape(found.current.article.title)}?</h1>
<p>Every node that honours the creator's signed tombstone drops the article and all {len(found.history)} of its
revisions, and answers "deleted" from then on. This cannot be undone.</p>
<form method="post" action="/article/{found.id}/delete"><button type="submit" id="confirm">Delete it</button>
<a class="button" href="/article/{found.id}">Keep it</a></form>""")
        form = await posted_form(request)
        if isinstance(form, Response):
            return form
        article_id = request.path_params["article_id"]
        try:
            await wiki.delete(article_id)
        except ArticleDeleted:
            return deleted(article_id)
        except ArticleNotFound as exc:
            return not_found(str(exc))
        except PermissionError as exc:
            return page("Refused", f"<h1>Refused</h1><p>{escape(str(exc))}</p>", 403)
        return RedirectResponse(f"/article/{quote(article_id, safe='')}", status_code=303)

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
            Route("/article/{article_id}", article),
            Route("/article/{article_id}/edit", edit, methods=["GET", "POST"]),
            Route("/article/{article_id}/history", history),
            Route("/article/{article_id}/revision/{revision}", revision),
            Route("/article/{article_id}/diff", changes),
            Route("/article/{article_id}/delete", delete, methods=["GET", "POST"]),
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
