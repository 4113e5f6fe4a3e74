"""What every console response and request goes through: security headers, CSRF tokens,
login throttling."""

from __future__ import annotations

import hashlib
import hmac

from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# No inline script or style anywhere: every script and stylesheet is a file of ours.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
    "font-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
# A chart (its own SVG resource, shown through <img>) may keep pygal's inline <style> and
# nothing else: no script, no fetch. Only an image/svg+xml response that asks for exactly
# this policy gets it instead of the one above.
SVG_IMAGE_POLICY = "default-src 'none'; style-src 'unsafe-inline'"
SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
    # Ignored by browsers over plain http (the demo); binding once served over https.
    (b"strict-transport-security", b"max-age=31536000"),
)

# What another site (or another port of this host: SameSite does not tell ports apart) may
# still reach: the sign-in page and invitation links opened from a mail or a chat, and the
# static files. Everything else answers 403 to a request the browser marks as coming from
# elsewhere (Sec-Fetch-Site), so no other page can make a signed-in member's browser open a
# case, download evidence or run a search.
_OPEN_TO_OTHER_SITES = ("/", "/login", "/invite/", "/static/", "/favicon")


def refused_as_cross_site(method: str, path: str, fetch_site: str | None, fetch_mode: str | None) -> bool:
    if fetch_site not in ("cross-site", "same-site"):
        return False  # same-origin, typed or bookmarked ("none"), or an older browser
    if method == "GET" and fetch_mode == "navigate":
        return not (path == "/" or path.startswith(_OPEN_TO_OTHER_SITES[1:]))
    return not path.startswith(("/static/", "/favicon"))


class SecurityHeaders:
    """Pure ASGI middleware: the headers above on every response, errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        site = headers.get(b"sec-fetch-site", b"").decode("latin-1") or None
        mode = headers.get(b"sec-fetch-mode", b"").decode("latin-1") or None
        if refused_as_cross_site(scope["method"], scope["path"], site, mode):
            await send({"type": "http.response.start", "status": 403,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8"), *SECURITY_HEADERS]})
            await send({"type": "http.response.body", "body": b"Forbidden"})
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in SECURITY_HEADERS}
                given = message.get("headers", [])
                headers = [h for h in given if h[0].lower() not in names]
                message["headers"] = headers + _security_headers(given)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _security_headers(given: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    found = {name.lower(): value for name, value in given}
    svg = found.get(b"content-type", b"").startswith(b"image/svg+xml")
    if svg and found.get(b"content-security-policy") == SVG_IMAGE_POLICY.encode():
        return [h if h[0] != b"content-security-policy" else (h[0], SVG_IMAGE_POLICY.encode()) for h in SECURITY_HEADERS]
    return list(SECURITY_HEADERS)


def csrf_token(key: bytes, binding: str) -> str:
    """The form token for a cookie value (session or pre-session): HMAC, so a page from
    another site, which cannot read our cookies or pages, cannot make one."""
    return hmac.new(key, b"nazaha/csrf/v1\x00" + binding.encode(), hashlib.sha256).hexdigest()


def csrf_ok(key: bytes, binding: str | None, token: str | None) -> bool:
    if not binding or not token:
        return False
    return hmac.compare_digest(csrf_token(key, binding), token)


class LoginThrottle:
    """Sign-in attempts per account name and per client address, over a moving window.

    Every attempt is counted *before* it is checked (so concurrent attempts cannot all slip
    under the limit); a successful sign-in clears its account's count. Past a limit, attempts
    are refused before any check, with the same answer as a wrong password or an unknown
    account. The client address is the connection's peer unless the operator names trusted
    proxies (``NAZAHA_CONSOLE_FORWARDED_ALLOW_IPS``); behind a proxy that is not trusted,
    every client shares one address, hence the higher per-address limit."""

    def __init__(self, per_account: str = "10/15 minutes", per_address: str = "50/15 minutes") -> None:
        self._storage = MemoryStorage()
        self._limiter = MovingWindowRateLimiter(self._storage)
        self._account = parse(per_account)
        self._address = parse(per_address)

    def attempt(self, account: str, address: str) -> bool:
        """Count one attempt; ``False`` when either limit is already reached."""
        account_ok = self._limiter.hit(self._account, "account", account)
        address_ok = self._limiter.hit(self._address, "address", address)
        return account_ok and address_ok

    def succeeded(self, account: str) -> None:
        self._limiter.clear(self._account, "account", account)


__all__ = ["SecurityHeaders", "csrf_token", "csrf_ok", "LoginThrottle"]
