"""handle.net's key encodings: HS_PUBKEY values and private key files, as CNRI's tools write them.

An HS_PUBKEY value is what ``net.handle.hdllib.Util.getBytesFromPublicKey`` writes: a
length-prefixed name (``DSA_PUB_KEY`` or ``RSA_PUB_KEY``), two reserved octets, then the
numbers as length-prefixed big-endian two's-complement integers (Java's
``BigInteger.toByteArray``): q, p, g, y for DSA; e, n for RSA. A private key file is
``Util.encrypt`` over ``getBytesFromPrivateKey``: a 4-byte scheme code (1 none, 0/2 DES
under MD5 of the passphrase, 3/4 DESede/AES-128-CBC under PBKDF2-HMAC-SHA1 of it), then the
``DSA_PRIV_KEY`` (x, p, q, g) or ``RSA_PRIVCRT_KEY`` (n, e, d, p, q, dp, dq, qinv) bytes.

We read all of them so that keys made by ``hdl-keygen`` work here, and write the unencrypted
and AES forms so that tests can make keys CNRI's tools accept. Anything malformed raises
``InvalidValue`` naming what is wrong; a key file that does not decrypt, ``AuthenticationFailed``.

Teleinfo's id-pointer SDK adds SM2 keys, in two forms (its ``Util.getBytesFromPublicKey`` and
``ValueHelper.newIdisPublicKeyValue``): ``SM2_PUB_KEY``, two reserved octets and the key's X.509
PEM text as one length-prefixed field; or the PEM text alone as the whole value. Its reader
(``Util.getPublicKeyFromBytes``) and its own tests put DER SubjectPublicKeyInfo in that field, so
that is read too, and so is a bare SEC 1 point. The PEM text alone may also hold an RSA or DSA key
(CAICT's ID-SDK stores whatever key file it is given).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
import warnings

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import padding, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.utils import CryptographyDeprecationWarning

from protocol.errors import AuthenticationFailed, InvalidValue
from protocol.wire import der
from protocol.wire.base import Reader, WholeErrors
from protocol.wire.sm2 import SM2PublicKey, decode_point

try:  # cryptography 43 moved the legacy ciphers
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # pragma: no cover
    TripleDES = algorithms.TripleDES  # type: ignore[misc,unused-ignore]

# cryptography 51 deprecates DSA and warns on stderr at each first use of its names. CNRI's
# tools make DSA keys by default, so the Handle protocol keeps them: the names are taken here,
# once, with that warning silenced, and the rest of the code uses these.
with warnings.catch_warnings():
    warnings.simplefilter("ignore", CryptographyDeprecationWarning)
    from cryptography.hazmat.primitives.asymmetric.dsa import (
        DSAParameterNumbers as DSAParameterNumbers,
    )
    from cryptography.hazmat.primitives.asymmetric.dsa import (
        DSAPrivateKey as DSAPrivateKey,
    )
    from cryptography.hazmat.primitives.asymmetric.dsa import (
        DSAPrivateNumbers as DSAPrivateNumbers,
    )
    from cryptography.hazmat.primitives.asymmetric.dsa import (
        DSAPublicKey as DSAPublicKey,
    )
    from cryptography.hazmat.primitives.asymmetric.dsa import (
        DSAPublicNumbers as DSAPublicNumbers,
    )
    from cryptography.hazmat.primitives.asymmetric.dsa import generate_private_key as _generate_dsa

PublicKey = DSAPublicKey | rsa.RSAPublicKey | SM2PublicKey
PrivateKey = DSAPrivateKey | rsa.RSAPrivateKey  # what handle.net's key files hold; SM2's live in PKCS#8


def generate_dsa_key(bits: int) -> DSAPrivateKey:
    """A new DSA key (CNRI's ``hdl-keygen`` default), without cryptography's deprecation warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        return _generate_dsa(bits)


DSA_PUBLIC, RSA_PUBLIC, SM2_PUBLIC = b"DSA_PUB_KEY", b"RSA_PUB_KEY", b"SM2_PUB_KEY"
DSA_PRIVATE, RSA_PRIVATE, RSA_CRT_PRIVATE = b"DSA_PRIV_KEY", b"RSA_PRIV_KEY", b"RSA_PRIVCRT_KEY"
ENCRYPT_DES_ECB, ENCRYPT_NONE, ENCRYPT_DES_CBC, ENCRYPT_PBKDF2_DESEDE, ENCRYPT_PBKDF2_AES = 0, 1, 2, 3, 4

MAX_KEY_BITS = 16384  # a larger number is no key anyone made, and would be slow to verify with
MAX_FILE_ITERATIONS = 1_000_000  # CNRI writes 10,000; a file is the user's own, but bound the work
FILE_ITERATIONS = 10_000


def reader(data: bytes, subject: str) -> Reader:
    """The bounded reader over ``subject`` (a key, a credential, an answer) in handle.net's
    encoding: what is wrong is InvalidValue naming it and, when cut short, where."""
    return Reader(
        data,
        errors=WholeErrors(
            truncated=lambda r: InvalidValue(f"{subject} is truncated at byte {r.pos}"),
            not_utf8=lambda r: InvalidValue(f"{subject} holds a string that is not UTF-8"),
            trailing=lambda r: InvalidValue(f"{subject} has {r.end - r.pos} bytes after its end"),
        ),
    )


def number(r: Reader, subject: str) -> int:
    """A length-prefixed big-endian number of ``subject``, at most MAX_KEY_BITS long."""
    raw = r.blob("number")
    if len(raw) * 8 > MAX_KEY_BITS + 8:
        raise InvalidValue(f"{subject} holds a number over {MAX_KEY_BITS} bits")
    return int.from_bytes(raw, "big")  # Java reads them unsigned: new BigInteger(1, bytes)


def java_bytes(n: int) -> bytes:
    """``BigInteger.toByteArray`` of a non-negative n: minimal big-endian two's complement."""
    return n.to_bytes(n.bit_length() // 8 + 1, "big")


def pack(*fields: bytes) -> bytes:
    return b"".join(struct.pack(">i", len(f)) + f for f in fields)


# Public keys ------------------------------------------------------------------------------

OID_EC_PUBLIC_KEY = "1.2.840.10045.2.1"
OID_SM2 = "1.2.156.10197.1.301"  # sm2p256v1, and SM2 as an algorithm
PEM_BEGIN, PEM_END = b"-----BEGIN PUBLIC KEY-----", b"-----END PUBLIC KEY-----"
_SM2_OID_DER = der.oid(OID_SM2)


def encode_public_key(key: PublicKey) -> bytes:
    """The HS_PUBKEY value data for ``key`` (``Util.getBytesFromPublicKey``, id-pointer's for SM2)."""
    if isinstance(key, SM2PublicKey):
        return pack(SM2_PUBLIC) + b"\0\0" + pack(sm2_pem(key))
    if isinstance(key, DSAPublicKey):
        n = key.public_numbers()
        p, q, g = n.parameter_numbers.p, n.parameter_numbers.q, n.parameter_numbers.g
        return pack(DSA_PUBLIC) + b"\0\0" + pack(*map(java_bytes, (q, p, g, n.y)))
    n2 = key.public_numbers()
    # Byte for byte what CNRI writes, four zero bytes of its oversized buffer included.
    return pack(RSA_PUBLIC) + b"\0\0" + pack(java_bytes(n2.e), java_bytes(n2.n)) + bytes(4)


def sm2_spki(key: SM2PublicKey) -> bytes:
    """DER SubjectPublicKeyInfo as BouncyCastle encodes an SM2 key: id-ecPublicKey on sm2p256v1."""
    algorithm = der.sequence(der.oid(OID_EC_PUBLIC_KEY), der.oid(OID_SM2))
    return der.sequence(algorithm, der.bit_string(key.point_bytes()))


def sm2_pem(key: SM2PublicKey) -> bytes:
    """The PEM text id-pointer writes (``KeyConverter.toX509Pem``): MIME base64, CRLF lines."""
    body = base64.encodebytes(sm2_spki(key)).replace(b"\n", b"").decode()
    lines = [body[i : i + 76] for i in range(0, len(body), 76)]
    return "\r\n".join([PEM_BEGIN.decode(), *lines, PEM_END.decode(), ""]).encode()


def decode_public_key(data: bytes) -> PublicKey:
    """The DSA, RSA or SM2 key in an HS_PUBKEY value (``Util.getPublicKeyFromBytes``).

    Bytes after the key are ignored, as CNRI does: its RSA encoder sizes the buffer for one
    length field too many, so every RSA_PUB_KEY it wrote ends in four zero bytes.
    """
    subject = "the HS_PUBKEY value"
    if _looks_pem(data):
        return _from_spki(_pem_der(data, subject), subject)
    r = reader(data, subject)
    kind = r.blob("key type")
    r.take(2, "flags")  # flags, reserved
    try:
        if kind == DSA_PUBLIC:
            q, p, g, y = (number(r, subject) for _ in range(4))
            return DSAPublicNumbers(y, DSAParameterNumbers(p, q, g)).public_key()
        if kind == RSA_PUBLIC:
            e, n = number(r, subject), number(r, subject)
            return rsa.RSAPublicNumbers(e, n).public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidValue(f"the HS_PUBKEY value is not a valid {kind.decode('latin-1')}: {exc}") from None
    if kind == SM2_PUBLIC:
        return _sm2_field(r.blob("SM2 key"))
    raise InvalidValue(
        f"the HS_PUBKEY value has key type {kind[:40]!r}; this node reads DSA_PUB_KEY, RSA_PUB_KEY, "
        "SM2_PUB_KEY and PEM text"
    )


def key_type(data: bytes) -> str | None:
    """ "DSA", "RSA" or "SM2" for an HS_PUBKEY value holding a key this node reads, else None."""
    try:
        key = decode_public_key(data)
    except InvalidValue:
        return None
    return "SM2" if isinstance(key, SM2PublicKey) else "DSA" if isinstance(key, DSAPublicKey) else "RSA"


def claims_sm2(data: bytes) -> bool:
    """Whether HS_PUBKEY data says it is an SM2 key: the SM2_PUB_KEY tag, or PEM text naming SM2's curve."""
    if data.startswith(pack(SM2_PUBLIC)):
        return True
    if not _looks_pem(data):
        return False
    try:
        return _SM2_OID_DER in _pem_der(data, "")
    except InvalidValue:
        return False


def check_public_key_value(data: bytes) -> None:
    """InvalidValue when HS_PUBKEY data claims to be an SM2 key and is not a valid one.

    Other data is stored as handle.net stores it, whatever it holds: clients keep key files
    of their own there, and an RSA or DSA key this node cannot read only cannot log in here.
    """
    if claims_sm2(data):
        decode_public_key(data)


def _looks_pem(data: bytes) -> bool:
    return data.lstrip()[:11] == b"-----BEGIN "


def _pem_der(data: bytes, subject: str) -> bytes:
    """The DER inside PEM text ``-----BEGIN PUBLIC KEY-----`` ... ``-----END PUBLIC KEY-----``."""
    lines = [line.strip() for line in data.strip().splitlines()]
    if len(lines) < 2 or lines[0] != PEM_BEGIN or lines[-1] != PEM_END:
        raise InvalidValue(f"{subject} is not PEM text from {PEM_BEGIN.decode()} to {PEM_END.decode()}")
    try:
        return base64.b64decode(b"".join(lines[1:-1]), validate=True)
    except binascii.Error:
        raise InvalidValue(f"{subject} holds PEM text whose base64 does not decode") from None


def _spki(data: bytes, subject: str) -> tuple[str, str | None, bytes]:
    """The algorithm, its parameter when that is an OID (an EC key's curve), and the key bits."""
    outer = der.Reader(data, subject)
    info = outer.sequence()
    outer.done()
    algorithm = info.sequence()
    bits = info.bit_string()
    info.done()
    oid = algorithm.oid()
    return oid, algorithm.oid() if algorithm.peek() == der.OID else None, bits


def _from_spki(data: bytes, subject: str) -> PublicKey:
    """The key in DER SubjectPublicKeyInfo: SM2 read here, RSA and DSA by cryptography."""
    oid, curve, bits = _spki(data, subject)
    if oid in (OID_EC_PUBLIC_KEY, OID_SM2):
        if curve != OID_SM2 and not (oid == OID_SM2 and curve is None):
            raise InvalidValue(
                f"{subject} is an EC key on curve {curve or '(given by parameters)'}; "
                f"this node reads EC keys on SM2's curve sm2p256v1 ({OID_SM2}) only"
            )
        return decode_point(bits)
    try:
        key = serialization.load_der_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidValue(f"{subject} is not a key this node reads (algorithm {oid}): {exc}") from None
    if isinstance(key, rsa.RSAPublicKey | DSAPublicKey):
        return key
    raise InvalidValue(f"{subject} is a key of algorithm {oid}; this node reads SM2, RSA and DSA keys")


def _sm2_field(field: bytes) -> SM2PublicKey:
    """The key in SM2_PUB_KEY's field: PEM text (what id-pointer writes), DER SPKI or a SEC 1 point."""
    subject = "the SM2_PUB_KEY value's key"
    if _looks_pem(field):
        key = _from_spki(_pem_der(field, subject), subject)
    elif field[:1] == b"\x30":
        key = _from_spki(field, subject)
    else:
        return decode_point(field)
    if not isinstance(key, SM2PublicKey):
        raise InvalidValue(f"{subject} is not an SM2 key")
    return key


# Private keys -----------------------------------------------------------------------------


def encode_private_key(key: PrivateKey) -> bytes:
    """``Util.getBytesFromPrivateKey``: DSA_PRIV_KEY, or RSA_PRIVCRT_KEY for an RSA key."""
    if isinstance(key, DSAPrivateKey):
        n = key.private_numbers()
        params = n.public_numbers.parameter_numbers
        return pack(DSA_PRIVATE, *map(java_bytes, (n.x, params.p, params.q, params.g)))
    r = key.private_numbers()
    numbers = (r.public_numbers.n, r.public_numbers.e, r.d, r.p, r.q, r.dmp1, r.dmq1, r.iqmp)
    return pack(RSA_CRT_PRIVATE, *map(java_bytes, numbers))


def decode_private_key(data: bytes) -> PrivateKey:
    """The key in unencrypted private key bytes (``Util.getPrivateKeyFromBytes``)."""
    subject = "the private key"
    r = reader(data, subject)
    kind = r.blob("key type")
    try:
        if kind == DSA_PRIVATE:
            x, p, q, g = (number(r, subject) for _ in range(4))
            y = pow(g, x, p)
            return DSAPrivateNumbers(x, DSAPublicNumbers(y, DSAParameterNumbers(p, q, g))).private_key()
        if kind == RSA_CRT_PRIVATE:
            n, e, d, p, q, dp, dq, qi = (number(r, subject) for _ in range(8))
            return rsa.RSAPrivateNumbers(p, q, d, dp, dq, qi, rsa.RSAPublicNumbers(e, n)).private_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidValue(f"the private key is not a valid {kind.decode('latin-1')}: {exc}") from None
    if kind == RSA_PRIVATE:
        raise InvalidValue(
            "the private key is RSA_PRIV_KEY (modulus and exponent only); re-export it with its CRT parts"
        )
    raise InvalidValue(f"the private key has type {kind[:40]!r}; this node reads DSA_PRIV_KEY and RSA_PRIVCRT_KEY")


# Private key files ------------------------------------------------------------------------


def _pbkdf2(passphrase: bytes, salt: bytes, iterations: int, bits: int) -> bytes:
    """Java's PBKDF2WithHmacSHA1 over bytes widened to chars: it hashes their UTF-8 encoding."""
    password = passphrase.decode("latin-1").encode("utf-8")
    return hashlib.pbkdf2_hmac("sha1", password, salt, iterations, bits // 8)


def _cbc_decrypt(algorithm: algorithms.AES | TripleDES, iv: bytes, body: bytes, block: int) -> bytes:
    decryptor = Cipher(algorithm, modes.CBC(iv)).decryptor()
    padded = decryptor.update(body) + decryptor.finalize()
    unpadder = padding.PKCS7(block).unpadder()
    return unpadder.update(padded) + unpadder.finalize()


def _decrypt_des(scheme: int, r: Reader, passphrase: bytes) -> bytes:
    key = TripleDES(hashlib.md5(passphrase).digest()[:8] * 3)  # three equal keys: plain DES
    if scheme == ENCRYPT_DES_ECB:
        decryptor = Cipher(key, modes.ECB()).decryptor()
        body = r.take(r.remaining(), "encrypted key")
        unpadder = padding.PKCS7(64).unpadder()
        return unpadder.update(decryptor.update(body) + decryptor.finalize()) + unpadder.finalize()
    iv = r.take(8, "initialisation vector")
    return _cbc_decrypt(key, iv, r.take(r.remaining(), "encrypted key"), 64)


def _decrypt_pbkdf2(scheme: int, r: Reader, passphrase: bytes) -> bytes:
    salt, iterations, bits = r.blob("salt"), r.i32("iterations"), r.i32("key bits")
    want = 128 if scheme == ENCRYPT_PBKDF2_AES else 192
    if not 0 < iterations <= MAX_FILE_ITERATIONS or bits != want:
        raise InvalidValue(f"the private key file names {iterations} iterations and a {bits}-bit key")
    key = _pbkdf2(passphrase, salt, iterations, bits)
    iv, body = r.blob("initialisation vector"), r.blob("encrypted key")
    if scheme == ENCRYPT_PBKDF2_AES:
        return _cbc_decrypt(algorithms.AES(key), iv, body, 128)
    return _cbc_decrypt(TripleDES(key), iv, body, 64)


def decrypt_private_key_file(data: bytes, passphrase: bytes | None) -> bytes:
    """The private key bytes in a key file (``Util.decrypt``); None for an unencrypted file."""
    r = reader(data, "the private key file")
    scheme = r.i32("encryption scheme")
    if scheme == ENCRYPT_NONE:
        return data[4:]
    if scheme not in (ENCRYPT_DES_ECB, ENCRYPT_DES_CBC, ENCRYPT_PBKDF2_DESEDE, ENCRYPT_PBKDF2_AES):
        raise InvalidValue(f"the private key file uses encryption scheme {scheme}, which handle.net never wrote")
    if passphrase is None:
        raise AuthenticationFailed("the private key file is encrypted and no passphrase was given")
    try:
        if scheme in (ENCRYPT_DES_ECB, ENCRYPT_DES_CBC):
            return _decrypt_des(scheme, r, passphrase)
        return _decrypt_pbkdf2(scheme, r, passphrase)
    except ValueError:  # bad padding or block length: the passphrase is wrong, or the file damaged
        raise AuthenticationFailed("the private key file does not decrypt with that passphrase") from None


def encrypt_private_key_file(key_bytes: bytes, passphrase: bytes | None, *, salt: bytes, iv: bytes) -> bytes:
    """A key file as ``Util.encrypt`` writes it today: AES-128-CBC under PBKDF2, or unencrypted."""
    if passphrase is None:
        return struct.pack(">i", ENCRYPT_NONE) + key_bytes
    key = _pbkdf2(passphrase, salt, FILE_ITERATIONS, 128)
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    body = encryptor.update(padder.update(key_bytes) + padder.finalize()) + encryptor.finalize()
    header = struct.pack(">i", ENCRYPT_PBKDF2_AES) + pack(salt) + struct.pack(">ii", FILE_ITERATIONS, 128)
    return header + pack(iv, body)


def load_private_key_file(data: bytes, passphrase: bytes | None) -> PrivateKey:
    """``Util.getPrivateKeyFromFileWithPassphrase``: decrypt, then decode."""
    return decode_private_key(decrypt_private_key_file(data, passphrase))
