"""Access to the console: one token (`SSAD_CONSOLE_TOKEN`, or generated), a login cookie for browsers, a Bearer
header for API clients, and a CSRF guard on every request that changes anything.

The cookie holds not the token but an HMAC of it (HttpOnly, SameSite=Strict); the CSRF token, also derived from
the token, is in the page and must come back in the `X-CSRF-Token` header of a cookie-authenticated POST, whose
Origin (when the browser sends one) must be the console's own.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

from starlette.requests import Request
from starlette.responses import Response

__all__ = ["COOKIE", "Access", "console_token"]

COOKIE = "ssad_console"
CSRF_HEADER = "x-csrf-token"


def console_token() -> tuple[str, bool]:
    """The token from SSAD_CONSOLE_TOKEN, or a new random one; and whether it was generated."""
    given = os.environ.get("SSAD_CONSOLE_TOKEN", "").strip()
    return (given, False) if given else (secrets.token_urlsafe(24), True)


def _derive(token: str, purpose: str) -> str:
    return hmac.new(token.encode(), purpose.encode(), hashlib.sha256).hexdigest()


class Access:
    """Who may see and change the console: holders of `token`."""

    def __init__(self, token: str) -> None:
        if len(token) < 8:
            raise ValueError("a console token must have at least 8 characters")
        self.token = token
        self.session = _derive(token, "ssad-console-login")
        self.csrf = _derive(token, "ssad-console-csrf")

    def is_token(self, given: str | None) -> bool:
        """Whether `given` is the token (constant time)."""
        return given is not None and hmac.compare_digest(given.encode(), self.token.encode())

    def how(self, request: Request) -> str | None:
        """'bearer' or 'cookie' when the request carries the token or the login cookie, else None."""
        header = request.headers.get("authorization", "")
        if header.lower().startswith("bearer ") and self.is_token(header[7:].strip()):
            return "bearer"
        cookie = request.cookies.get(COOKIE)
        if cookie is not None and hmac.compare_digest(cookie.encode(), self.session.encode()):
            return "cookie"
        return None

    def may_change(self, request: Request) -> bool:
        """Whether a state-changing request is allowed: Bearer, or the cookie with the CSRF token and our origin."""
        how = self.how(request)
        if how == "bearer":
            return True
        if how != "cookie":
            return False
        origin = request.headers.get("origin")
        if origin is not None and origin.rstrip("/") != f"{request.url.scheme}://{request.url.netloc}":
            return False
        return hmac.compare_digest(request.headers.get(CSRF_HEADER, "").encode(), self.csrf.encode())

    def log_in(self, response: Response, secure: bool) -> Response:
        """Set the login cookie on `response`."""
        response.set_cookie(COOKIE, self.session, max_age=30 * 86400, httponly=True, samesite="strict", secure=secure,
                            path="/")
        return response
