"""
Tests for L{mailhub.auth.userfile}: the Dovecot-style users file.
"""

from __future__ import annotations

import errno
import os
import stat

from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from mailhub.address import AddressError
from mailhub.auth import userfile
from mailhub.auth.userfile import (
    UserEntry,
    UserFile,
    checkAddress,
    parseUsers,
    readUsers,
    writeUsers,
)
from mailhub.errors import ConfigError
from mailhub.fs import FileSystem

ALICE = "{ARGON2ID}$argon2id$v=19$m=8,t=1,p=1$c29tZXNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
BOB = "{SHA512-CRYPT}$6$saltstring$svn8UoSVapNtMuq1ukKS4tPQd8iKwSMHWjl/O817G3uBnIFNjnQJuesI68u4OTLiBFdcbYEdFCoEOfaS35inz1"
CAROL = "{BLF-CRYPT}$2y$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui"

SAMPLE = f"""\
# mailhub users
#
alice@example.com:{ALICE}

  # Bob, imported from Dovecot
Bob@Example.COM:{BOB}:1000:1000:Bob Smith:/home/bob:/bin/false:userdb_mail=maildir:~/Mail quota=1G
carol@example.org:{CAROL}::::::
"""


class CheckAddressTests(SynchronousTestCase):
    """
    L{checkAddress}: C{local@domain}, a dot-atom, lower case.
    """

    def test_good(self) -> None:
        for text, expected in [
            ("alice@example.com", "alice@example.com"),
            ("Alice.Smith@Example.COM", "alice.smith@example.com"),
            ("a+b@localhost", "a+b@localhost"),
            ("o'brien@example.com", "o'brien@example.com"),
            ("x_y-z@sub.example.com", "x_y-z@sub.example.com"),
            (" alice@example.com ", "alice@example.com"),
        ]:
            self.assertEqual(checkAddress(text), expected)

    def test_bad(self) -> None:
        """
        No domain, no local part, a quoted or empty atom, a path
        separator, a leading or doubled dot, non-ASCII, a bad domain.
        """
        for text in [
            "alice",
            "@example.com",
            "alice@",
            "a/b@example.com",
            "../x@example.com",
            ".alice@example.com",
            "alice.@example.com",
            "al..ice@example.com",
            '"a b"@example.com',
            "a b@example.com",
            "a:b@example.com",
            "a@b@example.com",
            "älice@example.com",
            "alice@exa_mple.com",
            "alice@-example.com",
            "alice@example..com",
            "alice@example.com.",
            "x" * 65 + "@example.com",
            "",
        ]:
            self.assertRaises(AddressError, checkAddress, text)


class ParseTests(SynchronousTestCase):
    """
    L{parseUsers}: lines to entries, errors naming the line.
    """

    def test_sample(self) -> None:
        """
        Comments and blank lines are skipped, addresses lower-cased, the
        fields after the password kept, extra fields with colons in one
        piece.
        """
        users = parseUsers(SAMPLE, "users")
        self.assertEqual(list(users), ["alice@example.com", "bob@example.com", "carol@example.org"])
        self.assertEqual(users["alice@example.com"], UserEntry("alice@example.com", ALICE))
        bob = users["bob@example.com"]
        self.assertEqual(bob.password, BOB)
        self.assertEqual(
            bob.fields,
            (
                "1000",
                "1000",
                "Bob Smith",
                "/home/bob",
                "/bin/false",
                "userdb_mail=maildir:~/Mail quota=1G",
            ),
        )
        self.assertEqual(bob.extraFields, {"userdb_mail": "maildir:~/Mail", "quota": "1G"})
        self.assertEqual(users["carol@example.org"].fields, ("",) * 6)
        self.assertEqual(users["carol@example.org"].extraFields, {})
        self.assertEqual(users["alice@example.com"].extraFields, {})

    def test_lineEndings(self) -> None:
        """
        CRLF line ends and surrounding spaces do not end up in values; a
        missing final newline is fine.
        """
        users = parseUsers(f"  alice@example.com:{ALICE}  \r\n\r\nbob@example.com:{BOB}", "users")
        self.assertEqual(users["alice@example.com"].password, ALICE)
        self.assertEqual(users["bob@example.com"].password, BOB)

    def test_empty(self) -> None:
        self.assertEqual(parseUsers("", "users"), {})
        self.assertEqual(parseUsers("# nobody\n\n", "users"), {})

    def test_errors(self) -> None:
        """
        A line without a password field, with a bad address, or a second
        definition: a L{ConfigError} naming the file, the line and what is
        wrong.
        """
        cases = [
            (f"alice@example.com:{ALICE}\nbob@example.com\n", "line 2", "expected address:{SCHEME}hash"),
            (f"# c\n\nalice:{ALICE}\n", "line 3", "'alice'"),
            (f"a/b@example.com:{ALICE}\n", "line 1", "'a/b@example.com'"),
            (f".a@example.com:{ALICE}\n", "line 1", "'.a@example.com'"),
            (
                f"alice@example.com:{ALICE}\n# x\nALICE@example.com:{BOB}\n",
                "line 3",
                "alice@example.com is already defined on line 1",
            ),
        ]
        for text, key, problem in cases:
            error = self.assertRaises(ConfigError, parseUsers, text, "/data/users")
            self.assertEqual((error.source, error.key), ("/data/users", key), text)
            self.assertIn(problem, error.problem)
            self.assertEqual(len(str(error).splitlines()), 1)
            self.assertTrue(str(error).startswith(f"/data/users: {key}: "))

    def test_line(self) -> None:
        """
        L{UserEntry.line} writes what L{parseUsers} reads, and refuses
        what would break the line apart.
        """
        for entry in parseUsers(SAMPLE, "users").values():
            self.assertEqual(parseUsers(entry.line(), "users")[entry.address], entry)
        for bad in [
            UserEntry("a@example.com", "x\ny"),
            UserEntry("a@example.com", "x:y"),
            UserEntry("a@example.com", "x", ("1:2",)),
            UserEntry("a@example.com", "x", ("",) * 7),
            UserEntry("a@example.com", "x", ("",) * 5 + ("k=v\r",)),
        ]:
            self.assertRaises(ValueError, bad.line)


class UserFileTests(SynchronousTestCase):
    """
    L{UserFile}: lookups that follow edits of the file.
    """

    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "users")
        self.events: list[dict] = []
        self.users = UserFile(self.path)
        self.users.log = Logger(observer=self.events.append)
        self.reads = 0
        realRead = userfile._readText

        def countingRead(path: str):  # type: ignore[no-untyped-def]
            self.reads += 1
            return realRead(path)

        self.patch(userfile, "_readText", countingRead)

    def write(self, text: str) -> None:
        """
        Write the file in place (same inode), making sure its time moves on.
        """
        before = os.stat(self.path).st_mtime_ns if os.path.exists(self.path) else 0
        with open(self.path, "w", encoding="utf-8") as f:
            f.write(text)
        os.utime(self.path, ns=(before + 10**9, before + 10**9))

    def errors(self) -> list[dict]:
        return [e for e in self.events if e["log_level"].name == "error"]

    def test_missing(self) -> None:
        """
        No file: no users.
        """
        self.assertIsNone(self.users.lookup("alice@example.com"))
        self.assertEqual(self.users.addresses(), ())

    def test_lookup(self) -> None:
        """
        Entries by address, in any case; addresses sorted.
        """
        self.write(SAMPLE)
        self.assertEqual(self.users.lookup("ALICE@example.com"), UserEntry("alice@example.com", ALICE))
        self.assertEqual(self.users.lookup("bob@example.com").password, BOB)  # type: ignore[union-attr]
        self.assertIsNone(self.users.lookup("dave@example.com"))
        self.assertEqual(
            self.users.addresses(), ("alice@example.com", "bob@example.com", "carol@example.org")
        )

    def test_readOnce(self) -> None:
        """
        An unchanged file is not read again.
        """
        self.write(SAMPLE)
        for _ in range(5):
            self.users.lookup("alice@example.com")
        self.users.addresses()
        self.assertEqual(self.reads, 1)

    def test_reloadInPlace(self) -> None:
        """
        A file rewritten in place (an editor) is read again.
        """
        self.write(f"alice@example.com:{ALICE}\n")
        self.assertIsNotNone(self.users.lookup("alice@example.com"))
        self.write(f"bob@example.com:{BOB}\n")
        self.assertIsNone(self.users.lookup("alice@example.com"))
        self.assertEqual(self.users.lookup("bob@example.com").password, BOB)  # type: ignore[union-attr]

    def test_reloadSameSizeAndTime(self) -> None:
        """
        A file replaced by another of the same size and time (a rename, as
        L{writeUsers} does) is noticed by its inode.
        """
        self.write(f"alice@example.com:{ALICE}\n")
        self.users.lookup("alice@example.com")
        info = os.stat(self.path)
        other = os.path.join(self.directory, "other")
        with open(other, "w") as f:
            f.write(f"alicf@example.com:{ALICE}\n")
        os.utime(other, ns=(info.st_atime_ns, info.st_mtime_ns))
        os.rename(other, self.path)
        self.assertIsNone(self.users.lookup("alice@example.com"))
        self.assertIsNotNone(self.users.lookup("alicf@example.com"))

    def test_malformedChange(self) -> None:
        """
        A change that makes the file malformed is not used: the last good
        users stay, the error is logged once (naming the line), and a
        later good change is taken.
        """
        self.write(f"alice@example.com:{ALICE}\n")
        self.assertIsNotNone(self.users.lookup("alice@example.com"))
        self.write(f"alice@example.com:{ALICE}\nbroken line\n")
        self.assertIsNotNone(self.users.lookup("alice@example.com"))
        self.assertIsNotNone(self.users.lookup("alice@example.com"))
        errors = self.errors()
        self.assertEqual(len(errors), 1)
        self.assertEqual(errors[0]["count"], 1)
        self.assertIn(f"{self.path}: line 2: ", errors[0]["error"])
        self.write(f"bob@example.com:{BOB}\n")
        self.assertIsNone(self.users.lookup("alice@example.com"))
        self.assertIsNotNone(self.users.lookup("bob@example.com"))
        self.assertEqual(len(self.errors()), 1)

    def test_malformedAtStart(self) -> None:
        """
        A file malformed from the start: no users, and the error logged.
        """
        self.write("broken\n")
        self.assertIsNone(self.users.lookup("broken"))
        self.assertEqual(len(self.errors()), 1)

    def test_notUTF8(self) -> None:
        """
        Bytes that are not UTF-8 are an error naming their line.
        """
        self.write(f"alice@example.com:{ALICE}\n")
        self.users.lookup("alice@example.com")
        with open(self.path, "ab") as f:
            f.write(b"# caf\xe9\n")
        os.utime(self.path, ns=(1, 1))
        self.assertIsNotNone(self.users.lookup("alice@example.com"))
        self.assertIn("line 2: not valid UTF-8", self.errors()[0]["error"])

    def test_unreadable(self) -> None:
        """
        A file that cannot be read keeps the last good users.
        """
        self.write(f"alice@example.com:{ALICE}\n")
        self.users.lookup("alice@example.com")
        self.write(f"bob@example.com:{BOB}\n")

        def fail(path: str) -> None:
            raise ConfigError(path, None, "cannot read: Permission denied")

        self.patch(userfile, "_readText", fail)
        self.assertIsNotNone(self.users.lookup("alice@example.com"))
        self.assertIn("Permission denied", self.errors()[0]["error"])

    def test_removed(self) -> None:
        """
        A file that goes away: no users any more.
        """
        self.write(f"alice@example.com:{ALICE}\n")
        self.assertIsNotNone(self.users.lookup("alice@example.com"))
        os.remove(self.path)
        self.assertIsNone(self.users.lookup("alice@example.com"))
        self.write(f"alice@example.com:{ALICE}\n")
        self.assertIsNotNone(self.users.lookup("alice@example.com"))

    def test_unusablePasswordLogged(self) -> None:
        """
        A user whose password can never verify ({PLAIN}) is loaded, and a
        warning says why, without the password.
        """
        self.write("alice@example.com:{PLAIN}hunter2\n")
        self.assertIsNotNone(self.users.lookup("alice@example.com"))
        warnings = [e for e in self.events if e["log_level"].name == "warn"]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["address"], "alice@example.com")
        self.assertIn("refused", warnings[0]["reason"])
        self.assertNotIn("hunter2", repr(self.events))


class _FailingFS(FileSystem):
    """
    Fails the named step with C{ENOSPC}; records the steps taken.
    """

    def __init__(self, failAt: str | None = None) -> None:
        self.failAt = failAt
        self.steps: list[str] = []

    def _step(self, name: str) -> None:
        self.steps.append(name)
        if name == self.failAt:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def openExclusive(self, path: str, mode: int = 0o600) -> int:
        self._step("open")
        return super().openExclusive(path, mode)

    def write(self, fd: int, data: bytes | memoryview) -> None:
        self._step("write")
        super().write(fd, data)

    def fsync(self, fd: int) -> None:
        self._step("fsync")
        super().fsync(fd)

    def close(self, fd: int) -> None:
        self._step("close")
        super().close(fd)

    def rename(self, source: str, target: str) -> None:
        self._step("rename")
        super().rename(source, target)

    def fsyncDirectory(self, path: str) -> None:
        self._step("fsyncDirectory")
        super().fsyncDirectory(path)


class WriteUsersTests(SynchronousTestCase):
    """
    L{writeUsers}: atomic, private, and kind to an operator's comments.
    """

    def setUp(self) -> None:
        self.directory = self.mktemp()
        os.makedirs(self.directory)
        self.path = os.path.join(self.directory, "users")

    def read(self) -> str:
        with open(self.path, encoding="utf-8") as f:
            return f.read()

    def writeText(self, text: str) -> None:
        with open(self.path, "w", encoding="utf-8") as f:
            f.write(text)

    def assertNoLeftovers(self) -> None:
        self.assertEqual(os.listdir(self.directory), ["users"] if os.path.exists(self.path) else [])

    def test_new(self) -> None:
        """
        A new file: one line per entry in order, mode 0600, and the steps
        of an atomic replacement in order.
        """
        fs = _FailingFS()
        writeUsers(
            self.path,
            [UserEntry("bob@example.com", BOB), UserEntry("alice@example.com", ALICE, ("", "", "Alice"))],
            fs,
        )
        self.assertEqual(
            self.read(), f"bob@example.com:{BOB}\nalice@example.com:{ALICE}:::Alice\n"
        )
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)
        self.assertEqual(fs.steps, ["open", "write", "fsync", "close", "rename", "fsyncDirectory"])
        self.assertNoLeftovers()

    def test_empty(self) -> None:
        """
        No users: an empty file.
        """
        writeUsers(self.path, [])
        self.assertEqual(self.read(), "")

    def test_modeTightened(self) -> None:
        """
        A file that was readable by others is replaced by a 0600 one.
        """
        self.writeText(f"alice@example.com:{ALICE}\n")
        os.chmod(self.path, 0o644)
        writeUsers(self.path, [UserEntry("alice@example.com", BOB)])
        self.assertEqual(stat.S_IMODE(os.stat(self.path).st_mode), 0o600)

    def test_keepsLayout(self) -> None:
        """
        Comments and blank lines stay where they were; an unchanged line
        is kept as written; a changed user is changed in place; a removed
        user's line goes; new users come at the end.
        """
        self.writeText(SAMPLE)
        users = parseUsers(SAMPLE, self.path)
        users["carol@example.org"] = UserEntry("carol@example.org", ALICE, ("", "", "Carol"))
        del users["alice@example.com"]
        users["dave@example.org"] = UserEntry("dave@example.org", BOB)
        writeUsers(self.path, users.values())
        self.assertEqual(
            self.read(),
            f"""\
# mailhub users
#

  # Bob, imported from Dovecot
Bob@Example.COM:{BOB}:1000:1000:Bob Smith:/home/bob:/bin/false:userdb_mail=maildir:~/Mail quota=1G
carol@example.org:{ALICE}:::Carol
dave@example.org:{BOB}
""",
        )
        self.assertEqual(readUsers(self.path), users)

    def test_unchanged(self) -> None:
        """
        Writing back what was read changes nothing but a missing final
        newline.
        """
        self.writeText(SAMPLE)
        writeUsers(self.path, parseUsers(SAMPLE, self.path).values())
        self.assertEqual(self.read(), SAMPLE)
        self.writeText(SAMPLE.rstrip("\n"))
        writeUsers(self.path, parseUsers(SAMPLE, self.path).values())
        self.assertEqual(self.read(), SAMPLE)

    def test_malformedExisting(self) -> None:
        """
        A malformed file is not overwritten: the error names its line.
        """
        self.writeText("# users\nbroken\n")
        error = self.assertRaises(
            ConfigError, writeUsers, self.path, [UserEntry("alice@example.com", ALICE)]
        )
        self.assertEqual(error.key, "line 2")
        self.assertEqual(self.read(), "# users\nbroken\n")
        self.assertNoLeftovers()

    def test_badEntries(self) -> None:
        """
        Entries that cannot be written are refused before anything is.
        """
        self.writeText(SAMPLE)
        for entries, exception in [
            ([UserEntry("Alice@example.com", ALICE)], ValueError),
            ([UserEntry("a/b@example.com", ALICE)], AddressError),
            ([UserEntry("a@example.com", ALICE), UserEntry("a@example.com", BOB)], ValueError),
            ([UserEntry("a@example.com", "x\nevil@example.com:{PLAIN}x")], ValueError),
        ]:
            self.assertRaises(exception, writeUsers, self.path, entries)
        self.assertEqual(self.read(), SAMPLE)
        self.assertNoLeftovers()

    def test_failure(self) -> None:
        """
        A failure at any step before the rename leaves the old file as it
        was and no temporary file behind.
        """
        self.writeText(SAMPLE)
        for step in ("write", "fsync", "close", "rename"):
            fs = _FailingFS(step)
            error = self.assertRaises(
                OSError, writeUsers, self.path, [UserEntry("alice@example.com", BOB)], fs
            )
            self.assertEqual(error.errno, errno.ENOSPC)
            self.assertEqual(self.read(), SAMPLE, step)
            self.assertNoLeftovers()

    def test_directoryFsyncFailure(self) -> None:
        """
        A failing directory fsync is reported: the change may not survive
        a crash.
        """
        fs = _FailingFS("fsyncDirectory")
        self.assertRaises(OSError, writeUsers, self.path, [UserEntry("alice@example.com", BOB)], fs)
        self.assertNoLeftovers()
