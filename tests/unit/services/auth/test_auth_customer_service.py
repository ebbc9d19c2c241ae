"""Customer sign-up, sign-in, refresh rotation and revocation over the in-memory fakes."""

from __future__ import annotations

import statistics
import time

import pytest
from argon2 import PasswordHasher
from finfaas.platform.audit import AuditLog
from finfaas.platform.errors import TooManyRequests
from finfaas.platform.jwt_auth import JwtVerifier, StaticKeySource
from finfaas.platform.ratelimit import (
    SIGN_IN_LIMIT,
    RateLimiter,
    sign_in_failures_window_seconds,
    sign_in_pair_delay_seconds,
    sign_in_pair_delay_seconds_max,
    sign_in_username_failures_slow_after,
    sign_in_username_slowed_interval_seconds,
)
from finfaas.platform.tokens import OAuthError, TokenIssuer
from finfaas.services.auth.errors import InvalidUsername, UsernameTaken, WeakPassword
from finfaas.services.auth.model import FamilyStatus, TokenStatus, token_hash
from finfaas.services.auth.service import (
    CUSTOMER_LIMITS,
    CUSTOMER_SCOPES,
    PUBLIC_CLIENT_ID,
    CustomerAuthService,
    refresh_token_lifetime_seconds,
)
from finfaas.services.customers.model import Caller
from finfaas.services.customers.service import AuditTrail
from finfaas_dev.fakes.auth import InMemoryRefreshTokenStore
from finfaas_dev.fakes.customers import InMemoryCustomerStore
from finfaas_dev.fakes.platform import InMemoryAuditStore, InMemoryRateLimitStore
from finfaas_dev.testing.platform import TokenMinter
from finfaas_dev.testing.workflow import FakeClock

START_S = 1_700_000_000.0
PASSWORD = "correct horse battery"
ORIGIN = Caller("anonymous", "anonymous", "req-1", None, "198.51.100.7")
# Cheap argon2id parameters: the behaviour under test does not depend on the cost.
CHEAP_HASHER = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)


class CountingHasher:
    """A real argon2 hasher that counts verifications."""

    def __init__(self, hasher: PasswordHasher = CHEAP_HASHER) -> None:
        self._hasher = hasher
        self.verified_hashes: list[str] = []
        self.verified_password_chars: list[int] = []

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored: str, password: str) -> bool:
        self.verified_hashes.append(stored)
        self.verified_password_chars.append(len(password))
        return self._hasher.verify(stored, password)

    def check_needs_rehash(self, stored: str) -> bool:
        return self._hasher.check_needs_rehash(stored)


class World:
    """The service and the fakes behind it."""

    def __init__(self, hasher=None) -> None:
        self.clock = FakeClock(START_S)
        self.minter = TokenMinter.generate()
        self.customers = InMemoryCustomerStore()
        self.tokens = InMemoryRefreshTokenStore()
        self.audit_store = InMemoryAuditStore()
        self.hasher = hasher or CountingHasher()
        issuer = TokenIssuer(self.minter.keyring, self.minter.issuer, self.minter.audience, clock=self.clock)
        self.service = CustomerAuthService(
            self.customers, self.tokens, lambda: issuer,
            RateLimiter(InMemoryRateLimitStore(), CUSTOMER_LIMITS, clock=self.clock),
            AuditTrail(AuditLog(self.audit_store, "auth", clock=self.clock)),
            hasher=self.hasher, clock=self.clock,
        )

    def verify(self, access_token: str):
        verifier = JwtVerifier(StaticKeySource(self.minter.keyring.jwks()), self.minter.issuer,
                               self.minter.audience, leeway_seconds=10**10)
        return verifier.verify(access_token)

    def audit_records(self) -> list:
        return [r for chain in self.audit_store.chains() for r in self.audit_store.records(chain)]

    def sign_in(self, username: str = "alice", password: str = PASSWORD, origin: Caller = ORIGIN,
                client_id: str = PUBLIC_CLIENT_ID, scope: str | None = None):
        return self.service.sign_in(username, password, client_id, scope, origin)


@pytest.fixture
def world() -> World:
    world = World()
    world.service.sign_up("alice", PASSWORD, ORIGIN)
    return world


def oauth_error(call) -> OAuthError:
    with pytest.raises(OAuthError) as caught:
        call()
    return caught.value


# --- sign-up ---------------------------------------------------------------------------------------


def test_sign_up_stores_an_argon2id_hash_never_the_password():
    world = World()

    signed_up = world.service.sign_up("  Bob.Smith ", PASSWORD, ORIGIN)

    assert signed_up.username == "bob.smith" and len(signed_up.customer_id) == 32
    credentials = world.customers.credentials_for("bob.smith")
    assert credentials.customer_id == signed_up.customer_id
    assert credentials.password_hash.startswith("$argon2id$") and PASSWORD not in credentials.password_hash
    assert world.customers.get(signed_up.customer_id).username == "bob.smith"


def test_a_username_is_taken_whatever_its_case(world):
    with pytest.raises(UsernameTaken):
        world.service.sign_up("ALICE", "another long passphrase", ORIGIN)


@pytest.mark.parametrize(
    "password, reason",
    [
        ("short pass", "12 to 128 characters"),
        ("x" * 129, "12 to 128 characters"),
        ("abababababababab", "at least 5 different characters"),
        ("Password1234", "too common"),
        ("my name is carol!", "must not contain the username"),
    ],
    ids=["too-short", "too-long", "repetitive", "common", "contains-username"],
)
def test_weak_passwords_are_refused_without_echoing_them(password, reason):
    world = World()

    with pytest.raises(WeakPassword) as caught:
        world.service.sign_up("carol", password, ORIGIN)

    assert caught.value.errors == (("password", reason),)
    assert password not in str(caught.value)
    assert world.customers.credentials_for("carol") is None


@pytest.mark.parametrize("username", ["ab", "a" * 65, "has space", "-leading", "naïve", "x@example.com"])
def test_malformed_usernames_are_refused(username):
    with pytest.raises(InvalidUsername):
        World().service.sign_up(username, PASSWORD, ORIGIN)


# --- sign-in ---------------------------------------------------------------------------------------


def test_sign_in_gives_a_customer_access_token_and_a_refresh_token(world):
    tokens = world.sign_in("Alice")

    principal = world.verify(tokens.access.access_token)
    customer_id = world.customers.credentials_for("alice").customer_id
    assert principal.sub == customer_id and principal.kind == "customer"
    assert principal.scopes == CUSTOMER_SCOPES and "ops" not in principal.scopes
    body = tokens.to_dict()
    assert body["token_type"] == "Bearer" and body["refresh_token"] == tokens.refresh_token
    assert body["refresh_token_expires_in"] == refresh_token_lifetime_seconds


def test_only_the_hash_of_a_refresh_token_is_stored(world):
    tokens = world.sign_in()

    stored = world.tokens.tokens
    assert list(stored) == [token_hash(tokens.refresh_token)]
    assert all(tokens.refresh_token not in repr(record) for record in stored.values())


def test_requested_scopes_narrow_the_token_and_ops_is_never_granted(world):
    narrowed = world.sign_in(scope="accounts:read")
    refused = oauth_error(lambda: world.sign_in(scope="accounts:read ops"))

    assert world.verify(narrowed.access.access_token).scopes == {"accounts:read"}
    assert refused.error == "invalid_scope"


def test_unknown_user_and_wrong_password_get_the_same_answer_after_the_same_work(world):
    wrong = oauth_error(lambda: world.sign_in(password="not the password"))
    unknown = oauth_error(lambda: world.sign_in(username="mallory"))
    malformed = oauth_error(lambda: world.sign_in(username="x"))

    assert {(e.error, e.description, e.status) for e in (wrong, unknown, malformed)} == {
        ("invalid_grant", "The credentials or refresh token are not valid.", 400)}
    # One argon2 verification each, all against hashes of the same parameters.
    parameters = {stored.rsplit("$", 2)[0] for stored in world.hasher.verified_hashes}
    assert len(world.hasher.verified_hashes) == 3 and len(parameters) == 1


def test_an_oversized_password_is_wrong_at_the_cost_of_any_other(world):
    refused = oauth_error(lambda: world.sign_in(password=PASSWORD + "x" * 100_000))

    assert refused.error == "invalid_grant"
    assert world.hasher.verified_password_chars == [0]


def test_unknown_user_and_wrong_password_take_about_as_long():
    # GIVEN argon2 parameters costly enough that skipping the verification would show
    world = World(hasher=PasswordHasher(time_cost=2, memory_cost=16 * 1024, parallelism=1))
    world.service.sign_up("alice", PASSWORD, ORIGIN)
    oauth_error(lambda: world.sign_in(username="warmup", origin=Caller("anonymous", "anonymous")))

    def median_seconds(username: str) -> float:
        durations = []
        for attempt in range(5):
            origin = Caller("anonymous", "anonymous", source_ip=f"203.0.113.{attempt}")
            started = time.perf_counter()
            oauth_error(lambda origin=origin: world.sign_in(username=username, password="wrong password!",
                                                            origin=origin))
            durations.append(time.perf_counter() - started)
        return statistics.median(durations)

    # WHEN both kinds of failure are timed
    ratio = median_seconds("alice") / median_seconds("nobody-here")

    # THEN neither is several times faster (a skipped hash would be ~100x faster)
    assert 0.4 < ratio < 2.5


def test_a_disabled_customer_cannot_sign_in(world):
    from dataclasses import replace

    credentials = world.customers.credentials_for("alice")
    world.customers.credentials["alice"] = replace(credentials, status="DISABLED")

    assert oauth_error(lambda: world.sign_in()).error == "invalid_grant"


ATTACKER = Caller("anonymous", "anonymous", source_ip="192.0.2.66")
HOUR_START_S = 1_699_999_200.0  # a multiple of the failure window: one whole window ahead


def refused(call) -> TooManyRequests | None:
    """The 429 a sign-in attempt was refused with; None when it was answered (right or wrong)."""
    try:
        call()
    except TooManyRequests as limited:
        return limited
    except OAuthError:
        return None
    return None


def test_a_flood_from_one_address_does_not_lock_the_owner_out_from_another(world):
    # GIVEN an attacker who guesses as fast as answers come, from one address
    limited = None
    for _ in range(SIGN_IN_LIMIT.requests_max):
        limited = refused(lambda: world.sign_in(password="guess guess guess", origin=ATTACKER))
        if limited:
            break

    # THEN the attacker is refused within the free failures, with a Retry-After to honour
    assert limited is not None
    assert 0 < int(limited.headers["Retry-After"]) <= sign_in_pair_delay_seconds_max
    # AND the owner, from their own address, signs in at once with the right password
    assert world.sign_in(origin=ORIGIN).refresh_token


def test_failures_from_one_address_are_spaced_exponentially_up_to_the_cap(world):
    # GIVEN a patient attacker who waits out every Retry-After for one hour from one address
    world.clock.now = HOUR_START_S
    admitted, waits = 0, []
    while world.clock.now < HOUR_START_S + sign_in_failures_window_seconds:
        limited = refused(lambda: world.sign_in(password="guess guess guess", origin=ATTACKER))
        if limited is None:
            admitted += 1
            continue
        waits.append(int(limited.headers["Retry-After"]))
        world.clock.now += waits[-1]

    # THEN the waits grow to the cap, and the hour holds the free failures, one per delay up to the
    # cap (1 + 2 + ... + 256 s) and then one per capped delay: about two dozen guesses, not hundreds
    assert [sign_in_pair_delay_seconds(f) for f in range(2, 14)] == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256,
                                                                     300, 300]
    assert max(waits) == sign_in_pair_delay_seconds_max
    assert admitted <= 25


def test_a_username_flooded_from_many_addresses_is_slowed_never_locked(world):
    # GIVEN wrong passwords for alice from many addresses, each staying under its pair's free failures
    for attempt in range(sign_in_username_failures_slow_after):
        origin = Caller("anonymous", "anonymous", source_ip=f"10.0.{attempt // 250}.{attempt % 250 + 1}")
        answered = refused(lambda origin=origin: world.sign_in(password="guess guess guess", origin=origin))
        assert answered is None

    # WHEN the flood goes on past the ceiling
    assert refused(lambda: world.sign_in(password="guess guess guess", origin=ATTACKER)) is None
    limited = refused(lambda: world.sign_in(origin=ORIGIN))

    # THEN alice's attempts are spaced, by seconds, and the owner gets in after the wait
    assert limited is not None
    assert 0 < int(limited.headers["Retry-After"]) <= sign_in_username_slowed_interval_seconds
    world.clock.now += int(limited.headers["Retry-After"])
    assert world.sign_in(origin=ORIGIN).refresh_token


def test_attempts_without_a_known_address_are_limited_as_one_source(world):
    nowhere = Caller("anonymous", "anonymous")
    for attempt in range(SIGN_IN_LIMIT.requests_max):
        refused(lambda attempt=attempt: world.sign_in(username=f"user{attempt}", origin=nowhere))

    assert refused(lambda: world.sign_in(origin=nowhere)) is not None
    assert world.sign_in(origin=ORIGIN).refresh_token


def test_sign_in_attempts_are_limited_per_client_ip_across_usernames(world):
    for attempt in range(SIGN_IN_LIMIT.requests_max):
        oauth_error(lambda attempt=attempt: world.sign_in(username=f"user{attempt}"))

    with pytest.raises(TooManyRequests):
        world.sign_in()

    # Another address is not affected.
    assert world.sign_in(origin=Caller("anonymous", "anonymous", source_ip="198.51.100.99")).refresh_token


# --- refresh ---------------------------------------------------------------------------------------


def test_refresh_rotates_the_token_and_keeps_the_customer_and_scopes(world):
    first = world.sign_in(scope="accounts:read accounts:write")
    world.clock.now += 60

    second = world.service.refresh(first.refresh_token, PUBLIC_CLIENT_ID, None, ORIGIN)

    assert second.refresh_token != first.refresh_token
    before, after = world.verify(first.access.access_token), world.verify(second.access.access_token)
    assert after.sub == before.sub and after.scopes == {"accounts:read", "accounts:write"}
    assert world.tokens.get_token(token_hash(first.refresh_token)).status is TokenStatus.ROTATED


def test_refresh_may_narrow_but_not_widen_the_scopes(world):
    first = world.sign_in(scope="accounts:read accounts:write")

    narrowed = world.service.refresh(first.refresh_token, PUBLIC_CLIENT_ID, "accounts:read", ORIGIN)
    widened = oauth_error(lambda: world.service.refresh(narrowed.refresh_token, PUBLIC_CLIENT_ID,
                                                        "accounts:read payments:write", ORIGIN))

    assert world.verify(narrowed.access.access_token).scopes == {"accounts:read"}
    assert widened.error == "invalid_scope"


def test_reusing_a_rotated_token_revokes_the_whole_family(world):
    # GIVEN a token that was rotated, and its legitimate successor
    first = world.sign_in()
    second = world.service.refresh(first.refresh_token, PUBLIC_CLIENT_ID, None, ORIGIN)

    # WHEN the rotated one is presented again (an attacker replays a stolen copy)
    reused = oauth_error(lambda: world.service.refresh(first.refresh_token, PUBLIC_CLIENT_ID, None, ORIGIN))

    # THEN it is refused, and so is the successor: the family is revoked
    assert reused.error == "invalid_grant"
    family_id = world.tokens.get_token(token_hash(first.refresh_token)).family_id
    assert world.tokens.get_family(family_id).status is FamilyStatus.REVOKED
    after = oauth_error(lambda: world.service.refresh(second.refresh_token, PUBLIC_CLIENT_ID, None, ORIGIN))
    assert after.error == "invalid_grant"
    assert "customer.token.reuse_detected" in [r.action for r in world.audit_records()]


def test_other_sign_ins_survive_a_revoked_family(world):
    phone = world.sign_in()
    laptop = world.sign_in()
    world.service.refresh(phone.refresh_token, PUBLIC_CLIENT_ID, None, ORIGIN)
    oauth_error(lambda: world.service.refresh(phone.refresh_token, PUBLIC_CLIENT_ID, None, ORIGIN))

    assert world.service.refresh(laptop.refresh_token, PUBLIC_CLIENT_ID, None, ORIGIN).refresh_token


def test_an_expired_refresh_token_is_refused_by_its_stored_time(world):
    first = world.sign_in()
    world.clock.now += refresh_token_lifetime_seconds

    expired = oauth_error(lambda: world.service.refresh(first.refresh_token, PUBLIC_CLIENT_ID, None, ORIGIN))

    assert expired.error == "invalid_grant"
    # An expiry is not a reuse: the family stays active.
    family_id = world.tokens.get_token(token_hash(first.refresh_token)).family_id
    assert world.tokens.get_family(family_id).status is FamilyStatus.ACTIVE


@pytest.mark.parametrize("presented", ["", "not-a-token", "x" * 500, "has spaces in it", "eyJ.a.b"])
def test_unknown_or_malformed_refresh_tokens_are_invalid_grants(world, presented):
    refused = oauth_error(lambda: world.service.refresh(presented, PUBLIC_CLIENT_ID, None, ORIGIN))

    assert refused.error == "invalid_grant"


def test_a_refresh_token_works_only_for_the_client_it_was_issued_to(world):
    tokens = world.sign_in(client_id="demo-app")

    refused = oauth_error(lambda: world.service.refresh(tokens.refresh_token, PUBLIC_CLIENT_ID, None, ORIGIN))

    assert refused.error == "invalid_grant"
    assert world.service.refresh(tokens.refresh_token, "demo-app", None, ORIGIN).refresh_token


# --- revocation ------------------------------------------------------------------------------------


def test_revoking_a_refresh_token_ends_its_sign_in(world):
    first = world.sign_in()
    second = world.service.refresh(first.refresh_token, PUBLIC_CLIENT_ID, None, ORIGIN)

    world.service.revoke(second.refresh_token, PUBLIC_CLIENT_ID, ORIGIN)

    refused = oauth_error(lambda: world.service.refresh(second.refresh_token, PUBLIC_CLIENT_ID, None, ORIGIN))
    assert refused.error == "invalid_grant"


def test_revoking_an_unknown_token_is_accepted_silently(world):
    world.service.revoke("never-issued-token", PUBLIC_CLIENT_ID, ORIGIN)

    assert all(f.status is FamilyStatus.ACTIVE for f in world.tokens.families.values())


def test_another_client_cannot_revoke_a_token(world):
    tokens = world.sign_in(client_id="demo-app")

    refused = oauth_error(lambda: world.service.revoke(tokens.refresh_token, PUBLIC_CLIENT_ID, ORIGIN))

    assert refused.error == "invalid_request"
    assert world.service.refresh(tokens.refresh_token, "demo-app", None, ORIGIN).refresh_token


# --- audit -----------------------------------------------------------------------------------------


def test_sign_up_and_sign_in_are_audited_by_customer_id_without_credentials(world):
    world.sign_in()
    oauth_error(lambda: world.sign_in(password="wrong wrong wrong"))
    oauth_error(lambda: world.sign_in(username="mallory"))

    records = world.audit_records()
    customer_id = world.customers.credentials_for("alice").customer_id
    # Chains are sharded by actor: one actor's records are in order, different actors' need not be.
    assert [(r.action, r.outcome) for r in records if r.actor == customer_id] == [
        ("customer.sign_up", "succeeded"), ("customer.sign_in", "succeeded"), ("customer.sign_in", "denied")]
    assert [(r.action, r.outcome) for r in records if r.actor == "anonymous"] == [
        ("customer.sign_in", "denied")]
    text = repr(records)
    assert "alice" not in text and "mallory" not in text and PASSWORD not in text
    assert {r.source_ip for r in records} == {"198.51.100.7"}
