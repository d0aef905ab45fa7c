"""SNMS login tokens and the dated login password: pure, with the clock injected."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import stat
from pathlib import Path

import pytest

from registry.days import CHINA
from registry.identity.auth import Identity
from registry.identity.tokens import (
    KEY_BYTES,
    LIFETIME,
    MAX_TOKEN_CHARS,
    TokenKeyError,
    TokenRefused,
    TokenSigner,
    UsedPasswords,
    dated_matches,
    dated_password,
    ensure_key,
    load_key,
)

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
WHO = Identity(300, "0.NA/88.118.8")
SECKEY = b"stored-seckey-hash"
WRITTEN = 1_700_000_000  # when the HS_SECKEY was written: its generation
T0 = 1_800_000_000.0

# The dated login's example in SNMS's documentation (identity-auth.md, "密文传输").
DOC_PASSWORD = "58e2c92c46485fdbc35fdcd0814d6c0f000cad5aa156848ca5edaf29406b7661"
DOC_DAY = dt.date(2019, 8, 15)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def sha256hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def signer(clock: Clock) -> TokenSigner:
    return TokenSigner(KEY, clock=clock)


# Issue and verify --------------------------------------------------------------------------


def test_round_trip_gives_back_the_identity_expiry_and_fingerprint(signer: TokenSigner) -> None:
    claims = signer.verify(signer.issue(WHO, SECKEY, WRITTEN))
    assert claims.identity == WHO
    assert claims.expires == int(T0) + LIFETIME
    assert claims.fingerprint == signer.fingerprint(SECKEY, WRITTEN)


def test_a_token_is_a_compact_hs256_jwt(signer: TokenSigner) -> None:
    header, payload, signature = signer.issue(WHO, SECKEY, WRITTEN).split(".")
    assert json.loads(_unb64(header)) == {"alg": "HS256", "typ": "JWT"}
    claims = json.loads(_unb64(payload))
    assert claims["sub"] == "300:0.NA/88.118.8"
    assert claims["exp"] - claims["iat"] == LIFETIME
    assert len(_unb64(signature)) == 32
    assert "=" not in signature


def test_identity_is_normalised_as_the_node_reads_it(signer: TokenSigner) -> None:
    token = signer.issue(Identity(300, "0.na/88.118.8"), SECKEY, WRITTEN)
    assert signer.verify(token).identity == WHO
    assert signer.verify(token, case_sensitive=True).identity == Identity(300, "0.NA/88.118.8")


def test_a_token_is_good_until_its_last_second_and_void_from_then(clock: Clock, signer: TokenSigner) -> None:
    token = signer.issue(WHO, SECKEY, WRITTEN)
    clock.now = T0 + LIFETIME - 1
    assert signer.verify(token).identity == WHO
    clock.now = T0 + LIFETIME
    with pytest.raises(TokenRefused, match="过期"):
        signer.verify(token)


def test_another_node_with_the_same_key_accepts_the_token(clock: Clock, signer: TokenSigner) -> None:
    token = signer.issue(WHO, SECKEY, WRITTEN)
    assert TokenSigner(KEY, clock=clock).verify(token).identity == WHO


def test_a_token_signed_with_another_key_is_refused(clock: Clock, signer: TokenSigner) -> None:
    token = TokenSigner(OTHER_KEY, clock=clock).issue(WHO, SECKEY, WRITTEN)
    with pytest.raises(TokenRefused, match="signature"):
        signer.verify(token)


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError, match=str(KEY_BYTES)):
        TokenSigner(b"k" * (KEY_BYTES - 1))


# Tampering ---------------------------------------------------------------------------------


def _claims_of(token: str) -> dict[str, object]:
    result: dict[str, object] = json.loads(_unb64(token.split(".")[1]))
    return result


def _with_claims(token: str, **changes: object) -> str:
    header, _, signature = token.split(".")
    claims = _claims_of(token) | changes
    return f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"


def _flip(text: str, at: int) -> str:
    replacement = "A" if text[at] != "A" else "B"
    return text[:at] + replacement + text[at + 1 :]


@pytest.mark.parametrize(
    "change",
    [
        {"sub": "300:0.NA/88.118.9"},
        {"exp": int(T0) + 10 * LIFETIME},
        {"sfp": "AAAAAAAAAAAAAAAA"},
    ],
)
def test_a_changed_claim_is_refused(signer: TokenSigner, change: dict[str, object]) -> None:
    forged = _with_claims(signer.issue(WHO, SECKEY, WRITTEN), **change)
    with pytest.raises(TokenRefused, match="signature"):
        signer.verify(forged)


def test_a_changed_header_is_refused_even_when_re_signed(signer: TokenSigner) -> None:
    _, payload, signature = signer.issue(WHO, SECKEY, WRITTEN).split(".")
    for header in ({"alg": "none", "typ": "JWT"}, {"alg": "HS512", "typ": "JWT"}, {"typ": "JWT", "alg": "HS256"}):
        with pytest.raises(TokenRefused):
            signer.verify(f"{_b64(json.dumps(header).encode())}.{payload}.{signature}")
        with pytest.raises(TokenRefused):
            signer.verify(f"{_b64(json.dumps(header).encode())}.{payload}.")


@pytest.mark.parametrize("at", [0, 10, 20, 42])
def test_a_changed_signature_is_refused(signer: TokenSigner, at: int) -> None:
    header, payload, signature = signer.issue(WHO, SECKEY, WRITTEN).split(".")
    with pytest.raises(TokenRefused):
        signer.verify(f"{header}.{payload}.{_flip(signature, at)}")


def test_only_the_canonical_spelling_of_the_signature_is_accepted(signer: TokenSigner) -> None:
    """A JWT's base64url has no padding, and the signature's unused low bits are zero: other
    spellings of the same bytes are other tokens, not this one."""
    token = signer.issue(WHO, SECKEY, WRITTEN)
    header, payload, signature = token.split(".")
    variants = [token + "=", token + "==", token + ".", token + "!", token + " "]
    last = signature[-1]
    variants += [f"{header}.{payload}.{signature[:-1]}{c}" for c in "MNOPQRSTwxyz" if c != last]
    assert all(_unb64(v.split(".")[2].rstrip("=")) == _unb64(signature) for v in variants[:2])
    for variant in variants:
        with pytest.raises(TokenRefused):
            signer.verify(variant)


@pytest.mark.parametrize("keep", [0, 1, 20, 37, 38, -1, -10])
def test_a_truncated_token_is_refused(signer: TokenSigner, keep: int) -> None:
    token = signer.issue(WHO, SECKEY, WRITTEN)
    with pytest.raises(TokenRefused):
        signer.verify(token[:keep])


@pytest.mark.parametrize(
    "token",
    ["", ".", "..", "a.b.c", "eyJ.eyJ.x", "not a token", "Bearer x.y.z", "\x00\x00", "a.b.c.d.e"],
)
def test_garbage_is_refused(signer: TokenSigner, token: str) -> None:
    with pytest.raises(TokenRefused):
        signer.verify(token)


def test_non_ascii_and_over_long_tokens_are_refused_before_any_work(signer: TokenSigner) -> None:
    token = signer.issue(WHO, SECKEY, WRITTEN)
    with pytest.raises(TokenRefused):
        signer.verify(token[:-1] + "é")
    with pytest.raises(TokenRefused):
        signer.verify(token + "." + "A" * (MAX_TOKEN_CHARS - len(token)))
    with pytest.raises(TokenRefused):
        signer.verify("A" * (MAX_TOKEN_CHARS + 1))


def test_a_signed_token_with_malformed_claims_is_refused(signer: TokenSigner) -> None:
    """The key's holder signed them, but the claims are not the node's: still no crash."""
    header = _b64(b'{"alg":"HS256","typ":"JWT"}')
    for claims in (
        b"[]",
        b"{}",
        b'{"sub":"300:0.NA/x","exp":"1","sfp":"a"}',
        b'{"sub":"x","exp":9e9,"sfp":"a"}',
        b"\xff",
    ):
        signed = f"{header}.{_b64(claims)}"
        signature = _b64(hmac.digest(KEY, signed.encode(), "sha256"))
        with pytest.raises(TokenRefused, match="malformed"):
            signer.verify(f"{signed}.{signature}")


# Fingerprints ------------------------------------------------------------------------------


def test_the_fingerprint_is_stable_and_tells_secrets_apart(clock: Clock) -> None:
    one, two = TokenSigner(KEY, clock=clock), TokenSigner(KEY)
    assert one.fingerprint(SECKEY, WRITTEN) == one.fingerprint(SECKEY, WRITTEN) == two.fingerprint(SECKEY, WRITTEN)
    others = {one.fingerprint(SECKEY + bytes([n]), WRITTEN) for n in range(50)}
    assert len(others | {one.fingerprint(SECKEY, WRITTEN)}) == 51
    assert one.fingerprint(SECKEY, WRITTEN) != TokenSigner(OTHER_KEY).fingerprint(SECKEY, WRITTEN)


def test_the_fingerprint_tells_generations_of_one_secret_apart(signer: TokenSigner) -> None:
    """The old secret set back later is stored alike but written later: old tokens stay void."""
    assert signer.fingerprint(SECKEY, WRITTEN) != signer.fingerprint(SECKEY, WRITTEN + 1)
    token = signer.issue(WHO, SECKEY, WRITTEN)
    assert signer.verify(token).fingerprint != signer.fingerprint(SECKEY, WRITTEN + 3600)


# Dated passwords used once ------------------------------------------------------------------


def test_a_dated_password_logs_in_once_while_it_could_log_in_again(clock: Clock) -> None:
    used = UsedPasswords(clock=clock)
    password = "ab" * 32
    assert used.take("300:0.NA/88.118.8", password)
    assert not used.take("300:0.NA/88.118.8", password.upper())  # the same hex, spelt otherwise
    assert used.take("300:0.NA/88.118.9", password)  # another identity's
    assert used.take("300:0.NA/88.118.8", "cd" * 32)  # another day's
    clock.now += UsedPasswords.KEPT - 1
    assert not used.take("300:0.NA/88.118.8", password)
    clock.now += 2  # past three days and an hour: no longer accepted as a password anyway
    assert used.take("300:0.NA/88.118.8", password)


def test_used_passwords_are_shared_with_forked_workers(clock: Clock) -> None:
    import os

    used = UsedPasswords(clock=clock)
    pid = os.fork()
    if pid == 0:  # a worker
        os._exit(0 if used.take("300:0.NA/88.118.8", "ab" * 32) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert not used.take("300:0.NA/88.118.8", "ab" * 32)


def test_the_fingerprint_gives_nothing_of_the_secret_away(signer: TokenSigner) -> None:
    fingerprint = signer.fingerprint(SECKEY, WRITTEN)
    assert SECKEY.decode() not in fingerprint
    assert fingerprint not in (_b64(hashlib.sha256(SECKEY).digest()), _b64(hashlib.sha256(SECKEY).digest()[:12]))


# The dated login (/identity/token/v1) -------------------------------------------------------


def test_the_documented_example_is_the_password_123456_not_12345() -> None:
    """The doc's note says sha256(sha256('12345') + '2019-08-15'); its example value is for '123456'."""
    assert dated_password(sha256hex("123456"), DOC_DAY) == DOC_PASSWORD
    assert dated_password(sha256hex("12345"), DOC_DAY) != DOC_PASSWORD


def test_dated_password_is_sha256_of_the_hex_digest_and_the_day() -> None:
    digest = sha256hex("enterprise-secret")
    assert dated_password(digest, dt.date(2026, 1, 2)) == sha256hex(digest + "2026-01-02")


def _at_china(year: int, month: int, day: int, hour: int) -> float:
    return dt.datetime(year, month, day, hour, tzinfo=CHINA).timestamp()


def test_dated_matches_the_documented_example_on_its_day() -> None:
    assert dated_matches(sha256hex("123456"), DOC_PASSWORD, _at_china(2019, 8, 15, 12))
    assert dated_matches(sha256hex("123456"), DOC_PASSWORD.upper(), _at_china(2019, 8, 15, 12))
    assert not dated_matches(sha256hex("12345"), DOC_PASSWORD, _at_china(2019, 8, 15, 12))


def test_dated_matches_yesterday_today_and_tomorrow_in_china_only() -> None:
    """04:00 on the 16th in China is still the 15th in UTC: the window is China's 15th to 17th."""
    digest = sha256hex("enterprise-secret")
    now = _at_china(2019, 8, 16, 4)
    assert dt.datetime.fromtimestamp(now, dt.UTC).date() == dt.date(2019, 8, 15)
    accepted = {d for d in range(10, 22) if dated_matches(digest, dated_password(digest, dt.date(2019, 8, d)), now)}
    assert accepted == {15, 16, 17}


def test_dated_matches_across_china_midnight() -> None:
    digest = sha256hex("s")
    before, after = _at_china(2019, 12, 31, 23) + 3599, _at_china(2020, 1, 1, 0)
    new_year = dated_password(digest, dt.date(2020, 1, 2))
    assert not dated_matches(digest, new_year, before)
    assert dated_matches(digest, new_year, after)


def test_dated_matches_refuses_another_secret_and_garbage() -> None:
    digest, now = sha256hex("right"), _at_china(2026, 3, 1, 9)
    today = dt.date(2026, 3, 1)
    assert not dated_matches(digest, dated_password(sha256hex("wrong"), today), now)
    for sent in ("", "0" * 64, dated_password(digest, today)[:-1], sha256hex("right")):
        assert not dated_matches(digest, sent, now)


# The key file ------------------------------------------------------------------------------


def test_ensure_key_makes_a_private_random_key_once(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "snms-token-key"
    assert ensure_key(path) == path
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = load_key(path)
    assert len(key) == KEY_BYTES
    ensure_key(path)
    assert load_key(path) == key
    assert load_key(ensure_key(tmp_path / "another")) != key
    assert not list(tmp_path.rglob("*.tmp"))


def test_load_key_reads_a_key_an_operator_made(tmp_path: Path) -> None:
    path = tmp_path / "key"
    path.write_text(base64.b64encode(KEY).decode() + "\n")
    assert load_key(path) == KEY
    TokenSigner(load_key(path)).issue(WHO, SECKEY, WRITTEN)


@pytest.mark.parametrize(
    "content",
    [b"", b"\n", b"not base64 at all!", base64.b64encode(b"k" * (KEY_BYTES - 1)), b"\xff\xfe" * 30, b"abc"],
)
def test_a_bad_key_file_names_the_setting(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "key"
    path.write_bytes(content)
    with pytest.raises(TokenKeyError, match="token_key_file") as caught:
        load_key(path)
    assert str(path) in str(caught.value)


def test_a_missing_key_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(TokenKeyError, match=r"token_key_file.*cannot read"):
        load_key(tmp_path / "absent")


def test_a_key_file_that_cannot_be_made_names_the_setting(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a directory")
    with pytest.raises(TokenKeyError, match=r"token_key_file.*cannot write"):
        ensure_key(blocker / "key")
    assert not (tmp_path / "file.tmp").exists()
