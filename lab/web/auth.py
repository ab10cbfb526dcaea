"""Who is asking: the instructor, one trainee, or nobody; and whether a request that
changes something really comes from our own page.

* Tokens are 256 random bits (URL-safe base64). A link ``/i/TOKEN`` or ``/t/TOKEN`` puts
  the token in a cookie (HttpOnly, SameSite=Strict, Secure when the browser reached us
  over https, path /) and redirects to a URL without it; every later request is known by
  the cookie alone. Tokens are compared in constant time, and a trainee's token is looked
  up by comparing it with every trainee's (no early exit, no hash lookup).
* A request that changes state (POST) needs the page's CSRF token in the ``X-CSRF-Token``
  header (an HMAC of the session token under a key of this server run, so another site
  cannot know it) and an ``Origin`` header naming this server. A websocket needs the
  ``Origin`` too: browsers send it on every websocket and cookies would otherwise let any
  site open one.
* Anything else is a plain 403 page that says no more than "not valid".
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from starlette.requests import HTTPConnection
from starlette.responses import HTMLResponse, Response

INSTRUCTOR_COOKIE = "maillab_instructor"
TRAINEE_COOKIE = "maillab_trainee"
CSRF_HEADER = "x-csrf-token"


def new_token() -> str:
    return secrets.token_urlsafe(32)


def same(a: str | None, b: str | None) -> bool:
    """Two secrets equal, compared in constant time (None never equals)."""
    if a is None or b is None:
        return False
    return hmac.compare_digest(a.encode(), b.encode())


def find(token: str | None, holders: Iterable[tuple[str, object]]) -> object | None:
    """The holder whose token is ``token``: every token is compared, whatever matches."""
    found = None
    for secret, holder in holders:
        if same(token, secret) and found is None:
            found = holder
    return found


class Keys:
    """This server run's secrets: the instructor's token and the CSRF key."""

    def __init__(self, instructor: str | None = None) -> None:
        self.instructor = instructor or new_token()
        self.csrf_key = secrets.token_bytes(32)

    def csrf(self, session_token: str) -> str:
        return hmac.new(self.csrf_key, b"csrf:" + session_token.encode(),
                        hashlib.sha256).hexdigest()

    def is_instructor(self, conn: HTTPConnection) -> bool:
        return same(conn.cookies.get(INSTRUCTOR_COOKIE), self.instructor)


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def own_origin(conn: HTTPConnection, public_url: str | None) -> str:
    """The origin a browser uses to reach us: the configured public URL's, else the one
    of this request (its scheme, behind a trusted proxy from X-Forwarded-Proto, and its
    Host header)."""
    if public_url:
        return origin_of(public_url)
    scheme = "https" if conn.url.scheme in ("https", "wss") else "http"
    return f"{scheme}://{conn.headers.get('host', '')}".lower()


def origin_ok(conn: HTTPConnection, public_url: str | None) -> bool:
    origin = conn.headers.get("origin")
    return origin is not None and origin.lower() == own_origin(conn, public_url)


def csrf_ok(headers: Mapping[str, str], expected: str) -> bool:
    return same(headers.get(CSRF_HEADER), expected)


def is_secure(conn: HTTPConnection) -> bool:
    return conn.url.scheme in ("https", "wss")


def set_cookie(response: Response, conn: HTTPConnection, name: str, token: str) -> None:
    response.set_cookie(name, token, httponly=True, samesite="strict", secure=is_secure(conn),
                        path="/")


FORBIDDEN_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>403 Forbidden</title></head>
<body><h1>403 Forbidden</h1>
<p>This link is not valid: the token is wrong, or its class is over.</p>
<p>Ask your instructor for your link.</p></body></html>
"""


def forbidden() -> HTMLResponse:
    return HTMLResponse(FORBIDDEN_PAGE, status_code=403)
