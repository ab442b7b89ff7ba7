"""The wiki (examples/wiki) over plain HTTP and its command line, on real nodes over TCP on 127.0.0.1: an
article written on one node's page is read on another's and from the CLI, rendered without running scripts;
it is edited, its history and changes listed and it is deleted by its creator's key only, from the pages and
from the CLI; missing articles and pages say so with a 404, deleted ones with a 410."""

from __future__ import annotations

import re
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

from butter.records import create_owner_key, public_key_bytes

SCRIPT_BODY = "# Strawberries 🍓\n\n<script>document.title='pwned'</script>\n\n[click](javascript:alert(1)) **ripe**"


def content_id_of(url: str) -> str:
    match = re.search(r"/article/([0-9a-f]{64})$", url)
    assert match, url
    return match.group(1)


def test_help(wiki_nodes: Any) -> None:
    result = wiki_nodes.run("--help", timeout=30)
    assert result.returncode == 0, result.stdout
    assert all(command in result.stdout for command in ("serve", "write", "edit", "history", "diff", "delete"))
    result = wiki_nodes.run("serve", "--help", timeout=30)
    assert result.returncode == 0 and "--web-port" in result.stdout and "--peer" in result.stdout


def test_write_on_one_page_read_on_another_and_from_the_cli(wiki_nodes: Any) -> None:
    a = wiki_nodes.start(backend="asyncio")
    b = wiki_nodes.start(backend="trio")
    a.wait_for_peers(1)
    b.wait_for_peers(1)

    status, url, page = a.post("/write", {"title": "Fruit <i>&</i> more", "body": SCRIPT_BODY})
    assert status == 200, page  # after the 303 to the article
    content_id = content_id_of(url)
    assert 'id="title">Fruit &lt;i&gt;&amp;&lt;/i&gt; more</h1>' in page

    status, _, page = b.get(f"/article/{content_id}")  # found by BFS on the other node
    assert status == 200, page
    assert "<h1>Strawberries 🍓</h1>" in page and "<strong>ripe</strong>" in page
    assert "<script" not in page and "&lt;script&gt;" in page  # shown as text, never as a script
    assert 'href="javascript:' not in page
    assert "script-src" not in page  # and the page forbids scripts in its header anyway (see web.py)

    status, _, page = b.get("/articles")  # B has seen it by reading it
    assert status == 200 and f'href="/article/{content_id}"' in page and "Fruit &lt;i&gt;" in page
    listed = wiki_nodes.run("list", "--node", b.address)
    assert listed.returncode == 0 and f"{content_id}  Fruit <i>&</i> more" in listed.stdout, listed.stdout

    read = wiki_nodes.run("read", content_id, "--peer", a.address, "--backend", "trio")
    assert read.returncode == 0, read.stdout
    assert "# Fruit <i>&</i> more" in read.stdout and "<script>document.title='pwned'</script>" in read.stdout

    written = wiki_nodes.run("write", "--title", "From the CLI", "--body", "*hello*", "--peer", b.address)
    assert written.returncode == 0, written.stdout
    cli_id = re.search(r"stored ([0-9a-f]{64})", written.stdout)
    assert cli_id, written.stdout
    status, _, page = a.get(f"/find?id={cli_id.group(1)}")  # the find form redirects to the article
    assert status == 200 and "<em>hello</em>" in page, page

    assert a.process.stop(signal.SIGINT) == 0, a.process.output
    assert b.process.stop(signal.SIGTERM) == 0, b.process.output


def get_until(node: Any, path: str, status: int, timeout: float = 30) -> str:
    """GET ``path`` on ``node`` every 0.2 s until it answers ``status``; returns the page."""
    deadline = time.monotonic() + timeout
    while (reply := node.get(path))[0] != status:
        assert time.monotonic() < deadline, f"{path} never answered {status}: {reply}"
        time.sleep(0.2)
    return reply[2]


def test_edit_history_diff_and_delete_from_the_pages_and_the_cli(wiki_nodes: Any, tmp_path: Path) -> None:
    a = wiki_nodes.start(backend="asyncio")
    b = wiki_nodes.start(backend="trio")
    a.wait_for_peers(1)
    b.wait_for_peers(1)
    key = tmp_path / "me.pem"
    author = public_key_bytes(create_owner_key(key)).hex()[:12]

    written = wiki_nodes.run("write", "--title", "Plums", "--body", "one\ntwo", "--peer", a.address,
                             "--key", str(key))
    assert written.returncode == 0, written.stdout
    found = re.search(r"stored ([0-9a-f]{64})", written.stdout)
    assert found, written.stdout
    article_id = found.group(1)
    page = get_until(b, f"/article/{article_id}", 200)
    assert f'id="author">{author}</code>' in page and 'id="delete"' not in page  # B's key did not write it

    status, url, page = b.post(f"/article/{article_id}/edit", {"title": "Plums <3", "body": "one\n2 <b>\nthree"})
    assert status == 200 and url.endswith(f"/article/{article_id}"), page
    assert "Plums &lt;3" in page and "2 revision(s)" in page
    status, _, form = a.get(f"/article/{article_id}/edit")  # opened on A now, saved after the next edit
    base = re.search(r'name="base" value="([0-9a-f]{64})"', form)
    assert status == 200 and base and "2 &lt;b&gt;" in form, form
    edited = wiki_nodes.run("edit", article_id, "--body", "one\n2 <b>\nthree\nfour", "--peer", a.address)
    assert edited.returncode == 0 and "saved revision" in edited.stdout, edited.stdout

    history = wiki_nodes.run("history", article_id, "--peer", b.address)
    lines = [line for line in history.stdout.splitlines() if re.match(r"[* ] [0-9a-f]{64}  ", line)]
    assert history.returncode == 0 and len(lines) == 3, history.stdout
    assert lines[0].startswith("* ") and lines[-1].endswith("  Plums") and author in lines[-1]
    page = get_until(a, f"/article/{article_id}/history", 200)
    assert page.count('class="revision"') == 3 and "Plums &lt;3" in page
    changes = wiki_nodes.run("diff", article_id, "--peer", b.address)  # the last edit against its parent
    assert changes.returncode == 0 and "\n+four" in changes.stdout and "-two" not in changes.stdout, changes.stdout
    oldest = lines[-1][2:66]
    status, _, page = a.get(f"/article/{article_id}/diff?from={oldest[:10]}")  # any two: first to current
    assert status == 200 and '<span class="del">-two</span>' in page and "+2 &lt;b&gt;" in page, page
    status, _, page = a.get(f"/article/{article_id}/revision/{oldest}")
    assert status == 200 and 'id="old"' in page and "<p>one\ntwo</p>" in page, page
    first = wiki_nodes.run("read", article_id, "--revision", oldest[:8], "--peer", a.address)
    assert first.returncode == 0 and "# Plums\n\none\ntwo\n" in first.stdout, first.stdout

    status, _, page = a.post(f"/article/{article_id}/edit", {"title": "Plums", "body": "mine", "base": base.group(1)})
    assert status == 200 and 'id="conflict"' in page and f"diff?from={base.group(1)}&amp;to=" in page, page
    base = re.search(r'name="base" value="([0-9a-f]{64})"', a.get(f"/article/{article_id}/edit")[2])
    assert base, "no base revision in the edit form"
    status, url, page = a.post(f"/article/{article_id}/edit", {"title": "Plums", "body": "mine!", "base": base[1]})
    assert status == 200 and url.endswith(article_id) and "<p>mine!</p>" in page, page  # nothing unseen: no notice

    for status, _, page in (b.get(f"/article/{article_id}/delete"), b.post(f"/article/{article_id}/delete", {})):
        assert status == 403 and "only its creator" in page, page  # B's key did not create it
    refused = wiki_nodes.run("delete", article_id, "--peer", b.address)  # nor did a fresh node key
    assert refused.returncode == 1 and "refused: only its creator" in refused.stdout, refused.stdout
    deleted = wiki_nodes.run("delete", article_id, "--peer", b.address, "--key", str(key))
    assert deleted.returncode == 0 and f"deleted {article_id}" in deleted.stdout, deleted.stdout
    for node in (a, b):
        assert "was deleted by its creator" in get_until(node, f"/article/{article_id}", 410)
    read = wiki_nodes.run("read", article_id, "--peer", a.address)
    assert read.returncode == 1 and "deleted: article" in read.stdout, read.stdout
    status, _, page = a.post(f"/article/{article_id}/edit", {"title": "back", "body": "again"})
    assert status == 410, page


def test_not_found_pages(wiki_nodes: Any) -> None:
    a = wiki_nodes.start()
    for path, says in [
        ("/article/" + "0" * 64, "was found on the network"),
        ("/article/not-an-id", "64 hexadecimal characters"),
        ("/no/such/page", "there is no page /no/such/page"),
    ]:
        status, _, page = a.get(path)
        assert status == 404 and 'id="not-found"' in page and says in page, (path, page)
    status, _, page = a.post("/write", {"title": " ", "body": "x"})
    assert status == 400 and "Not stored" in page
    status, url, page = a.post("/write", {"title": "alone", "body": "x"})  # no peer to ask: may be stale
    assert status == 200 and 'id="stale"' in page, page
    article = url.removeprefix(a.url.rstrip("/"))
    for path, says in [("/revision/" + "e" * 64, "has no revision"), ("/diff?from=zz", "has no revision")]:
        status, _, page = a.get(article + path)
        assert status == 404 and says in page, (path, page)
    status, _, page = a.post(article + "/edit", {"title": "alone", "body": "x" * 20_000})
    assert status == 400 and "at most 16384 bytes" in page, page
    status, _, page = a.post("/write", {"title": "big", "body": "x" * 2_000_000})
    assert status == 413 and "Too large" in page
    status, _, page = a.get("/find?id=../../etc")  # whatever is typed, the answer is a clear 404
    assert status == 404 and 'id="not-found"' in page
    read = wiki_nodes.run("read", "f" * 64, "--peer", a.address, "--timeout", "10")
    assert read.returncode == 1 and "not found: no article" in read.stdout, read.stdout


def test_cross_site_posts_and_framing_are_refused(wiki_nodes: Any) -> None:
    """Any site a visitor opens could post a form to their local wiki node: a post naming another origin is
    refused (403) and stores nothing; a post from the node's own page is taken; no site may frame the pages."""
    a = wiki_nodes.start()
    own = a.url.rstrip("/")
    for headers in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {"Referer": "http://evil.example/x"}):
        status, _, page = a.post("/write", {"title": "forged", "body": "x"}, headers)
        assert status == 403 and "Refused" in page, (headers, status, page)
    status, _, page = a.get("/articles")
    assert "forged" not in page and "none yet" in page
    status, url, page = a.post("/write", {"title": "mine", "body": "y"}, {"Origin": own, "Referer": own + "/write"})
    assert status == 200 and "/article/" in url, page
    for action in ("edit", "delete"):  # nor may another site edit or delete an article through this node
        path = url.removeprefix(own) + "/" + action
        status, _, page = a.post(path, {"title": "forged", "body": "x"}, {"Origin": "http://evil.example"})
        assert status == 403 and "Refused" in page, (action, status, page)
    status, _, page = a.get(url.removeprefix(own))
    assert status == 200 and "1 revision(s)" in page, page
    reply = urllib.request.build_opener(urllib.request.ProxyHandler({})).open(a.url, timeout=60)
    assert reply.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in reply.headers["Content-Security-Policy"]
