"""Console sessions, in the console process's memory only.

A session holds the member's unlocked private key and, once granted, the team private key:
nothing of it is written anywhere. It ends at logout, after ``idle`` without a request (30
minutes by default) and when the account is reset or removed (its ``generation`` moves on);
ending it drops the keys. The cookie carries only a random token.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import secrets
from collections.abc import Callable

from nazaha.awareness.staff_chats import PendingLink
from nazaha.services.accounts import PendingEnrolment, StaffIdentity
from nazaha.storage.crypto import TeamPrivateKey

SESSION_COOKIE = "__Host-nazaha-session"
PRE_SESSION_COOKIE = "__Host-nazaha-pre"  # anonymous forms' CSRF binding (login, invitation)
ENROL_COOKIE = "__Host-nazaha-enrol"


@dataclasses.dataclass
class StaffSession:
    token: str
    identity: StaffIdentity
    staff_private: TeamPrivateKey | None
    team_private: TeamPrivateKey | None
    last_seen: dt.datetime
    locale: str
    # A team-key rotation prepared on the Keys page and not started yet (old, signing and
    # new keys, the sealed new recovery file): memory only, gone with the session.
    pending_rotation: object | None = None
    # A one-time invitation link just made on the Team page, shown by the next GET of
    # /users and then dropped: a secret, so never in a URL (the POST answers with a
    # redirect, and a refresh re-sends nothing). Memory only, gone with the session.
    team_page_link: dict[str, str] | None = None
    # "Link my Telegram" (awareness): the one-time link code, when it expires, and the
    # private half of the one-time key the bot seals the chat's first name to; kept until
    # the member types the confirmation code, unlinks, or it expires. Secrets: memory only.
    chat_link_code: PendingLink | None = None
    # Results of this member's test sends the broadcast page has shown (the bot's rows are
    # deleted once shown): broadcast id -> newest first. Memory only, gone with the session.
    test_results: dict[int, list] = dataclasses.field(default_factory=dict)

    def __repr__(self) -> str:
        return f"StaffSession({self.identity.role})"

    def __reduce__(self):
        raise TypeError("a staff session must not be pickled")

    def wipe(self) -> None:
        self.staff_private = None
        self.team_private = None
        self.pending_rotation = None
        self.team_page_link = None
        self.chat_link_code = None
        self.test_results = {}


class SessionStore:
    def __init__(self, clock: Callable[[], dt.datetime], idle: dt.timedelta) -> None:
        self._clock = clock
        self._idle = idle
        self._sessions: dict[str, StaffSession] = {}
        self._enrolments: dict[str, tuple[PendingEnrolment, dt.datetime]] = {}
        # Called with the token of every session that ends (caches keyed by session).
        self.on_close: list[Callable[[str], object]] = []

    def open(self, identity: StaffIdentity, staff_private, team_private) -> StaffSession:
        token = secrets.token_urlsafe(32)
        session = StaffSession(token, identity, staff_private, team_private, self._clock(), identity.locale)
        self._sessions[token] = session
        return session

    def get(self, token: str | None) -> StaffSession | None:
        """The live session for ``token``, its idle timer renewed; ``None`` if unknown or
        idle too long (then wiped)."""
        self.sweep()
        session = self._sessions.get(token or "")
        if session is None:
            return None
        session.last_seen = self._clock()
        return session

    def is_live(self, token: str | None) -> bool:
        """Whether ``token`` names a session that is not idle too long; renews and wipes
        nothing (the request's own :meth:`get` does that)."""
        session = self._sessions.get(token or "")
        return session is not None and session.last_seen > self._clock() - self._idle

    def close(self, token: str | None) -> None:
        session = self._sessions.pop(token or "", None)
        if session is not None:
            session.wipe()
            for callback in self.on_close:
                callback(session.token)

    def close_user(self, user_id: str) -> None:
        for token in [t for t, s in self._sessions.items() if s.identity.id == user_id]:
            self.close(token)

    def close_all(self) -> None:
        for token in list(self._sessions):
            self.close(token)

    def grant_live(self, user_id: str, team_private: TeamPrivateKey) -> None:
        """A member just granted the team key gets it in the sessions they have open now
        (the same key their grant opens at their next sign-in)."""
        for session in self._sessions.values():
            if session.identity.id == user_id and session.identity.role != "volunteer":
                session.team_private = team_private

    def team_key_holder(self) -> TeamPrivateKey | None:
        """The team key from any live session (for sending news kept for later)."""
        return next((s.team_private for s in self._sessions.values() if s.team_private is not None), None)

    def holder_of(self, key_id: str) -> StaffSession | None:
        """A live session holding the team key ``key_id`` (e.g. the old key of an
        interrupted rotation), if any."""
        for session in self._sessions.values():
            if session.team_private is not None and key_id in session.team_private.key_ids:
                return session
        return None

    def sweep(self) -> None:
        cutoff = self._clock() - self._idle
        for token in [t for t, s in self._sessions.items() if s.last_seen <= cutoff]:
            self.close(token)
        for key in [k for k, (_, at) in self._enrolments.items() if at <= cutoff]:
            del self._enrolments[key]

    def __len__(self) -> int:
        return len(self._sessions)

    # Pending enrolments (between the password form and the first TOTP code).
    def park_enrolment(self, pending: PendingEnrolment) -> str:
        key = secrets.token_urlsafe(32)
        self._enrolments[key] = (pending, self._clock())
        return key

    def enrolment(self, key: str | None) -> PendingEnrolment | None:
        self.sweep()
        entry = self._enrolments.get(key or "")
        return entry[0] if entry else None

    def drop_enrolment(self, key: str | None) -> None:
        self._enrolments.pop(key or "", None)
