# -*- test-case-name: tests.auth.test_passwords -*-
"""
Password hashes in Dovecot's C{{SCHEME}hash} form.

New hashes are Argon2id (L{hashPassword}).  L{verifyPassword} also accepts
what a Dovecot C{passwd-file} is likely to hold, so users can be imported
without resetting their passwords:

    - C{{ARGON2ID}$argon2id$v=19$m=...,t=...,p=...$salt$hash} (and
      C{{ARGON2I}$argon2i$...}), as Dovecot (libsodium) and argon2-cffi
      write them;
    - C{{BLF-CRYPT}$2y$NN$...} (also C{$2a$}, C{$2b$}): bcrypt;
    - C{{SHA512-CRYPT}$6$[rounds=N$]salt$hash} and
      C{{SHA256-CRYPT}$5$...}: Ulrich Drepper's SHA-crypt, implemented here
      in Python (the C{crypt} module is deprecated and gone in Python 3.13);
    - C{{CRYPT}...} holding one of the above C{$2?$}, C{$5$} or C{$6$}
      forms (Dovecot's C{CRYPT} scheme hands them to libc C{crypt()}).

Everything else is refused: a missing or unknown scheme, C{{PLAIN}} and
the other plain-text schemes, DES and MD5 crypt.  L{isSupported} says why
a stored value cannot be used.  Nothing here raises for a malformed stored
value; it just does not verify.

B{Blocking}: hashing and verifying take tens to hundreds of milliseconds
of CPU (and, for Argon2, 64 MiB of memory) by design.  Callers on the
reactor thread must run them elsewhere (C{deferToThreadPool}), and should
bound how many run at once, since each concurrent Argon2 verification
holds its own 64 MiB.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
from typing import Any, Callable

import bcrypt
from argon2 import PasswordHasher, Type, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError
from argon2.low_level import verify_secret
from attrs import frozen

# The Argon2id cost of new hashes.  RFC 9106 §4 recommends t=1, m=2 GiB
# where memory allows and otherwise t=3, m=64 MiB; OWASP's Password Storage
# Cheat Sheet asks for at least m=19 MiB, t=2, p=1; Dovecot (libsodium's
# INTERACTIVE level) writes m=64 MiB, t=2, p=1.  We take RFC 9106's second
# option with one lane: a mail server verifies many logins at once on a
# thread pool, so lanes would not buy more cost per core for an attacker,
# only more threads per login, and p=1 is also what libsodium and so
# Dovecot write.  About 0.15 s on one core of a 2020s server.

#: Argon2 passes (t).
ARGON2_TIME_COST = 3
#: Argon2 memory in KiB (m): 64 MiB.
ARGON2_MEMORY_COST = 65536
#: Argon2 lanes (p).
ARGON2_PARALLELISM = 1
#: Argon2 output length in bytes, as libsodium writes it.
ARGON2_HASH_LENGTH = 32
#: Argon2 salt length in bytes, as libsodium writes it.
ARGON2_SALT_LENGTH = 16

#: The hasher for new hashes, and the parameters L{needsRehash} compares
#: against.  Tests replace it (C{self.patch}) with a cheap one; production
#: code never changes it.
HASHER = PasswordHasher(
    time_cost=ARGON2_TIME_COST,
    memory_cost=ARGON2_MEMORY_COST,
    parallelism=ARGON2_PARALLELISM,
    hash_len=ARGON2_HASH_LENGTH,
    salt_len=ARGON2_SALT_LENGTH,
    type=Type.ID,
)

#: The longest password (in UTF-8 bytes) hashed or verified.  SHA-crypt
#: hashes the password C{len(password)} times over, so its cost grows with
#: the square of the length; no real password comes near this.
MAX_PASSWORD_BYTES = 4096

# Stored hashes costlier than these are refused rather than verified, so
# that a typo or a hostile line in the users file cannot tie up a thread
# for minutes (or allocate gigabytes) on every login attempt.

#: Most Argon2 memory times passes, in KiB: libsodium's SENSITIVE level
#: (1 GiB, 4 passes).
MAX_ARGON2_WORK = 4 * 1024 * 1024
#: Most Argon2 lanes.
MAX_ARGON2_PARALLELISM = 16
#: Highest bcrypt cost (2**16 rounds: a few seconds).
MAX_BCRYPT_COST = 16
#: Most SHA-crypt rounds; about a second in Python (the default is 5000).
MAX_SHA_CRYPT_ROUNDS = 1_000_000

# bcrypt uses only the first 72 bytes of a password.  Every C
# implementation (and so Dovecot) silently truncates; bcrypt 5 raises
# ValueError instead, so truncate as the hash's maker did.
_BCRYPT_MAX_BYTES = 72

_SCHEME = re.compile(r"\{([A-Za-z0-9._-]{1,32})\}(.*)\Z")
# Plain text, or as good as plain text: whoever reads a CRAM-MD5 or
# DIGEST-MD5 value can log in with it.
_PLAIN_SCHEMES = frozenset(
    {"PLAIN", "CLEAR", "CLEARTEXT", "PLAIN-TRUNC", "CRAM-MD5", "DIGEST-MD5"}
)
_SUPPORTED = "ARGON2ID, ARGON2I, BLF-CRYPT, SHA512-CRYPT, SHA256-CRYPT, CRYPT"


@frozen
class Support:
    """
    Whether a stored password can be verified, and if not, why.

    True in a boolean context when it can.

    @ivar ok: it can be verified.
    @ivar reason: for a person: what is wrong (C{""} when nothing is).
    """

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


def hashPassword(password: str, hasher: PasswordHasher | None = None) -> str:
    """
    Hash a new password: C{{ARGON2ID}$argon2id$v=19$m=65536,t=3,p=1$...}.

    Blocking: run it off the reactor thread.

    @param password: the password; not empty, at most L{MAX_PASSWORD_BYTES}
        in UTF-8.
    @param hasher: the Argon2id hasher; L{HASHER} when C{None}.
    @raise ValueError: the password is empty, too long, or not encodable.
    """
    secret = _encode(password)
    if secret is None or not secret:
        raise ValueError("the password is empty, too long or not valid text")
    return "{ARGON2ID}" + (hasher or HASHER).hash(secret)


def verifyPassword(stored: str, password: str) -> bool:
    """
    Whether C{password} matches C{stored}, in constant time for a given
    stored hash.

    Never raises: a stored value that is missing its scheme, has an
    unknown or refused one (C{{PLAIN}}), or is malformed does not verify;
    L{isSupported} says why.  Blocking: run it off the reactor thread.

    @param stored: C{{SCHEME}hash} from the users file.
    @param password: what the client sent.
    """
    secret = _encode(password)
    if secret is None:
        return False
    verifier, _ = _analyse(stored)
    if verifier is None:
        return False
    try:
        return verifier(secret)
    except Exception:
        # A malformed value that got past the checks: not a match, and no
        # traceback into a login.
        return False


def isSupported(stored: str) -> Support:
    """
    Whether L{verifyPassword} can ever succeed for C{stored}, and if not,
    why (for the operator: the reason never contains the hash).
    """
    verifier, reason = _analyse(stored)
    return Support(verifier is not None, reason)


def needsRehash(stored: str, hasher: PasswordHasher | None = None) -> bool:
    """
    Whether C{stored} should be replaced by a new hash at the next
    successful login: anything but an Argon2id hash with exactly the
    current parameters (L{HASHER}'s, or C{hasher}'s).
    """
    match = _SCHEME.match(stored) if isinstance(stored, str) else None
    if match is None or match.group(1).upper() != "ARGON2ID":
        return True
    try:
        return (hasher or HASHER).check_needs_rehash(match.group(2))
    except Exception:
        return True


_dummyLock = threading.Lock()
_dummyHashes: dict[Any, str] = {}


def dummyHash() -> str:
    """
    An Argon2id hash of a random password, made with the current
    parameters the first time it is asked for (blocking) and kept.

    Verify against it when a user does not exist, so that an unknown user
    and a wrong password cost the same time (see L{verifyNoUser}).
    """
    hasher = HASHER
    key = (
        hasher.time_cost,
        hasher.memory_cost,
        hasher.parallelism,
        hasher.hash_len,
        hasher.salt_len,
    )
    with _dummyLock:
        if key not in _dummyHashes:
            _dummyHashes[key] = hashPassword(secrets.token_urlsafe(32), hasher)
        return _dummyHashes[key]


def verifyNoUser(password: str) -> bool:
    """
    Spend the time of verifying a password of a user who does not exist,
    against L{dummyHash}; always C{False}.  Blocking.
    """
    verifyPassword(dummyHash(), password)
    return False


def __getattr__(name: str) -> str:
    # DUMMY_HASH is computed lazily (PEP 562): importing this module must
    # not cost a tenth of a second and 64 MiB.
    if name == "DUMMY_HASH":
        return dummyHash()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _encode(password: Any) -> bytes | None:
    """
    The password as UTF-8 (lone surrogates from a C{surrogateescape}
    decoding turned back into their bytes), or C{None} if it is not text or
    is too long.
    """
    if not isinstance(password, str):
        return None
    try:
        secret = password.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return None
    if len(secret) > MAX_PASSWORD_BYTES:
        return None
    return secret


Verifier = Callable[[bytes], bool]


def _analyse(stored: Any) -> tuple[Verifier | None, str]:
    """
    Split C{{SCHEME}hash} and check the hash: a verifier, or C{None} and
    the reason.
    """
    if not isinstance(stored, str):
        return None, "not text"
    if not stored:
        return None, "no password: the account cannot log in"
    match = _SCHEME.match(stored)
    if match is None:
        return None, (
            "no {SCHEME} prefix: write it as {ARGON2ID}$argon2id$...,"
            " {BLF-CRYPT}$2y$... or {SHA512-CRYPT}$6$..."
        )
    scheme, value = match.group(1).upper(), match.group(2)
    if scheme in _PLAIN_SCHEMES:
        return None, (
            f"{scheme} passwords are refused: set a new one with"
            " 'mailhub user passwd ADDRESS'"
        )
    if scheme == "ARGON2ID":
        return _argon2(value, "argon2id", Type.ID)
    if scheme == "ARGON2I":
        return _argon2(value, "argon2i", Type.I)
    if scheme == "BLF-CRYPT":
        return _bcrypt(value)
    if scheme == "SHA512-CRYPT":
        return _shaCryptVerifier(value, "6")
    if scheme == "SHA256-CRYPT":
        return _shaCryptVerifier(value, "5")
    if scheme == "CRYPT":
        if value.startswith("$2"):
            return _bcrypt(value)
        if value.startswith(("$5$", "$6$")):
            return _shaCryptVerifier(value, value[1])
        return None, "CRYPT is accepted only for $2y$, $5$ and $6$ hashes (not DES or MD5)"
    return None, f"unknown scheme {scheme}; mailhub verifies {_SUPPORTED}"


# Argon2


# The PHC string format as argon2 and libsodium write it; base 64 without
# padding.
_ARGON2 = re.compile(
    r"\$(argon2id|argon2i)\$(?:v=[0-9]+\$)?m=[0-9]+,t=[0-9]+,p=[0-9]+"
    r"\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+\Z"
)


def _argon2(value: str, prefix: str, kind: Type) -> tuple[Verifier | None, str]:
    name = prefix.upper()
    match = _ARGON2.match(value)
    if match is None or match.group(1) != prefix:
        return None, f"not a valid {name} hash: expected ${prefix}$v=19$m=N,t=N,p=N$salt$hash"
    try:
        parameters = extract_parameters(value)
    except (InvalidHashError, ValueError):
        return None, f"not a valid {name} hash"
    if parameters.type is not kind:
        return None, f"not an {name} hash"
    work = parameters.memory_cost * parameters.time_cost
    if work > MAX_ARGON2_WORK or parameters.parallelism > MAX_ARGON2_PARALLELISM:
        return None, (
            f"{name} cost m={parameters.memory_cost},t={parameters.time_cost},"
            f"p={parameters.parallelism} is beyond what mailhub verifies"
        )
    encoded = value.encode("ascii")

    def verify(secret: bytes) -> bool:
        try:
            return verify_secret(encoded, secret, kind)
        except VerificationError:
            return False

    return verify, ""


# bcrypt

_BCRYPT = re.compile(r"\$2([aby])\$([0-9]{2})\$[./A-Za-z0-9]{53}\Z")


def _bcrypt(value: str) -> tuple[Verifier | None, str]:
    match = _BCRYPT.match(value)
    if match is None:
        return None, "not a valid BLF-CRYPT hash: expected $2y$NN$ and 53 characters"
    cost = int(match.group(2))
    if not 4 <= cost <= MAX_BCRYPT_COST:
        return None, f"bcrypt cost {cost} is outside 4 to {MAX_BCRYPT_COST}"
    encoded = value.encode("ascii")

    def verify(secret: bytes) -> bool:
        return bcrypt.checkpw(secret[:_BCRYPT_MAX_BYTES], encoded)

    return verify, ""


# SHA-crypt, after Ulrich Drepper, "Unix crypt using SHA-256 and SHA-512"
# (https://www.akkadia.org/drepper/SHA-crypt.txt); the step numbers below
# are the specification's.

_CRYPT_ALPHABET = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_ROUNDS_DEFAULT = 5000
_ROUNDS_MIN = 1000
_ROUNDS_MAX = 999_999_999
_SALT_MAX = 16

# Step 22: which digest bytes make up each group of base-64 characters, the
# first index the most significant byte.
_SHA256_ORDER = (
    (0, 10, 20), (21, 1, 11), (12, 22, 2), (3, 13, 23), (24, 4, 14),
    (15, 25, 5), (6, 16, 26), (27, 7, 17), (18, 28, 8), (9, 19, 29),
    (31, 30),
)  # fmt: skip
_SHA512_ORDER = (
    (0, 21, 42), (22, 43, 1), (44, 2, 23), (3, 24, 45), (25, 46, 4),
    (47, 5, 26), (6, 27, 48), (28, 49, 7), (50, 8, 29), (9, 30, 51),
    (31, 52, 10), (53, 11, 32), (12, 33, 54), (34, 55, 13), (56, 14, 35),
    (15, 36, 57), (37, 58, 16), (59, 17, 38), (18, 39, 60), (40, 61, 19),
    (62, 20, 41), (63,),
)  # fmt: skip

_VARIANTS: dict[str, tuple[Callable[..., Any], int, tuple[tuple[int, ...], ...], str]] = {
    "5": (hashlib.sha256, 43, _SHA256_ORDER, "SHA256-CRYPT"),
    "6": (hashlib.sha512, 86, _SHA512_ORDER, "SHA512-CRYPT"),
}

_SHA_CRYPT = re.compile(
    r"\$([56])\$(?:rounds=([0-9]{1,9})\$)?([^$:\s]{0,16})\$([./0-9A-Za-z]+)\Z"
)


def shaCrypt(password: bytes, setting: str) -> str:
    """
    SHA-crypt as C{crypt(3)} computes it: C{setting} is C{$5$} or C{$6$},
    optionally C{rounds=N$}, then the salt (at most 16 characters are
    used; a trailing C{$hash} is ignored).

    Blocking.  Exposed for tests against the specification's vectors.

    @return: the full C{$6$...$hash} string.
    @raise ValueError: C{setting} is not a SHA-crypt setting.
    """
    if setting[:3] not in ("$5$", "$6$"):
        raise ValueError("not a SHA-crypt setting")
    ident = setting[1]
    rest = setting[3:]
    rounds, custom = _ROUNDS_DEFAULT, False
    # Step 4 and the reference code: "rounds=N$" only counts when N is a
    # number followed by "$"; out of range values are clamped.
    match = re.match(r"rounds=([0-9]+)\$", rest)
    if match:
        rounds = max(_ROUNDS_MIN, min(int(match.group(1)), _ROUNDS_MAX))
        custom = True
        rest = rest[match.end() :]
    salt = rest.split("$", 1)[0][:_SALT_MAX]
    digest = _shaCryptDigest(ident, password, salt.encode("utf-8", "surrogateescape"), rounds)
    prefix = f"${ident}$" + (f"rounds={rounds}$" if custom else "")
    return f"{prefix}{salt}${digest}"


def _shaCryptVerifier(value: str, ident: str) -> tuple[Verifier | None, str]:
    _, length, _, name = _VARIANTS[ident]
    match = _SHA_CRYPT.match(value)
    if (
        not value.isascii()
        or match is None
        or match.group(1) != ident
        or len(match.group(4)) != length
    ):
        return None, f"not a valid {name} hash: expected ${ident}$[rounds=N$]salt$hash"
    if match.group(2) is not None:
        rounds = int(match.group(2))
        if rounds > MAX_SHA_CRYPT_ROUNDS:
            return None, f"rounds={rounds} is more than mailhub verifies ({MAX_SHA_CRYPT_ROUNDS})"
        if rounds < _ROUNDS_MIN or match.group(2) != str(rounds):
            # crypt(3) would write rounds=1000 (or without the zeros), so
            # this string can never be its output.
            return None, f"not a valid {name} hash: rounds={match.group(2)}"
    expected = value.encode("ascii")

    def verify(secret: bytes) -> bool:
        computed = shaCrypt(secret, value).encode("ascii")
        return hmac.compare_digest(computed, expected)

    return verify, ""


def _shaCryptDigest(ident: str, key: bytes, salt: bytes, rounds: int) -> str:
    new, _, order, _ = _VARIANTS[ident]
    size = new().digest_size
    n = len(key)
    # Steps 4-8: digest B of key, salt, key.
    b = new(key + salt + key).digest()
    # Steps 1-3, 9-12: digest A.
    a = new(key + salt)
    a.update(b * (n // size) + b[: n % size])
    i = n
    while i:
        a.update(b if i & 1 else key)
        i >>= 1
    digestA = a.digest()
    # Steps 13-16: the P sequence, from DP = digest of the key n times.
    dp = new(key * n).digest()
    p = dp * (n // size) + dp[: n % size]
    # Steps 17-20: the S sequence, from DS = digest of the salt 16+A[0] times.
    ds = new(salt * (16 + digestA[0])).digest()
    s = ds[: len(salt)]
    # Step 21: the rounds.  What is hashed besides the previous digest C
    # repeats every 42 rounds; build the 42 fixed parts once.
    parts = []
    for r in range(42):
        fixed = (s if r % 3 else b"") + (p if r % 7 else b"")
        if r & 1:
            parts.append((True, p + fixed))  # P [S] [P] C
        else:
            parts.append((False, fixed + p))  # C [S] [P] P
    c = digestA
    for r in range(rounds):
        cLast, fixed = parts[r % 42]
        c = new(fixed + c if cLast else c + fixed).digest()
    # Step 22: the custom base-64 of the permuted bytes.
    out = []
    for group in order:
        w = 0
        for index in group:
            w = (w << 8) | c[index]
        for _ in range(len(group) + 1):
            out.append(_CRYPT_ALPHABET[w & 0x3F])
            w >>= 6
    return "".join(out)
