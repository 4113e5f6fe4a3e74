"""Staff accounts: invitations, enrolment (password, TOTP, recovery codes, key pair), login,
team-key grants, reset and removal.

Nothing here prints or stores a password. An invitation is a random token whose keyed hash
is stored (console secret), valid 72 hours, consumed only when the enrolment form is
completed. Enrolment happens in two posts: the password (and, for the first admin, the team
passphrase) then the first TOTP code; until the second, everything lives in a
:class:`PendingEnrolment` in memory. Login takes username, password and a TOTP code (or a
recovery code) together and gives one answer for every failure. On success the member's
private key is unsealed (Argon2id(password) + console secret) and, with it, their grant of
the team key: both live in the session's memory only (nazaha.admin.sessions).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import secrets
import unicodedata
from collections.abc import Awaitable, Callable

import pyotp
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from nazaha.storage import crypto
from nazaha.storage.console_models import (
    ROLES,
    Invitation,
    RecoveryCode,
    StaffUser,
    TeamKeyBootstrap,
    TeamKeyGrant,
)
from nazaha.storage.crypto import KdfParams, TeamPrivateKey
from nazaha.storage.passphrases import WeakPassphrase, check_passphrase
from nazaha.typed_codes import normalise_code

INVITATION_LIFETIME = dt.timedelta(hours=72)
# A staff password protects, with the console secret, that member's key and so the team
# key: zxcvbn's highest rating ("very unguessable: strong protection from an offline
# slow-hash attack"), above the team passphrase's floor.
STAFF_PASSWORD_MIN_SCORE = 4
RECOVERY_CODES = 10
TOTP_STEP = 30
_USERNAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789._-")


class AccountError(ValueError):
    """A refused account operation; ``code`` is a short key the console translates."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


@dataclasses.dataclass(frozen=True)
class StaffIdentity:
    id: str
    username: str
    role: str
    locale: str
    generation: int


@dataclasses.dataclass
class PendingEnrolment:
    """Between the password form and the first TOTP code: memory only."""

    user_id: str
    username: str
    role: str
    token_hash: str
    password_hash: str
    public_key: bytes
    sealed_private_key: bytes
    staff_private: TeamPrivateKey
    totp_secret: str
    recovery_codes: tuple[str, ...]
    team_private: TeamPrivateKey | None  # the first admin's, opened with the passphrase

    def __repr__(self) -> str:
        return "PendingEnrolment(<redacted>)"


@dataclasses.dataclass
class LoginResult:
    identity: StaffIdentity
    staff_private: TeamPrivateKey
    team_private: TeamPrivateKey | None  # None until an admin grants access
    used_recovery_code: bool

    def __repr__(self) -> str:
        return f"LoginResult({self.identity.role})"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _identity(user: StaffUser) -> StaffIdentity:
    return StaffIdentity(user.id, user.username, user.role, user.locale, user.generation)


def normalise_username(username: str) -> str:
    """Lower case, trimmed; 3–32 of ``a-z 0-9 . _ -``; :class:`AccountError` otherwise."""
    name = (username or "").strip().lower()
    if not 3 <= len(name) <= 32 or not set(name) <= _USERNAME_CHARS:
        raise AccountError("bad_username")
    return name


def format_recovery_code(code: str) -> str:
    return f"{code[:5]}-{code[5:]}"


class Accounts:
    """Account operations on the console's store. Functions taking a ``session`` write
    in the caller's transaction and do not commit."""

    def __init__(
        self,
        console_secret: bytes,
        kdf_params: KdfParams,
        kdf_floor: KdfParams,
        clock: Callable[[], dt.datetime] = _now,
    ) -> None:
        self._secret = console_secret
        self._box = crypto.ConsoleSecretBox(console_secret)
        self._params = kdf_params
        self._floor = kdf_floor
        self.clock = clock
        # Verifying an unknown user costs the same as a known one (no timing oracle).
        self._dummy_hash = crypto.hash_password(secrets.token_urlsafe(16), kdf_params, kdf_floor)

    # ------------------------------------------------------------------ invitations

    def _token_hash(self, token: str) -> str:
        return crypto.keyed_hash(self._secret, "invitation", token)

    async def invite(
        self, session: AsyncSession, *, username: str, role: str, created_by: str | None
    ) -> tuple[str, str]:
        """A new account in state ``invited`` and its invitation: ``(user_id, token)``.
        :class:`AccountError` ``bad_username`` / ``bad_role`` / ``username_taken``."""
        name = normalise_username(username)
        if role not in ROLES:
            raise AccountError("bad_role")
        taken = await session.scalar(select(StaffUser.id).where(StaffUser.username == name))
        if taken is not None:
            raise AccountError("username_taken")
        user_id = secrets.token_hex(16)
        session.add(
            StaffUser(
                id=user_id, username=name, role=role, state="invited", locale="ar",
                created_at=self.clock(), totp_last_step=0, generation=0,
            )
        )
        await session.flush()
        return user_id, await self.new_invitation(session, user_id, created_by)

    async def new_invitation(self, session: AsyncSession, user_id: str, created_by: str | None) -> str:
        await session.execute(delete(Invitation).where(Invitation.user_id == user_id))
        token = secrets.token_urlsafe(32)
        session.add(
            Invitation(
                token_hash=self._token_hash(token), user_id=user_id,
                expires_at=self.clock() + INVITATION_LIFETIME, created_by=created_by,
            )
        )
        return token

    async def invitation(self, session: AsyncSession, token: str) -> StaffIdentity | None:
        """The account an unexpired invitation is for; ``None`` otherwise. Consumes nothing."""
        if not token or len(token) > 128:
            return None
        row = await session.get(Invitation, self._token_hash(token))
        if row is None or row.expires_at <= self.clock():
            return None
        user = await session.get(StaffUser, row.user_id)
        if user is None or user.state not in ("invited", "reset"):
            return None
        return _identity(user)

    async def needs_team_passphrase(self, session: AsyncSession) -> bool:
        """True while nobody holds the team key (the first admin types the passphrase)."""
        return await session.scalar(select(TeamKeyBootstrap.key_id).limit(1)) is not None

    async def store_bootstrap(self, session: AsyncSession, sealed_team_key: bytes, key_id: str) -> None:
        """Keep the passphrase-sealed team key until the first admin is granted it."""
        if await session.get(TeamKeyBootstrap, key_id) is None:
            session.add(TeamKeyBootstrap(key_id=key_id, sealed=sealed_team_key))

    # ------------------------------------------------------------------ enrolment

    async def start_enrolment(
        self, session: AsyncSession, token: str, password: str, team_passphrase: str | None = None
    ) -> PendingEnrolment:
        """Check the invitation and the password, make the key pair and the TOTP secret.

        :class:`AccountError`: ``invitation_invalid``, ``weak_password:<kind>``,
        ``team_passphrase_wrong``. Writes nothing."""
        identity = await self.invitation(session, token)
        if identity is None:
            raise AccountError("invitation_invalid")
        try:
            check_passphrase(password, user_inputs=[identity.username], min_score=STAFF_PASSWORD_MIN_SCORE)
        except WeakPassphrase as exc:
            raise AccountError(f"weak_password:{type(exc).__name__}") from None
        team_private = None
        bootstrap = await session.scalar(select(TeamKeyBootstrap).limit(1))
        if bootstrap is not None and identity.role == "admin":
            if not team_passphrase:
                raise AccountError("team_passphrase_wrong")
            try:
                team_private = await asyncio.to_thread(
                    crypto.open_team_private_key, bootstrap.sealed, team_passphrase, self._floor
                )
            except crypto.CryptoError:
                raise AccountError("team_passphrase_wrong") from None
        staff_private = TeamPrivateKey.generate()
        password_hash, sealed_key = await asyncio.to_thread(self._seal_for, identity.id, password, staff_private)
        codes = tuple(
            "".join(secrets.choice("ABCDEFGHJKMNPQRSTUVWXYZ23456789") for _ in range(10))
            for _ in range(RECOVERY_CODES)
        )
        return PendingEnrolment(
            user_id=identity.id, username=identity.username, role=identity.role,
            token_hash=self._token_hash(token), password_hash=password_hash,
            public_key=staff_private.public_key().to_bytes(), sealed_private_key=sealed_key,
            staff_private=staff_private, totp_secret=pyotp.random_base32(),
            recovery_codes=codes, team_private=team_private,
        )

    def _peppered(self, password: str) -> str:
        """The password as hashed: keyed by the console secret first, so that the console's
        database alone (a backup, a copy) cannot test guesses against the stored hash."""
        return crypto.keyed_hash(self._secret, "password", unicodedata.normalize("NFC", password))

    def _seal_for(self, user_id: str, password: str, key: TeamPrivateKey) -> tuple[str, bytes]:
        return (
            crypto.hash_password(self._peppered(password), self._params, self._floor),
            crypto.seal_staff_private_key(key, password, self._secret, user_id, self._params, self._floor),
        )

    @staticmethod
    def provisioning_uri(pending: PendingEnrolment, issuer: str = "Nazaha") -> str:
        return pyotp.TOTP(pending.totp_secret).provisioning_uri(name=pending.username, issuer_name=issuer)

    async def finish_enrolment(
        self, session: AsyncSession, pending: PendingEnrolment, code: str, locale: str | None = None
    ) -> LoginResult:
        """Check the first TOTP code; store the account, consume the invitation, grant the
        first admin the team key. :class:`AccountError` ``totp_wrong`` / ``invitation_invalid``."""
        step = self._matching_step(pending.totp_secret, code, last_step=0)
        if step is None:
            raise AccountError("totp_wrong")
        invitation = await session.get(Invitation, pending.token_hash)
        if invitation is None or invitation.user_id != pending.user_id or invitation.expires_at <= self.clock():
            raise AccountError("invitation_invalid")
        user = await session.get(StaffUser, pending.user_id)
        if user is None or user.state not in ("invited", "reset"):
            raise AccountError("invitation_invalid")
        await session.execute(delete(Invitation).where(Invitation.user_id == user.id))
        await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
        await session.execute(delete(TeamKeyGrant).where(TeamKeyGrant.user_id == user.id))
        user.password_hash = pending.password_hash
        user.public_key = pending.public_key
        user.key_mac = self._key_mac(user.id, user.role, pending.public_key)
        user.sealed_private_key = pending.sealed_private_key
        user.totp_sealed = self._box.seal("totp", user.id, pending.totp_secret.encode("ascii"))
        user.totp_last_step = step
        user.state = "active"
        user.enrolled_at = self.clock()
        if locale is not None:
            user.locale = locale  # the language they enrolled in
        for code_ in pending.recovery_codes:
            session.add(RecoveryCode(user_id=user.id, code_hash=crypto.keyed_hash(self._secret, "recovery", code_)))
        team_private = pending.team_private
        if team_private is not None:
            await self._grant(session, user, team_private, granted_by=user.id)
            await session.execute(delete(TeamKeyBootstrap))
        return LoginResult(_identity(user), pending.staff_private, team_private, False)

    # ------------------------------------------------------------------ TOTP

    def _matching_step(self, secret: str, code: str, last_step: int) -> int | None:
        """The time step (±1 around now) whose code is ``code`` and is newer than
        ``last_step``: each code works once. ``code`` as typed: Arabic-Indic digits, spaces
        and dashes are read as the authenticator's digits (nazaha.typed_codes)."""
        digits = normalise_code(code)
        if len(digits) != 6:
            return None
        totp = pyotp.TOTP(secret)
        now_step = int(self.clock().timestamp()) // TOTP_STEP
        for step in (now_step - 1, now_step, now_step + 1):
            if step > last_step and crypto.constant_time_equal(
                totp.at(step * TOTP_STEP).encode(), digits.encode()
            ):
                return step
        return None

    # ------------------------------------------------------------------ login

    async def login(
        self,
        sessionmaker,
        username: str,
        password: str,
        code: str,
        record: Callable[[AsyncSession, LoginResult | None], Awaitable[object]],
    ) -> LoginResult | None:
        """``None`` for every failure (unknown user, wrong password, wrong or replayed code,
        an account not active): the caller answers them all alike.

        The slow part (Argon2id for the password, then for the member's key) runs outside any
        write transaction; only the one-time use of the code and ``record(session, result)``
        (the audit entry) are written, together, in a short one."""
        from nazaha.storage.database import write_session

        try:
            name = normalise_username(username)
        except AccountError:
            name = None
        async with sessionmaker() as session:
            user = None
            if name is not None:
                user = await session.scalar(select(StaffUser).where(StaffUser.username == name))
            usable = user is not None and user.state == "active" and bool(user.password_hash)
            phc = user.password_hash if usable else self._dummy_hash
            ok = await asyncio.to_thread(crypto.verify_password, self._peppered(password or ""), phc, self._floor)
            result = None
            if usable and ok:
                staff_private = await asyncio.to_thread(
                    crypto.open_staff_private_key, user.sealed_private_key, password, self._secret, user.id, self._floor
                )
                team_private = await self.open_grants(session, user.id, staff_private)
                identity = _identity(user)
                secret = self._box.open("totp", user.id, user.totp_sealed).decode("ascii")
                last_step = user.totp_last_step
                # The member's own key just opened: the key record is theirs. A record made
                # before records carried a MAC gets it now (kept current otherwise).
                own_public = staff_private.public_key().to_bytes()
                key_mac = (
                    self._key_mac(user.id, user.role, own_public)
                    if own_public == bytes(user.public_key or b"") and user.key_mac is None else None
                )
        async with write_session(sessionmaker) as session:
            if usable and ok:
                used = await self._use_code(session, identity.id, secret, last_step, code)
                if used is not None:
                    result = LoginResult(identity, staff_private, team_private, used == "recovery")
                    if key_mac is not None:
                        await session.execute(
                            update(StaffUser).where(StaffUser.id == identity.id, StaffUser.key_mac.is_(None))
                            .values(key_mac=key_mac)
                        )
            await record(session, result)
        return result

    async def _use_code(self, session: AsyncSession, user_id: str, secret: str, last_step: int, code: str) -> str | None:
        """Consume a TOTP code (compare-and-set on the last step used: two sign-ins with one
        code cannot both pass) or a recovery code; ``"totp"``, ``"recovery"`` or ``None``."""
        step = self._matching_step(secret, code, last_step)
        if step is not None:
            result = await session.execute(
                update(StaffUser)
                .where(StaffUser.id == user_id, StaffUser.totp_last_step < step)
                .values(totp_last_step=step)
            )
            return "totp" if result.rowcount == 1 else None
        normalised = normalise_code(code, letters=True)
        if len(normalised) != 10:
            return None
        result = await session.execute(
            delete(RecoveryCode).where(
                RecoveryCode.user_id == user_id,
                RecoveryCode.code_hash == crypto.keyed_hash(self._secret, "recovery", normalised),
            )
        )
        return "recovery" if result.rowcount == 1 else None

    async def open_grants(
        self, session: AsyncSession, user_id: str, staff_private: TeamPrivateKey
    ) -> crypto.TeamKeyRing | None:
        """Every team key granted to the member, the published team key first (two keys
        during a team-key rotation, else one), as a ring; ``None`` without a grant. ``CryptoError`` if a
        grant fails to open."""
        from nazaha.storage.models import SystemSetting
        from nazaha.storage.team_key import SETTING_TEAM_KEY_ID

        grants = (
            await session.scalars(
                select(TeamKeyGrant)
                .where(TeamKeyGrant.user_id == user_id)
                .order_by(TeamKeyGrant.granted_at.desc(), TeamKeyGrant.team_key_id)
            )
        ).all()
        if not grants:
            return None
        published = await session.scalar(select(SystemSetting.value).where(SystemSetting.name == SETTING_TEAM_KEY_ID))
        published_id = bytes(published).decode("ascii") if published is not None else ""
        grants = sorted(grants, key=lambda g: g.team_key_id != published_id)  # stable: the published key first
        return crypto.TeamKeyRing(
            [crypto.open_team_key_grant(staff_private, user_id, g.team_key_id, g.sealed) for g in grants]
        )

    async def grant_key_ids(self, session: AsyncSession, user_id: str) -> frozenset[str]:
        """The ids of the team keys granted to the member (cheap: no key is opened)."""
        rows = await session.scalars(select(TeamKeyGrant.team_key_id).where(TeamKeyGrant.user_id == user_id))
        return frozenset(rows.all())

    async def recovery_codes_left(self, session: AsyncSession, user_id: str) -> int:
        rows = await session.scalars(select(RecoveryCode.code_hash).where(RecoveryCode.user_id == user_id))
        return len(rows.all())

    # ------------------------------------------------------------------ admin actions

    async def _grant(
        self, session: AsyncSession, user: StaffUser, team_private: TeamPrivateKey | crypto.TeamKeyRing, granted_by: str
    ) -> None:
        # Every key of a ring: a member granted during a rotation opens the reports not yet
        # re-keyed too.
        public = crypto.TeamPublicKey.from_bytes(user.public_key)
        keys = team_private.keys if isinstance(team_private, crypto.TeamKeyRing) else (team_private,)
        for key in keys:
            session.add(
                TeamKeyGrant(
                    user_id=user.id, team_key_id=key.key_id,
                    sealed=crypto.grant_team_key(key, public, user.id),
                    granted_by=granted_by, granted_at=self.clock(),
                )
            )

    def _key_mac(self, user_id: str, role: str, public_key: bytes) -> str:
        from nazaha.services.key_rotation import staff_key_mac

        return staff_key_mac(self._secret, user_id, role, public_key)

    async def grant(self, session: AsyncSession, user_id: str, team_private: TeamPrivateKey, granted_by: str) -> None:
        """Wrap the team key (held by the granting admin's session) to an enrolled member
        whose key record checks out (see ``key_rotation.staff_key_checks_out``).
        :class:`AccountError` ``not_enrolled`` / ``volunteer``."""
        from nazaha.services.key_rotation import staff_key_checks_out

        user = await session.get(StaffUser, user_id)
        if user is None or user.state != "active" or user.public_key is None:
            raise AccountError("not_enrolled")
        if not staff_key_checks_out(self._secret, user.id, user.role, user.public_key, user.key_mac):
            raise AccountError("not_enrolled")  # a key record someone else wrote
        if user.role == "volunteer":
            raise AccountError("volunteer")  # volunteers never see cases
        await session.execute(delete(TeamKeyGrant).where(TeamKeyGrant.user_id == user_id))
        await self._grant(session, user, team_private, granted_by)

    async def reset(self, session: AsyncSession, user_id: str, created_by: str) -> str:
        """Forgotten password or lost phone: drop password, TOTP, keys, grant and recovery
        codes, end sessions (generation), and return a new invitation token."""
        user = await session.get(StaffUser, user_id)
        if user is None or user.state == "removed":
            raise AccountError("no_such_user")
        await self._strip(session, user)
        user.state = "reset"
        return await self.new_invitation(session, user_id, created_by)

    async def remove(self, session: AsyncSession, user_id: str) -> None:
        """Destroy the member's keys and grant and end their sessions; the row stays so the
        audit log keeps naming them."""
        user = await session.get(StaffUser, user_id)
        if user is None:
            raise AccountError("no_such_user")
        await self._strip(session, user)
        await session.execute(delete(Invitation).where(Invitation.user_id == user_id))
        user.state = "removed"
        user.can_export = False

    async def set_export_right(self, session: AsyncSession, user_id: str, allowed: bool) -> None:
        """Let a caseworker export the inbox's triage metadata, or no longer. Admins always
        may and volunteers never: ``AccountError("not_caseworker")`` for them, and
        ``"no_such_user"`` for an unknown or removed account."""
        user = await session.get(StaffUser, user_id)
        if user is None or user.state == "removed":
            raise AccountError("no_such_user")
        if user.role != "caseworker":
            raise AccountError("not_caseworker")
        user.can_export = bool(allowed)

    async def _strip(self, session: AsyncSession, user: StaffUser) -> None:
        await session.execute(delete(TeamKeyGrant).where(TeamKeyGrant.user_id == user.id))
        await session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
        user.password_hash = None
        user.totp_sealed = None
        user.totp_last_step = 0
        user.public_key = None
        user.sealed_private_key = None
        user.generation += 1

    async def set_locale(self, session: AsyncSession, user_id: str, locale: str) -> None:
        await session.execute(update(StaffUser).where(StaffUser.id == user_id).values(locale=locale))

    async def current(self, session: AsyncSession, user_id: str) -> StaffIdentity | None:
        user = await session.get(StaffUser, user_id)
        if user is None or user.state != "active":
            return None
        return _identity(user)

    async def username_of(self, session: AsyncSession, user_id: str) -> str | None:
        return await session.scalar(select(StaffUser.username).where(StaffUser.id == user_id))

    async def members(self, session: AsyncSession) -> list[dict]:
        """Every account with its state and whether it holds the team key (admin page)."""
        users = (await session.scalars(select(StaffUser).order_by(StaffUser.username))).all()
        granted = set((await session.scalars(select(TeamKeyGrant.user_id))).all())
        return [
            {
                "id": u.id, "username": u.username, "role": u.role, "state": u.state,
                "granted": u.id in granted, "enrolled_at": u.enrolled_at,
                "can_export": u.role == "admin" or (u.role == "caseworker" and bool(u.can_export)),
            }
            for u in users
        ]


def qr_svg(uri: str) -> bytes:
    """The TOTP provisioning URI as an SVG QR code (segno), made on the server."""
    import io

    import segno

    out = io.BytesIO()
    segno.make(uri, error="m").save(out, kind="svg", scale=5, border=2, xmldecl=True, svgns=True)
    return out.getvalue()


def otpauth_secret_groups(secret: str) -> str:
    """The base32 secret in groups of four, for typing it by hand."""
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


__all__ = [
    "Accounts", "AccountError", "LoginResult", "PendingEnrolment", "StaffIdentity",
    "INVITATION_LIFETIME", "qr_svg", "format_recovery_code", "normalise_username",
]
