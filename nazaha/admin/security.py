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
SECURITY_HEADERS = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)


class SecurityHeaders:
    """Pure ASGI middleware: the headers above on every response, errors included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in SECURITY_HEADERS}
                headers = [h for h in message.get("headers", []) if h[0].lower() not in names]
                message["headers"] = headers + list(SECURITY_HEADERS)
            await send(message)

        await self.app(scope, receive, send_with_headers)


def csrf_token(key: bytes, binding: str) -> str:
    """The form token for a cookie value (session or pre-session): HMAC, so a page from
    another site, which cannot read our cookies or pages, cannot make one."""
    return hmac.new(key, b"nazaha/csrf/v1\x00" + binding.encode(), hashlib.sha256).hexdigest()


def csrf_ok(key: bytes, binding: str | None, token: str | None) -> bool:
    if not binding or not token:
        return False
    return hmac.compare_digest(csrf_token(key, binding), token)


class LoginThrottle:
    """Failed logins per account name and per client address, over a moving window.

    Once a limit is reached, further attempts are refused before any check, with the same
    answer as a wrong password or an unknown account."""

    def __init__(self, per_account: str = "5/15 minutes", per_address: str = "20/15 minutes") -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._account = parse(per_account)
        self._address = parse(per_address)

    def allowed(self, account: str, address: str) -> bool:
        return self._limiter.test(self._account, "account", account) and self._limiter.test(
            self._address, "address", address
        )

    def failed(self, account: str, address: str) -> None:
        self._limiter.hit(self._account, "account", account)
        self._limiter.hit(self._address, "address", address)


__all__ = ["SecurityHeaders", "csrf_token", "csrf_ok", "LoginThrottle"]
