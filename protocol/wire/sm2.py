"""SM2 signatures (GB/T 32918.2) over the recommended curve sm2p256v1 (GB/T 32918.5), with SM3.

Teleinfo's id-pointer SDK answers a Handle challenge with an SM2 signature, so the node has to
verify one. ``cryptography`` has SM3 but no SM2, and the Python SM2 libraries either cannot take
a signer ID other than the default, or are pure Python several times slower than this, or bring
a second OpenSSL. The arithmetic is small: affine inputs, Jacobian coordinates with the a = -3
doubling, and both scalar multiplications of a verification done in one pass (Shamir's trick).
One verification costs about a millisecond of CPU.

``verify`` is what the node runs; ``sign`` exists so that tests and tools can make answers.
The curve is a parameter so the standard's own example (on its test curve) can check the code.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes

from protocol.errors import InvalidValue
from protocol.wire import der

DEFAULT_USER_ID = b"1234567812345678"  # GB/T 35276's default signer ID, when a signer names none
MAX_USER_ID = 8191  # ENTL is the ID's length in bits in two bytes


@dataclass(frozen=True, slots=True)
class Curve:
    """A short Weierstrass curve y² = x³ + ax + b over F_p, with a base point of prime order n."""

    p: int
    a: int
    b: int
    n: int
    gx: int
    gy: int

    @property
    def size(self) -> int:
        return (self.p.bit_length() + 7) // 8

    def contains(self, x: int, y: int) -> bool:
        p = self.p
        return 0 <= x < p and 0 <= y < p and (y * y - x * x * x - self.a * x - self.b) % p == 0


SM2P256V1 = Curve(
    p=0xFFFFFFFE_FFFFFFFF_FFFFFFFF_FFFFFFFF_FFFFFFFF_00000000_FFFFFFFF_FFFFFFFF,
    a=0xFFFFFFFE_FFFFFFFF_FFFFFFFF_FFFFFFFF_FFFFFFFF_00000000_FFFFFFFF_FFFFFFFC,
    b=0x28E9FA9E_9D9F5E34_4D5A9E4B_CF6509A7_F39789F5_15AB8F92_DDBCBD41_4D940E93,
    n=0xFFFFFFFE_FFFFFFFF_FFFFFFFF_FFFFFFFF_7203DF6B_21C6052B_53BBF409_39D54123,
    gx=0x32C4AE2C_1F198119_5F990446_6A39C994_8FE30BBF_F2660BE1_715A4589_334C74C7,
    gy=0xBC3736A2_F4F6779C_59BDCEE3_6B692153_D0A9877C_C62A4740_02DF32E5_2139F0A0,
)


@dataclass(frozen=True, slots=True)
class SM2PublicKey:
    """A point of ``curve`` other than infinity; build it with ``public_key`` to have it checked."""

    x: int
    y: int
    curve: Curve = field(default=SM2P256V1, repr=False)

    def point_bytes(self) -> bytes:
        """The uncompressed SEC 1 point: 04, x, y."""
        size = self.curve.size
        return b"\x04" + self.x.to_bytes(size, "big") + self.y.to_bytes(size, "big")


@dataclass(frozen=True, slots=True)
class SM2PrivateKey:
    d: int = field(repr=False)
    curve: Curve = field(default=SM2P256V1, repr=False)

    def public_key(self) -> SM2PublicKey:
        x, y = _affine(_multiply(self.curve, self.d, (self.curve.gx, self.curve.gy)), self.curve.p)
        return SM2PublicKey(x, y, self.curve)


def generate_private_key(curve: Curve = SM2P256V1) -> SM2PrivateKey:
    return SM2PrivateKey(1 + secrets.randbelow(curve.n - 2), curve)


def public_key(x: int, y: int, curve: Curve = SM2P256V1) -> SM2PublicKey:
    """The key at (x, y); InvalidValue unless that is a point of the curve (the cofactor is 1,
    so any such point is in the group of order n)."""
    if not curve.contains(x, y):
        raise InvalidValue("the SM2 public key is not a point of the SM2 curve")
    return SM2PublicKey(x, y, curve)


def decode_point(data: bytes, curve: Curve = SM2P256V1) -> SM2PublicKey:
    """A SEC 1 point, uncompressed (04) or compressed (02, 03), checked to be on the curve."""
    size = curve.size
    if len(data) == 1 + 2 * size and data[0] == 4:
        return public_key(int.from_bytes(data[1 : 1 + size], "big"), int.from_bytes(data[1 + size :], "big"), curve)
    if len(data) == 1 + size and data[0] in (2, 3):
        x = int.from_bytes(data[1:], "big")
        y = _root(curve, x)
        if y is None:
            raise InvalidValue("the SM2 public key is not a point of the SM2 curve")
        return public_key(x, y if y & 1 == data[0] & 1 else curve.p - y, curve)
    raise InvalidValue(f"the SM2 public key is {len(data)} bytes, not a {1 + 2 * size}-byte point starting 04")


def _root(curve: Curve, x: int) -> int | None:
    p = curve.p
    if p % 4 != 3 or not 0 <= x < p:
        return None
    square = (x * x * x + curve.a * x + curve.b) % p
    y = pow(square, (p + 1) // 4, p)
    return y if y * y % p == square else None


# Hashing ---------------------------------------------------------------------------------


SM3 = hashes.SM3()


def digest_of(algorithm: hashes.HashAlgorithm, *parts: bytes) -> bytes:
    digest = hashes.Hash(algorithm)
    for part in parts:
        digest.update(part)
    return digest.finalize()


def sm3(*parts: bytes) -> bytes:
    return digest_of(SM3, *parts)


def z_value(key: SM2PublicKey, user_id: bytes, algorithm: hashes.HashAlgorithm = SM3) -> bytes:
    """Z_A = H(ENTL || ID || a || b || xG || yG || xA || yA): binds the signer's ID and key.

    H is SM3 in the standard; BouncyCastle's ``SHA256withSM2`` uses SHA-256 here as for e."""
    if len(user_id) > MAX_USER_ID:
        raise InvalidValue(f"an SM2 signer ID is at most {MAX_USER_ID} bytes, not {len(user_id)}")
    c, size = key.curve, key.curve.size
    numbers = (c.a, c.b, c.gx, c.gy, key.x, key.y)
    entl = (len(user_id) * 8).to_bytes(2, "big")
    return digest_of(algorithm, entl, user_id, *(v.to_bytes(size, "big") for v in numbers))


def message_digest(key: SM2PublicKey, user_id: bytes, message: bytes, algorithm: hashes.HashAlgorithm = SM3) -> int:
    """e = H(Z_A || M) as a number."""
    return int.from_bytes(digest_of(algorithm, z_value(key, user_id, algorithm), message), "big")


# Signatures ------------------------------------------------------------------------------


def verify(
    key: SM2PublicKey,
    signature: tuple[int, int],
    message: bytes,
    user_id: bytes = DEFAULT_USER_ID,
    algorithm: hashes.HashAlgorithm = SM3,
) -> bool:
    """True when (r, s) is ``key``'s SM2 signature of ``message`` by the signer ``user_id``
    (hashed with ``algorithm``: SM3, or SHA-256 as BouncyCastle's ``SHA256withSM2``)."""
    r, s = signature
    c = key.curve
    n = c.n
    if not (0 < r < n and 0 < s < n):
        return False
    t = (r + s) % n
    if t == 0:
        return False
    e = message_digest(key, user_id, message, algorithm)
    point = _shamir(c, s, (c.gx, c.gy), t, (key.x, key.y))
    if point[2] == 0:
        return False
    x1, _ = _affine(point, c.p)
    return (e + x1) % n == r


def sign(
    key: SM2PrivateKey,
    message: bytes,
    user_id: bytes = DEFAULT_USER_ID,
    *,
    algorithm: hashes.HashAlgorithm = SM3,
    k: int | None = None,
) -> tuple[int, int]:
    """An SM2 signature (r, s) of ``message``; ``k`` only for the standard's known-answer tests."""
    c = key.curve
    n = c.n
    e = message_digest(key.public_key(), user_id, message, algorithm)
    while True:
        nonce = k if k is not None else 1 + secrets.randbelow(n - 1)
        x1, _ = _affine(_multiply(c, nonce, (c.gx, c.gy)), c.p)
        r = (e + x1) % n
        if r == 0 or r + nonce == n:
            if k is not None:
                raise ValueError("this k gives no signature")
            continue
        s = pow(1 + key.d, -1, n) * (nonce - r * key.d) % n
        if s != 0:
            return r, s
        if k is not None:
            raise ValueError("this k gives no signature")


def decode_signature(data: bytes, curve: Curve = SM2P256V1) -> tuple[int, int]:
    """(r, s) from DER ``SEQUENCE { INTEGER r, INTEGER s }`` (what BouncyCastle and so the
    SDKs write) or from the plain r || s of twice the curve's size (GM/T 0009's other form,
    what hardware and GmSSL's raw API give); InvalidValue when it is neither."""
    size = curve.size
    try:
        r = der.Reader(data, "the SM2 signature")
        body = r.sequence()
        r.done()
        pair = body.integer(), body.integer()
        body.done()
        return pair
    except InvalidValue:
        if len(data) != 2 * size:
            raise
    return int.from_bytes(data[:size], "big"), int.from_bytes(data[size:], "big")


def encode_signature(signature: tuple[int, int]) -> bytes:
    """DER ``SEQUENCE { INTEGER r, INTEGER s }``, as BouncyCastle's SM2Signer writes."""
    return der.sequence(der.integer(signature[0]), der.integer(signature[1]))


# Point arithmetic: Jacobian (X, Y, Z) stands for (X/Z², Y/Z³); Z = 0 is infinity ---------------

Jacobian = tuple[int, int, int]
INFINITY: Jacobian = (1, 1, 0)


def _affine(point: Jacobian, p: int) -> tuple[int, int]:
    x, y, z = point
    zi = pow(z, -1, p)
    zi2 = zi * zi % p
    return x * zi2 % p, y * zi2 * zi % p


def _double(c: Curve, point: Jacobian) -> Jacobian:
    x, y, z = point
    if z == 0 or y == 0:
        return INFINITY
    p = c.p
    if c.a == p - 3:  # dbl-2001-b: three multiplications fewer than the general formula
        delta = z * z % p
        gamma = y * y % p
        beta = x * gamma % p
        alpha = 3 * (x - delta) * (x + delta) % p
    else:
        gamma = y * y % p
        beta = x * gamma % p
        delta = z * z % p
        alpha = (3 * x * x + c.a * delta * delta) % p
    x3 = (alpha * alpha - 8 * beta) % p
    z3 = ((y + z) * (y + z) - gamma - delta) % p
    y3 = (alpha * (4 * beta - x3) - 8 * gamma * gamma) % p
    return x3, y3, z3


def _add_affine(c: Curve, point: Jacobian, other: tuple[int, int]) -> Jacobian:
    """``point`` + the affine point ``other`` (madd-2007-bl, with the doubling case)."""
    x1, y1, z1 = point
    x2, y2 = other
    if z1 == 0:
        return x2, y2, 1
    p = c.p
    z1z1 = z1 * z1 % p
    h = (x2 * z1z1 - x1) % p
    rr = (y2 * z1 * z1z1 - y1) % p
    if h == 0:
        return _double(c, point) if rr == 0 else INFINITY
    hh = h * h % p
    hhh = h * hh % p
    v = x1 * hh % p
    x3 = (rr * rr - hhh - 2 * v) % p
    y3 = (rr * (v - x3) - y1 * hhh) % p
    return x3, y3, z1 * h % p


def _multiply(c: Curve, k: int, point: tuple[int, int]) -> Jacobian:
    acc = INFINITY
    for bit in bin(k)[2:]:
        acc = _double(c, acc)
        if bit == "1":
            acc = _add_affine(c, acc, point)
    return acc


def _shamir(c: Curve, k1: int, p1: tuple[int, int], k2: int, p2: tuple[int, int]) -> Jacobian:
    """k1·P1 + k2·P2 in one pass of doublings, adding P1, P2 or P1+P2 at each bit."""
    both_j = _add_affine(c, (p1[0], p1[1], 1), p2)
    table: dict[tuple[bool, bool], tuple[int, int] | None] = {
        (True, False): p1,
        (False, True): p2,
        (True, True): None if both_j[2] == 0 else _affine(both_j, c.p),
    }
    acc = INFINITY
    for i in range(max(k1.bit_length(), k2.bit_length()) - 1, -1, -1):
        acc = _double(c, acc)
        bits = (bool(k1 >> i & 1), bool(k2 >> i & 1))
        if bits != (False, False):
            addend = table[bits]
            if addend is not None:  # P1 + P2 is infinity: adding it changes nothing
                acc = _add_affine(c, acc, addend)
    return acc
