"""
Tests for L{mailhub.auth.passwords}: Dovecot-style C{{SCHEME}hash} values.
"""

from __future__ import annotations

import re

import bcrypt
from argon2 import PasswordHasher, Type
from twisted.trial.unittest import SynchronousTestCase

from mailhub.auth import passwords
from mailhub.auth.passwords import (
    hashPassword,
    isSupported,
    needsRehash,
    shaCrypt,
    verifyNoUser,
    verifyPassword,
)

#: The cheapest Argon2id there is: tests hash with it (the production cost
#: is checked on its own, in L{ProductionParametersTests}).
FAST = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, hash_len=32, salt_len=16, type=Type.ID)

# "Unix crypt using SHA-256 and SHA-512", Ulrich Drepper: the test vectors
# published with the specification (setting, password, result).
SHA256_VECTORS = [
    (
        "$5$saltstring",
        "Hello world!",
        "$5$saltstring$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZaBBGWEc5",
    ),
    (
        "$5$rounds=10000$saltstringsaltstring",
        "Hello world!",
        "$5$rounds=10000$saltstringsaltst$3xv.VbSHBb41AL9AvLeujZkZRBAwqFMz2.opqey6IcA",
    ),
    (
        "$5$rounds=5000$toolongsaltstring",
        "This is just a test",
        "$5$rounds=5000$toolongsaltstrin$Un/5jzAHMgOGZ5.mWJpuVolil07guHPvOW8mGRcvxa5",
    ),
    (
        "$5$rounds=1400$anotherlongsaltstring",
        "a very much longer text to encrypt.  This one even stretches over more"
        "than one line.",
        "$5$rounds=1400$anotherlongsalts$Rx.j8H.h8HjEDGomFU8bDkXm3XIUnzyxf12oP84Bnq1",
    ),
    (
        "$5$rounds=77777$short",
        "we have a short salt string but not a short password",
        "$5$rounds=77777$short$JiO1O3ZpDAxGJeaDIuqCoEFysAe1mZNJRs3pw0KQRd/",
    ),
    (
        "$5$rounds=123456$asaltof16chars..",
        "a short string",
        "$5$rounds=123456$asaltof16chars..$gP3VQ/6X7UUEW3HkBn2w1/Ptq2jxPyzV/cZKmF/wJvD",
    ),
    (
        "$5$rounds=10$roundstoolow",
        "the minimum number is still observed",
        "$5$rounds=1000$roundstoolow$yfvwcWrQ8l/K0DAWyuPMDNHpIVlTQebY9l/gL972bIC",
    ),
]

SHA512_VECTORS = [
    (
        "$6$saltstring",
        "Hello world!",
        "$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJu"
        "esI68u4OTLiBFdcbYEdFCoEOfaS35inz1",
    ),
    (
        "$6$rounds=10000$saltstringsaltstring",
        "Hello world!",
        "$6$rounds=10000$saltstringsaltst$OW1/O6BYHV6BcXZu8QVeXbDWra3Oeqh0sb"
        "HbbMCVNSnCM/UrjmM0Dp8vOuZeHBy/YTBmSK6H9qs/y3RnOaw5v.",
    ),
    (
        "$6$rounds=5000$toolongsaltstring",
        "This is just a test",
        "$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQ"
        "zQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0",
    ),
    (
        "$6$rounds=1400$anotherlongsaltstring",
        "a very much longer text to encrypt.  This one even stretches over more"
        "than one line.",
        "$6$rounds=1400$anotherlongsalts$POfYwTEok97VWcjxIiSOjiykti.o/pQs.wP"
        "vMxQ6Fm7I6IoYN3CmLs66x9t0oSwbtEW7o7UmJEiDwGqd8p4ur1",
    ),
    (
        "$6$rounds=77777$short",
        "we have a short salt string but not a short password",
        "$6$rounds=77777$short$WuQyW2YR.hBNpjjRhpYD/ifIw05xdfeEyQoMxIXbkvr0g"
        "ge1a1x3yRULJ5CCaUeOxFmtlcGZelFl5CxtgfiAc0",
    ),
    (
        "$6$rounds=123456$asaltof16chars..",
        "a short string",
        "$6$rounds=123456$asaltof16chars..$BtCwjqMJGx5hrJhZywWvt0RLE8uZ4oPwc"
        "elCjmw2kSYu.Ec6ycULevoBK25fs2xXgMNrCzIMVcgEJAstJeonj1",
    ),
    (
        "$6$rounds=10$roundstoolow",
        "the minimum number is still observed",
        "$6$rounds=1000$roundstoolow$kUMsbe306n21p9R.FRkW3IGn.S9NPN0x50YhH1x"
        "hLsPuWGsUSklZt58jaTfF4ZEQpyUNGc0dqbpBYYBaHHrsX.",
    ),
]

#: The first SHA512-CRYPT vector as a Dovecot passwd-file holds it.
DOVECOT_SHA512 = "{SHA512-CRYPT}" + SHA512_VECTORS[0][2]

#: An Argon2id hash written by libsodium (as Dovecot's ARGON2ID does, at its
#: default m=64 MiB, t=2, p=1) of the password "lol".
LIBSODIUM_ARGON2ID = (
    "{ARGON2ID}$argon2id$v=19$m=65536,t=2,p=1$ZrWMVZiMs4tvs0QwVc7T7A"
    "$LIl6XlgIZsuozRpC3bCe5ew8LEWgDQvQE8qwsZ9ISps"
)

#: The example of the Argon2 reference implementation's README: Argon2i,
#: m=64 MiB, t=2, p=4, password "password", salt "somesalt".
REFERENCE_ARGON2I = (
    "{ARGON2I}$argon2i$v=19$m=65536,t=2,p=4$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG"
)


class PasswordTestCase(SynchronousTestCase):
    """
    Hash with the cheap L{FAST} parameters.
    """

    def setUp(self) -> None:
        self.patch(passwords, "HASHER", FAST)


class Argon2Tests(PasswordTestCase):
    """
    New hashes are Argon2id in Dovecot's form, and verify.
    """

    def test_format(self) -> None:
        """
        C{{ARGON2ID}$argon2id$v=19$m=...,t=...,p=...$salt$hash}, with a
        16-byte salt and a 32-byte hash in unpadded base 64, as Dovecot
        writes it.
        """
        stored = hashPassword("correct horse")
        self.assertRegex(
            stored,
            r"\A\{ARGON2ID\}\$argon2id\$v=19\$m=8,t=1,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}\Z",
        )

    def test_roundTrip(self) -> None:
        """
        A hash verifies with its password and not with another.
        """
        stored = hashPassword("correct horse")
        self.assertTrue(verifyPassword(stored, "correct horse"))
        self.assertFalse(verifyPassword(stored, "correct horse "))
        self.assertFalse(verifyPassword(stored, "Correct horse"))

    def test_salted(self) -> None:
        """
        The same password hashes differently each time.
        """
        self.assertNotEqual(hashPassword("x"), hashPassword("x"))

    def test_unicode(self) -> None:
        """
        Passwords are UTF-8; a password from bytes decoded with
        C{surrogateescape} verifies as those bytes.
        """
        stored = hashPassword("pässwörd ✓")
        self.assertTrue(verifyPassword(stored, "pässwörd ✓"))
        self.assertFalse(verifyPassword(stored, "password ✓"))
        raw = b"caf\xe9"  # Latin-1, not UTF-8
        stored = hashPassword(raw.decode("utf-8", "surrogateescape"))
        self.assertTrue(verifyPassword(stored, raw.decode("utf-8", "surrogateescape")))

    def test_hasherArgument(self) -> None:
        """
        A hasher may be given for one call.
        """
        hasher = PasswordHasher(time_cost=2, memory_cost=16, parallelism=1, type=Type.ID)
        stored = hashPassword("x", hasher)
        self.assertIn("$m=16,t=2,p=1$", stored)
        self.assertTrue(verifyPassword(stored, "x"))

    def test_emptyRefused(self) -> None:
        """
        An empty or overlong password is not hashed.
        """
        self.assertRaises(ValueError, hashPassword, "")
        self.assertRaises(ValueError, hashPassword, "x" * (passwords.MAX_PASSWORD_BYTES + 1))
        self.assertRaises(ValueError, hashPassword, "\ud800")

    def test_libsodium(self) -> None:
        """
        An Argon2id hash made by libsodium (Dovecot) verifies.
        """
        self.assertTrue(verifyPassword(LIBSODIUM_ARGON2ID, "lol"))
        self.assertFalse(verifyPassword(LIBSODIUM_ARGON2ID, "lul"))

    def test_argon2i(self) -> None:
        """
        C{{ARGON2I}} hashes verify, several lanes included.
        """
        self.assertTrue(verifyPassword(REFERENCE_ARGON2I, "password"))
        self.assertFalse(verifyPassword(REFERENCE_ARGON2I, "Password"))

    def test_schemeMustMatch(self) -> None:
        """
        The scheme and the hash must agree: an Argon2i hash under
        C{{ARGON2ID}} (or the other way round) does not verify.
        """
        argon2i = REFERENCE_ARGON2I.replace("{ARGON2I}", "{ARGON2ID}")
        self.assertFalse(verifyPassword(argon2i, "password"))
        argon2id = LIBSODIUM_ARGON2ID.replace("{ARGON2ID}", "{ARGON2I}")
        self.assertFalse(verifyPassword(argon2id, "lol"))

    def test_schemeCase(self) -> None:
        """
        The scheme name is case-insensitive, as in Dovecot.
        """
        self.assertTrue(verifyPassword(LIBSODIUM_ARGON2ID.replace("ARGON2ID", "argon2id", 1), "lol"))


class ProductionParametersTests(SynchronousTestCase):
    """
    The cost of new hashes, unpatched.
    """

    def test_parameters(self) -> None:
        """
        Argon2id, 3 passes over 64 MiB in one lane, 16-byte salt, 32-byte
        hash.
        """
        hasher = passwords.HASHER
        self.assertEqual(
            (
                hasher.type,
                hasher.time_cost,
                hasher.memory_cost,
                hasher.parallelism,
                hasher.salt_len,
                hasher.hash_len,
            ),
            (Type.ID, 3, 65536, 1, 16, 32),
        )

    def test_productionHash(self) -> None:
        """
        A hash with the production parameters says so, and verifies.
        """
        stored = hashPassword("correct horse")
        self.assertIn("$argon2id$v=19$m=65536,t=3,p=1$", stored)
        self.assertTrue(verifyPassword(stored, "correct horse"))
        self.assertFalse(needsRehash(stored))


class BcryptTests(PasswordTestCase):
    """
    C{{BLF-CRYPT}}: bcrypt hashes, C{$2y$} included.
    """

    def setUp(self) -> None:
        super().setUp()
        self.hash = bcrypt.hashpw(b"correct horse", bcrypt.gensalt(4)).decode("ascii")

    def test_2b(self) -> None:
        """
        A C{$2b$} hash made by the bcrypt package verifies.
        """
        self.assertTrue(self.hash.startswith("$2b$04$"))
        self.assertTrue(verifyPassword("{BLF-CRYPT}" + self.hash, "correct horse"))
        self.assertFalse(verifyPassword("{BLF-CRYPT}" + self.hash, "correct horsE"))

    def test_2y(self) -> None:
        """
        C{$2y$} (what Dovecot and PHP write) and C{$2a$} are the same
        algorithm for UTF-8 passwords, and verify.
        """
        for prefix in ("$2y$", "$2a$"):
            stored = "{BLF-CRYPT}" + prefix + self.hash[4:]
            self.assertTrue(verifyPassword(stored, "correct horse"), prefix)
            self.assertFalse(verifyPassword(stored, "wrong"), prefix)

    def test_crypt(self) -> None:
        """
        Under Dovecot's C{{CRYPT}} scheme too.
        """
        self.assertTrue(verifyPassword("{CRYPT}$2y$" + self.hash[4:], "correct horse"))

    def test_long(self) -> None:
        """
        bcrypt uses the first 72 bytes of a password, as every bcrypt
        does; a longer password is truncated rather than refused.
        """
        password = "x" * 72
        stored = "{BLF-CRYPT}" + bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()
        self.assertTrue(verifyPassword(stored, password))
        self.assertTrue(verifyPassword(stored, password + "tail"))
        self.assertFalse(verifyPassword(stored, password[:-1]))

    def test_2x(self) -> None:
        """
        C{$2x$} (the buggy crypt_blowfish variant) is refused.
        """
        stored = "{BLF-CRYPT}$2x$" + self.hash[4:]
        self.assertFalse(verifyPassword(stored, "correct horse"))
        self.assertFalse(isSupported(stored))


class SHACryptTests(SynchronousTestCase):
    """
    C{{SHA512-CRYPT}} and C{{SHA256-CRYPT}}: Drepper's SHA-crypt.
    """

    def test_sha256Vectors(self) -> None:
        """
        L{shaCrypt} gives the specification's results for SHA-256,
        C{rounds=} (clamped to 1000 when lower) and salt truncation
        included, and each verifies under C{{SHA256-CRYPT}}.
        """
        for setting, password, expected in SHA256_VECTORS:
            self.assertEqual(shaCrypt(password.encode(), setting), expected)
            if "rounds=10$" not in setting:
                self.assertTrue(verifyPassword("{SHA256-CRYPT}" + expected, password), expected)
                self.assertFalse(verifyPassword("{SHA256-CRYPT}" + expected, password + "!"))

    def test_sha512Vectors(self) -> None:
        """
        Likewise for SHA-512 and C{{SHA512-CRYPT}}.
        """
        for setting, password, expected in SHA512_VECTORS:
            self.assertEqual(shaCrypt(password.encode(), setting), expected)
            self.assertTrue(verifyPassword("{SHA512-CRYPT}" + expected, password), expected)
            self.assertFalse(verifyPassword("{SHA512-CRYPT}" + expected, password + "!"))

    def test_dovecotLine(self) -> None:
        """
        A Dovecot-style C{{SHA512-CRYPT}$6$...} value verifies; so does the
        same under C{{CRYPT}}, but not under the wrong SHA scheme.
        """
        self.assertTrue(verifyPassword(DOVECOT_SHA512, "Hello world!"))
        self.assertFalse(verifyPassword(DOVECOT_SHA512, "hello world!"))
        self.assertFalse(verifyPassword(DOVECOT_SHA512, ""))
        bare = DOVECOT_SHA512[len("{SHA512-CRYPT}") :]
        self.assertTrue(verifyPassword("{CRYPT}" + bare, "Hello world!"))
        self.assertTrue(verifyPassword("{CRYPT}" + SHA256_VECTORS[0][2], "Hello world!"))
        self.assertFalse(verifyPassword("{SHA256-CRYPT}" + bare, "Hello world!"))

    def test_notCrypt3Output(self) -> None:
        """
        A value C{crypt(3)} can never write (rounds below the minimum or
        with leading zeros, a salt longer than 16) does not verify, as
        with libc.
        """
        hashPart = SHA512_VECTORS[6][2].rsplit("$", 1)[1]
        for stored in (
            f"$6$rounds=10$roundstoolow${hashPart}",
            f"$6$rounds=01000$roundstoolow${hashPart}",
            "$6$saltstringsaltstringX$" + SHA512_VECTORS[0][2].rsplit("$", 1)[1],
        ):
            self.assertFalse(verifyPassword("{SHA512-CRYPT}" + stored, SHA512_VECTORS[6][1]))
            self.assertFalse(isSupported("{SHA512-CRYPT}" + stored))

    def test_tooManyRounds(self) -> None:
        """
        More rounds than L{passwords.MAX_SHA_CRYPT_ROUNDS} are refused
        without being computed.
        """
        rounds = passwords.MAX_SHA_CRYPT_ROUNDS + 1
        stored = "{SHA512-CRYPT}$6$rounds=%d$salt$%s" % (rounds, "a" * 86)
        support = isSupported(stored)
        self.assertFalse(support)
        self.assertIn(f"rounds={rounds}", support.reason)
        self.assertFalse(verifyPassword(stored, "x"))


class RefusedTests(PasswordTestCase):
    """
    Anything that is not a supported hash is refused, without raising.
    """

    GARBAGE = [
        "",
        "{",
        "{}",
        "{}secret",
        "{SHA512-CRYPT}",
        "{SHA512-CRYPT}$6$",
        "{SHA512-CRYPT}$6$salt$tooshort",
        "{SHA512-CRYPT}$6$salt$" + "!" * 86,
        "{SHA256-CRYPT}$6$salt$" + "a" * 86,
        "{SHA512-CRYPT}$6$rounds=$salt$" + "a" * 86,
        "{SHA512-CRYPT}$6$rounds=99999999999999999999$salt$" + "a" * 86,
        "{SHA512-CRYPT}$6$sält$" + "a" * 86,
        "{ARGON2ID}",
        "{ARGON2ID}$argon2id$",
        "{ARGON2ID}$argon2id$v=19$m=abc,t=1,p=1$c2FsdHNhbHQ$aGFzaA",
        "{ARGON2ID}$argon2id$v=19$m=65536,t=2,p=1$!!!$!!!",
        "{ARGON2ID}$argon2id$v=19$m=4194304,t=4,p=1$ZrWMVZiMs4tvs0QwVc7T7A"
        "$LIl6XlgIZsuozRpC3bCe5ew8LEWgDQvQE8qwsZ9ISps",
        "{ARGON2ID}$argon2id$v=19$m=65536,t=2,p=255$ZrWMVZiMs4tvs0QwVc7T7A"
        "$LIl6XlgIZsuozRpC3bCe5ew8LEWgDQvQE8qwsZ9ISps",
        "{BLF-CRYPT}$2b$04$short",
        "{BLF-CRYPT}$2b$31$" + "a" * 53,
        "{BLF-CRYPT}$2b$03$" + "a" * 53,
        "{BLF-CRYPT}$2$04$" + "a" * 53,
        "{CRYPT}abJnggxhB/yWI",
        "{CRYPT}$1$saltsalt$hash",
        "{MD5-CRYPT}$1$saltsalt$hash",
        "{SSHA}8eweop0v7TNF+DE00ZsXByaL8bwiPC37",
        "{NOSUCH}whatever",
        "{SHA512-CRYPT}" + SHA512_VECTORS[0][2] + "\n",
        "{SHA512-CRYPT}" + SHA512_VECTORS[0][2] + "\x00",
        "\x00\xff\ud800",
    ]

    def test_garbage(self) -> None:
        """
        Malformed, unknown and over-costly values: C{False}, no exception,
        and L{isSupported} gives a reason.
        """
        for stored in self.GARBAGE:
            self.assertFalse(verifyPassword(stored, "secret"), repr(stored))
            support = isSupported(stored)
            self.assertFalse(support, repr(stored))
            self.assertTrue(support.reason, repr(stored))

    def test_wellFormedNoMatch(self) -> None:
        """
        Values of the right shape that no password was hashed to do not
        verify (and do not raise).
        """
        for stored in (
            "{BLF-CRYPT}$2b$04$" + "a" * 53,
            "{SHA512-CRYPT}$6$salt$" + "a" * 86,
            "{SHA256-CRYPT}$5$rounds=1000$salt$" + "a" * 43,
        ):
            self.assertTrue(isSupported(stored), stored)
            self.assertFalse(verifyPassword(stored, "secret"), stored)
            self.assertFalse(verifyPassword(stored, ""), stored)

    def test_notText(self) -> None:
        """
        A stored value or password that is not text: C{False}.
        """
        for stored in (None, 42, b"{PLAIN}secret", ["{PLAIN}secret"]):
            self.assertFalse(verifyPassword(stored, "secret"))  # type: ignore[arg-type]
            self.assertFalse(isSupported(stored))  # type: ignore[arg-type]
        self.assertFalse(verifyPassword(DOVECOT_SHA512, b"Hello world!"))  # type: ignore[arg-type]
        self.assertFalse(verifyPassword(DOVECOT_SHA512, None))  # type: ignore[arg-type]

    def test_badPassword(self) -> None:
        """
        A password that cannot be UTF-8 (a lone surrogate) or is longer
        than L{passwords.MAX_PASSWORD_BYTES}: C{False}.
        """
        self.assertFalse(verifyPassword(DOVECOT_SHA512, "\ud800"))
        stored = hashPassword("x" * passwords.MAX_PASSWORD_BYTES)
        self.assertTrue(verifyPassword(stored, "x" * passwords.MAX_PASSWORD_BYTES))
        self.assertFalse(verifyPassword(stored, "x" * (passwords.MAX_PASSWORD_BYTES + 1)))

    def test_plain(self) -> None:
        """
        C{{PLAIN}} and the other plain-text schemes are refused even with
        the right password, and L{isSupported} says to set a new one.
        """
        for scheme in ("PLAIN", "plain", "CLEARTEXT", "CLEAR", "PLAIN-TRUNC"):
            stored = "{%s}secret" % (scheme,)
            self.assertFalse(verifyPassword(stored, "secret"), scheme)
            support = isSupported(stored)
            self.assertFalse(support)
            self.assertIn("refused", support.reason)
            self.assertIn("mailhub user passwd", support.reason)

    def test_noScheme(self) -> None:
        """
        A bare hash, even a right one, is refused: the scheme is not
        guessed.
        """
        stored = SHA512_VECTORS[0][2]
        self.assertFalse(verifyPassword(stored, "Hello world!"))
        self.assertIn("{SCHEME}", isSupported(stored).reason)

    def test_unknownScheme(self) -> None:
        """
        An unknown scheme is named, with the ones that are supported.
        """
        reason = isSupported("{NOSUCH}whatever").reason
        self.assertIn("NOSUCH", reason)
        self.assertIn("ARGON2ID", reason)

    def test_reasonHidesHash(self) -> None:
        """
        A reason never repeats the hash (it is logged).
        """
        for stored in self.GARBAGE:
            match = re.match(r"\{[^}]*\}(.+)", stored)
            if match and len(match.group(1)) > 12:
                self.assertNotIn(match.group(1), isSupported(stored).reason)

    def test_supported(self) -> None:
        """
        Every supported form is said to be.
        """
        for stored in (
            hashPassword("x"),
            LIBSODIUM_ARGON2ID,
            REFERENCE_ARGON2I,
            DOVECOT_SHA512,
            "{SHA256-CRYPT}" + SHA256_VECTORS[0][2],
            "{BLF-CRYPT}" + bcrypt.hashpw(b"x", bcrypt.gensalt(4)).decode(),
        ):
            self.assertEqual(isSupported(stored), passwords.Support(True, ""))
            self.assertTrue(isSupported(stored))


class NeedsRehashTests(PasswordTestCase):
    """
    L{needsRehash}: only current Argon2id hashes are left alone.
    """

    def test_current(self) -> None:
        """
        A hash made with the current parameters needs nothing.
        """
        self.assertFalse(needsRehash(hashPassword("x")))

    def test_otherParameters(self) -> None:
        """
        Argon2id with other parameters (Dovecot's default, say) needs
        rehashing, as does Argon2i.
        """
        self.assertTrue(needsRehash(LIBSODIUM_ARGON2ID))
        self.assertTrue(needsRehash(REFERENCE_ARGON2I))
        other = PasswordHasher(time_cost=2, memory_cost=8, parallelism=1, type=Type.ID)
        self.assertTrue(needsRehash(hashPassword("x", other)))
        self.assertFalse(needsRehash(hashPassword("x", other), other))

    def test_otherSchemes(self) -> None:
        """
        Everything else needs rehashing, garbage included, without raising.
        """
        for stored in [DOVECOT_SHA512, "{BLF-CRYPT}$2y$04$" + "a" * 53, *RefusedTests.GARBAGE, None]:
            self.assertTrue(needsRehash(stored), repr(stored))  # type: ignore[arg-type]


class DummyHashTests(PasswordTestCase):
    """
    L{passwords.DUMMY_HASH}: what an unknown user is checked against.
    """

    def test_lazy(self) -> None:
        """
        Computed on first use with the current parameters, then kept.
        """
        first = passwords.DUMMY_HASH
        self.assertTrue(first.startswith("{ARGON2ID}$argon2id$"))
        self.assertFalse(needsRehash(first))
        self.assertIs(passwords.DUMMY_HASH, first)
        self.assertIs(passwords.dummyHash(), first)

    def test_verifyNoUser(self) -> None:
        """
        L{verifyNoUser} verifies against it and always fails.
        """
        self.assertFalse(verifyNoUser(""))
        self.assertFalse(verifyNoUser("secret"))

    def test_otherAttributes(self) -> None:
        """
        Other missing names are still missing.
        """
        self.assertRaises(AttributeError, getattr, passwords, "NO_SUCH_NAME")
