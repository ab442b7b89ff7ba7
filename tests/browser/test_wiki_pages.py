"""The wiki (examples/wiki) over plain HTTP and its command line, on real nodes over TCP on 127.0.0.1: an
article written on one node's page is read on another's and from the CLI, rendered without running scripts;
missing articles and pages say so with a 404."""

from __future__ import annotations

import re
import signal
import urllib.request
from typing import Any

SCRIPT_BODY = "# Strawberries 🍓\n\n<script>document.title='pwned'</script>\n\n[click](javascript:alert(1)) **ripe**"


def content_id_of(url: str) -> str:
    match = re.search(r"/article/([0-9a-f]{64})$", url)
    assert match, url
    return match.group(1)


def test_help(wiki_nodes: Any) -> None:
    result = wiki_nodes.run("--help", timeout=30)
    assert result.returncode == 0 and "serve" in result.stdout and "write" in result.stdout, result.stdout
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
    assert cli_id and "group: " in written.stdout, written.stdout
    status, _, page = a.get(f"/find?id={cli_id.group(1)}")  # the find form redirects to the article
    assert status == 200 and "<em>hello</em>" in page, page

    assert a.process.stop(signal.SIGINT) == 0, a.process.output
    assert b.process.stop(signal.SIGTERM) == 0, b.process.output


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
    reply = urllib.request.build_opener(urllib.request.ProxyHandler({})).open(a.url, timeout=60)
    assert reply.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in reply.headers["Content-Security-Policy"]
