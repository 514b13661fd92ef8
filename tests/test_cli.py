"""
Tests for L{mailhub.cli}: the C{mailhub} command, run in-process with
injected streams (the terminal is never touched).
"""

from __future__ import annotations

import io
import os
import stat

from argon2 import PasswordHasher, Type
from twisted.trial.unittest import SynchronousTestCase

from mailhub.auth import passwords
from mailhub.auth.passwords import verifyPassword
from mailhub.auth.userfile import readUsers
from mailhub.cli import main

CONFIG = """\
hostname = "mx.example.com"
domains = ["example.com", "example.org"]
data = {data}

[aliases]
info = "alice"
"""


class CLITestCase(SynchronousTestCase):
    """
    A configuration with two domains, a data directory, cheap hashes.
    """

    def setUp(self) -> None:
        self.patch(
            passwords,
            "HASHER",
            PasswordHasher(time_cost=1, memory_cost=8, parallelism=1, type=Type.ID),
        )
        self.directory = os.path.abspath(self.mktemp())
        os.makedirs(self.directory)
        self.data = os.path.join(self.directory, "data")
        self.users = os.path.join(self.data, "users")
        self.config = os.path.join(self.directory, "mailhub.toml")
        with open(self.config, "w") as f:
            f.write(CONFIG.format(data=f'"{self.data}"'))
        self.prompts: list[str] = []
        self.answers: list[str | BaseException] = []

    def prependConfig(self, text: str) -> None:
        with open(self.config) as f:
            rest = f.read()
        with open(self.config, "w") as f:
            f.write(text + rest)

    def getpass(self, prompt: str) -> str:
        """
        Stands in for L{getpass.getpass}: answers from C{self.answers}.
        """
        self.prompts.append(prompt)
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def run_(self, *arguments: str, stdin: str = "") -> tuple[int, str, str]:
        """
        Run C{mailhub ARGUMENTS --config FILE}; return the status, stdout
        and stderr.
        """
        out, err = io.StringIO(), io.StringIO()
        status = main(
            [*arguments, "--config", self.config],
            out,
            err,
            stdin=io.StringIO(stdin),
            getpass=self.getpass,
        )
        return status, out.getvalue(), err.getvalue()

    def add(self, address: str, password: str = "secret") -> None:
        status, out, err = self.run_("user", "add", address, "--password-stdin", stdin=password + "\n")
        self.assertEqual((status, err), (0, ""))

    def maildir(self, domain: str, local: str) -> str:
        return os.path.join(self.data, "mail", domain, local)

    def usersText(self) -> str | None:
        if not os.path.exists(self.users):
            return None
        with open(self.users) as f:
            return f.read()

    def assertError(self, result: tuple[int, str, str], *fragments: str) -> None:
        """
        Status 1, nothing on stdout, one line on stderr holding each of
        C{fragments}.
        """
        status, out, err = result
        self.assertEqual((status, out), (1, ""), err)
        self.assertEqual(len(err.splitlines()), 1, err)
        self.assertTrue(err.startswith("mailhub: ") and err.endswith("\n"), err)
        for fragment in fragments:
            self.assertIn(fragment, err)

    def password(self, address: str) -> str:
        return readUsers(self.users)[address].password


class UserAddTests(CLITestCase):
    """
    C{mailhub user add ADDRESS}.
    """

    def test_passwordStdin(self) -> None:
        """
        With C{--password-stdin}: one line is the password (spaces kept,
        the line end not), the user is appended with an Argon2id hash, the
        Maildir is made, and stdout says so.
        """
        status, out, err = self.run_(
            "user", "add", "Alice@Example.com", "--password-stdin", stdin=" pass word \nnext\n"
        )
        self.assertEqual((status, err), (0, ""))
        self.assertIn("alice@example.com", out)
        users = readUsers(self.users)
        self.assertEqual(list(users), ["alice@example.com"])
        stored = users["alice@example.com"].password
        self.assertTrue(stored.startswith("{ARGON2ID}$argon2id$v=19$"))
        self.assertTrue(verifyPassword(stored, " pass word "))
        self.assertEqual(stat.S_IMODE(os.stat(self.users).st_mode), 0o600)
        for sub in ("cur", "new", "tmp"):
            self.assertTrue(os.path.isdir(os.path.join(self.maildir("example.com", "alice"), sub)))
        self.assertEqual(self.prompts, [])

    def test_crlf(self) -> None:
        """
        A CRLF line end is not part of the password; a last line without
        one is the whole password.
        """
        self.run_("user", "add", "a@example.com", "--password-stdin", stdin="one\r\n")
        self.assertTrue(verifyPassword(self.password("a@example.com"), "one"))
        self.run_("user", "add", "b@example.com", "--password-stdin", stdin="two")
        self.assertTrue(verifyPassword(self.password("b@example.com"), "two"))

    def test_prompt(self) -> None:
        """
        Without C{--password-stdin} the password is asked for twice.
        """
        self.answers = ["secret", "secret"]
        status, out, err = self.run_("user", "add", "alice@example.org")
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(len(self.prompts), 2)
        self.assertIn("alice@example.org", self.prompts[0])
        self.assertTrue(verifyPassword(self.password("alice@example.org"), "secret"))

    def test_promptMismatch(self) -> None:
        """
        Two different answers: an error, and nothing is made.
        """
        self.answers = ["secret", "secreT"]
        self.assertError(self.run_("user", "add", "alice@example.com"), "do not match")
        self.assertIsNone(self.usersText())
        self.assertFalse(os.path.exists(self.maildir("example.com", "alice")))

    def test_promptEmpty(self) -> None:
        """
        An empty answer is refused at once.
        """
        self.answers = [""]
        self.assertError(self.run_("user", "add", "alice@example.com"), "empty password")
        self.assertEqual(len(self.prompts), 1)
        self.assertIsNone(self.usersText())

    def test_promptEOF(self) -> None:
        """
        End of input (or Control-C) at the prompt: an error line, no
        traceback.
        """
        for interruption in (EOFError(), KeyboardInterrupt()):
            self.answers = [interruption]
            self.assertError(self.run_("user", "add", "alice@example.com"), "no password")
        self.assertIsNone(self.usersText())

    def test_stdinEmpty(self) -> None:
        """
        An empty line, or nothing at all, on standard input is refused.
        """
        for stdin in ("\n", "", "\r\n"):
            self.assertError(
                self.run_("user", "add", "alice@example.com", "--password-stdin", stdin=stdin),
                "empty password",
            )
        self.assertIsNone(self.usersText())
        self.assertFalse(os.path.exists(self.data))

    def test_foreignDomain(self) -> None:
        """
        A domain that is not local is refused, naming the local ones.
        """
        self.assertError(
            self.run_("user", "add", "alice@example.net", "--password-stdin", stdin="x\n"),
            "example.net is not one of the local domains",
            "example.com, example.org",
        )
        self.assertIsNone(self.usersText())

    def test_badAddress(self) -> None:
        """
        Addresses that cannot name a Maildir are refused.
        """
        for address in ("alice", "../alice@example.com", "a/b@example.com", ".a@example.com", "a b@example.com"):
            self.assertError(
                self.run_("user", "add", address, "--password-stdin", stdin="x\n"), repr(address)
            )
        self.assertIsNone(self.usersText())
        self.assertFalse(os.path.exists(os.path.join(self.data, "mail")))

    def test_existing(self) -> None:
        """
        An existing user (in any case) is refused before a password is
        asked for, and is left alone.
        """
        self.add("alice@example.com")
        before = self.usersText()
        self.assertError(self.run_("user", "add", "ALICE@example.com"), "alice@example.com already exists")
        self.assertEqual(self.prompts, [])
        self.assertEqual(self.usersText(), before)

    def test_alias(self) -> None:
        """
        An address the configuration makes an alias is refused: mail to it
        would never reach the mailbox.
        """
        self.assertError(
            self.run_("user", "add", "info@example.org", "--password-stdin", stdin="x\n"),
            "info@example.org is an alias",
        )

    def test_malformedUsersFile(self) -> None:
        """
        A users file that is malformed is not touched; the error names
        its line.
        """
        os.makedirs(self.data)
        with open(self.users, "w") as f:
            f.write("# users\nbroken\n")
        self.assertError(
            self.run_("user", "add", "alice@example.com", "--password-stdin", stdin="x\n"),
            f"{self.users}: line 2: ",
        )
        self.assertEqual(self.usersText(), "# users\nbroken\n")
        self.assertFalse(os.path.exists(self.maildir("example.com", "alice")))

    def test_badConfiguration(self) -> None:
        """
        A configuration that does not load: its one-line error.
        """
        self.prependConfig("bogus = 1\n")
        self.assertError(
            self.run_("user", "add", "alice@example.com", "--password-stdin", stdin="x\n"),
            self.config,
            "bogus",
        )

    def test_keepsComments(self) -> None:
        """
        A new user goes at the end; the operator's lines stay.
        """
        self.add("alice@example.com")
        with open(self.users) as f:
            first = f.read()
        with open(self.users, "w") as f:
            f.write("# our users\n" + first)
        self.add("bob@example.com")
        lines = self.usersText().splitlines()  # type: ignore[union-attr]
        self.assertEqual(lines[0], "# our users")
        self.assertEqual(lines[1], first.rstrip("\n"))
        self.assertTrue(lines[2].startswith("bob@example.com:{ARGON2ID}"))

    def test_existingMaildir(self) -> None:
        """
        A Maildir kept from before is used as it is, mail and all.
        """
        maildir = self.maildir("example.com", "alice")
        os.makedirs(os.path.join(maildir, "cur"))
        with open(os.path.join(maildir, "cur", "1.msg:2,S"), "w") as f:
            f.write("Subject: old\n\nmail\n")
        status, out, err = self.run_("user", "add", "alice@example.com", "--password-stdin", stdin="x\n")
        self.assertEqual((status, err), (0, ""))
        self.assertIn("kept", out)
        self.assertEqual(os.listdir(os.path.join(maildir, "cur")), ["1.msg:2,S"])
        self.assertTrue(os.path.isdir(os.path.join(maildir, "new")))

    def test_writeFails(self) -> None:
        """
        When the users file cannot be written, the error says so and the
        Maildir just made is taken back (mail would be accepted for it).
        """
        from mailhub import cli

        def fail(path: str, entries: object) -> None:
            raise OSError(28, "No space left on device")

        self.patch(cli, "writeUsers", fail)
        self.assertError(
            self.run_("user", "add", "alice@example.com", "--password-stdin", stdin="x\n"),
            f"cannot write {self.users}: No space left on device",
        )
        self.assertFalse(os.path.exists(os.path.join(self.data, "mail")))
        self.assertIsNone(self.usersText())

    def test_dataNotWritable(self) -> None:
        """
        A data directory that cannot be made: one line naming it.
        """
        blocker = os.path.join(self.directory, "file")
        with open(blocker, "w"):
            pass
        self.prependConfig(f'data = "{blocker}/data"\n')
        with open(self.config) as f:
            text = f.read()
        with open(self.config, "w") as f:
            f.write(text.replace(f'data = "{self.data}"\n', ""))
        self.assertError(
            self.run_("user", "add", "alice@example.com", "--password-stdin", stdin="x\n"),
            blocker,
        )

    def test_embeddedConfiguration(self) -> None:
        """
        Without C{--config}, C{--data} with the embedded default: the
        domain is C{localhost}.
        """
        out, err = io.StringIO(), io.StringIO()
        data = os.path.join(self.directory, "other")
        status = main(
            ["user", "add", "bob@localhost", "--password-stdin", "--data", data],
            out,
            err,
            stdin=io.StringIO("pw\n"),
        )
        self.assertEqual((status, err.getvalue()), (0, ""))
        self.assertEqual(list(readUsers(os.path.join(data, "users"))), ["bob@localhost"])
        self.assertTrue(os.path.isdir(os.path.join(data, "mail", "localhost", "bob", "new")))


class UserPasswdTests(CLITestCase):
    """
    C{mailhub user passwd ADDRESS}.
    """

    def test_change(self) -> None:
        """
        The user's hash is replaced; the old password no longer verifies;
        the other users, the other fields and the comments are kept.
        """
        self.add("alice@example.com", "old")
        self.add("bob@example.com", "bob's")
        text = self.usersText()
        aliceLine = text.splitlines()[0]  # type: ignore[union-attr]
        with open(self.users, "w") as f:
            f.write(f"# staff\n{aliceLine}:::Alice:::quota=1G\n" + text.splitlines()[1] + "\n")  # type: ignore[union-attr]
        bobBefore = self.password("bob@example.com")
        status, out, err = self.run_(
            "user", "passwd", "Alice@example.com", "--password-stdin", stdin="new\n"
        )
        self.assertEqual((status, err), (0, ""))
        self.assertIn("alice@example.com", out)
        alice = readUsers(self.users)["alice@example.com"]
        self.assertTrue(verifyPassword(alice.password, "new"))
        self.assertFalse(verifyPassword(alice.password, "old"))
        self.assertEqual(alice.fields, ("", "", "Alice", "", "", "quota=1G"))
        self.assertEqual(self.password("bob@example.com"), bobBefore)
        self.assertTrue(self.usersText().startswith("# staff\nalice@example.com:"))  # type: ignore[union-attr]

    def test_prompt(self) -> None:
        """
        Asked twice on the terminal; a mismatch changes nothing.
        """
        self.add("alice@example.com", "old")
        before = self.usersText()
        self.answers = ["new", "new!"]
        self.assertError(self.run_("user", "passwd", "alice@example.com"), "do not match")
        self.assertEqual(self.usersText(), before)
        self.answers = ["new", "new"]
        self.assertEqual(self.run_("user", "passwd", "alice@example.com")[0], 0)
        self.assertTrue(verifyPassword(self.password("alice@example.com"), "new"))

    def test_unknown(self) -> None:
        """
        An unknown user is an error, before a password is asked for.
        """
        self.add("alice@example.com")
        before = self.usersText()
        self.assertError(self.run_("user", "passwd", "bob@example.com"), "no such user: bob@example.com")
        self.assertEqual(self.prompts, [])
        self.assertEqual(self.usersText(), before)

    def test_noUsersFile(self) -> None:
        """
        No users file at all: unknown user.
        """
        self.assertError(self.run_("user", "passwd", "bob@example.com"), "no such user")

    def test_empty(self) -> None:
        """
        An empty new password is refused.
        """
        self.add("alice@example.com", "old")
        self.assertError(
            self.run_("user", "passwd", "alice@example.com", "--password-stdin", stdin="\n"),
            "empty password",
        )
        self.assertTrue(verifyPassword(self.password("alice@example.com"), "old"))

    def test_badAddress(self) -> None:
        self.assertError(self.run_("user", "passwd", "nobody"), "'nobody'")


class UserDelTests(CLITestCase):
    """
    C{mailhub user del ADDRESS [--purge]}.
    """

    def setUp(self) -> None:
        super().setUp()
        self.add("alice@example.com")
        self.add("bob@example.com")
        with open(self.users) as f:
            text = f.read()
        with open(self.users, "w") as f:
            f.write("# staff\n" + text)
        self.aliceMaildir = self.maildir("example.com", "alice")
        with open(os.path.join(self.aliceMaildir, "new", "1.msg"), "w") as f:
            f.write("Subject: hi\n\nmail\n")

    def test_keepMaildir(self) -> None:
        """
        The user's line goes; the comment, the other user and the Maildir
        with its mail stay.
        """
        status, out, err = self.run_("user", "del", "ALICE@example.com")
        self.assertEqual((status, err), (0, ""))
        self.assertIn("kept", out)
        self.assertEqual(list(readUsers(self.users)), ["bob@example.com"])
        self.assertTrue(self.usersText().startswith("# staff\nbob@example.com:"))  # type: ignore[union-attr]
        self.assertEqual(os.listdir(os.path.join(self.aliceMaildir, "new")), ["1.msg"])

    def test_purge(self) -> None:
        """
        With C{--purge} the Maildir goes too, and only that one.
        """
        status, out, err = self.run_("user", "del", "alice@example.com", "--purge")
        self.assertEqual((status, err), (0, ""))
        self.assertFalse(os.path.exists(self.aliceMaildir))
        self.assertTrue(os.path.isdir(self.maildir("example.com", "bob")))
        self.assertEqual(list(readUsers(self.users)), ["bob@example.com"])

    def test_purgeNoMaildir(self) -> None:
        """
        Purging a user whose Maildir is already gone is fine.
        """
        import shutil

        shutil.rmtree(self.aliceMaildir)
        status, out, err = self.run_("user", "del", "alice@example.com", "--purge")
        self.assertEqual((status, err), (0, ""))

    def test_unknown(self) -> None:
        """
        An unknown user is an error; nothing changes, not even with
        C{--purge} and a Maildir of that name.
        """
        before = self.usersText()
        os.makedirs(os.path.join(self.maildir("example.com", "carol"), "new"))
        self.assertError(
            self.run_("user", "del", "carol@example.com", "--purge"), "no such user: carol@example.com"
        )
        self.assertEqual(self.usersText(), before)
        self.assertTrue(os.path.isdir(self.maildir("example.com", "carol")))

    def test_badAddress(self) -> None:
        """
        An address that could reach outside DATA/mail is refused before
        anything is removed.
        """
        self.assertError(self.run_("user", "del", "../../x@example.com", "--purge"), "not a")
        self.assertTrue(os.path.isdir(self.aliceMaildir))


class UserListTests(CLITestCase):
    """
    C{mailhub user list}.
    """

    def test_sorted(self) -> None:
        """
        One address a line, sorted, whatever the order of the file.
        """
        for address in ("carol@example.org", "alice@example.com", "bob@example.com"):
            self.add(address)
        status, out, err = self.run_("user", "list")
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(out, "alice@example.com\nbob@example.com\ncarol@example.org\n")

    def test_none(self) -> None:
        """
        No users file: nothing printed, success.
        """
        self.assertEqual(self.run_("user", "list"), (0, "", ""))

    def test_malformed(self) -> None:
        """
        A malformed users file: its error.
        """
        os.makedirs(self.data)
        with open(self.users, "w") as f:
            f.write("broken\n")
        self.assertError(self.run_("user", "list"), "line 1")


class UsageTests(CLITestCase):
    """
    Usage errors go to the given stderr, with status 2.
    """

    def test_noSubcommand(self) -> None:
        out, err = io.StringIO(), io.StringIO()
        self.assertEqual(main(["user"], out, err), 2)
        self.assertIn("usage: mailhub user", err.getvalue())
        self.assertEqual(out.getvalue(), "")

    def test_noAddress(self) -> None:
        out, err = io.StringIO(), io.StringIO()
        self.assertEqual(main(["user", "add"], out, err), 2)
        self.assertIn("ADDRESS", err.getvalue())

    def test_noCommand(self) -> None:
        out, err = io.StringIO(), io.StringIO()
        self.assertEqual(main([], out, err), 2)
        self.assertIn("check-config", err.getvalue())
        self.assertIn("user", err.getvalue())

    def test_version(self) -> None:
        out, err = io.StringIO(), io.StringIO()
        self.assertEqual(main(["--version"], out, err), 0)
        self.assertTrue(out.getvalue().startswith("mailhub "))


class CheckConfigTests(CLITestCase):
    """
    C{mailhub check-config} still works as before.
    """

    def test_valid(self) -> None:
        """
        The configuration is described on stdout, status 0, nothing made.
        """
        out, err = io.StringIO(), io.StringIO()
        status = main(["check-config", "--config", self.config], out, err)
        self.assertEqual((status, err.getvalue()), (0, ""))
        self.assertIn("domains:       example.com, example.org\n", out.getvalue())
        self.assertIn("info@example.com -> alice@example.com", out.getvalue())
        self.assertFalse(os.path.exists(self.data))

    def test_invalid(self) -> None:
        """
        A bad key: one line on stderr naming it, status 1.
        """
        self.prependConfig("bogus = 1\n")
        out, err = io.StringIO(), io.StringIO()
        status = main(["check-config", "--config", self.config], out, err)
        self.assertEqual((status, out.getvalue()), (1, ""))
        self.assertEqual(err.getvalue(), f"mailhub: {self.config}: bogus: unknown key\n")


class QueueCommandTests(CLITestCase):
    """
    C{mailhub queue list|show|flush|delete}, with a fixed clock.
    """

    NOW = 1_700_000_000.0

    def setUp(self) -> None:
        super().setUp()
        from twisted.internet.task import Clock

        from mailhub.relay.queue import Queue

        self.clock = Clock()
        self.clock.advance(self.NOW)
        self.queueDir = os.path.join(self.data, "queue")
        self.queue = Queue(self.queueDir, clock=self.clock)
        self.killed: list[tuple[int, int]] = []

    def enqueue(self, queueId: str, **changes: object) -> None:
        from attrs import evolve

        from mailhub.relay.values import QueuedRecipient, QueueEntry

        entry = QueueEntry(
            id=queueId,
            sender="alice@example.com",
            recipients=(
                QueuedRecipient("bob@example.net", "pending", "451 4.7.1 greylisted", "mx.example.net"),
                QueuedRecipient("carol@example.org", "sent", "250 2.0.0 ok", "mx.example.org"),
            ),
            created=self.NOW - 300,
            nextAttempt=self.NOW + 240,
            attempts=2,
            lastError="451 4.7.1 greylisted",
        )
        self.queue.add(
            evolve(entry, **changes),
            b"Received: from x by mx.example.com\r\n"
            b"Subject: hello \x1b[31mred\r\n"
            b" folded\r\n"
            b"\r\n"
            b"Body: not a header\r\n",
        )

    def queueRun(self, *arguments: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        status = main(
            ["queue", *arguments, "--config", self.config], out, err, clock=self.clock
        )
        return status, out.getvalue(), err.getvalue()

    def fakeServer(self, pid: int = 4242) -> None:
        from mailhub.relay import queue as queueModule

        os.makedirs(self.data, exist_ok=True)
        with open(os.path.join(self.data, "mailhub.pid"), "w") as f:
            f.write(f"{pid}\n")
        self.patch(os, "kill", lambda pid, sig: self.killed.append((pid, sig)))
        self.patch(queueModule, "_commandLine", lambda pid: b"twistd\x00mailhub\x00")

    def test_listEmpty(self) -> None:
        """
        No queue directory at all is an empty queue.
        """
        self.assertEqual(self.queueRun("list"), (0, "queue is empty\n", ""))

    def test_list(self) -> None:
        """
        One line per entry: id, age, sender, recipients with state, next
        attempt, last error; then a count.
        """
        self.enqueue("00000000000001")
        self.enqueue(
            "00000000000002",
            sender="",
            created=self.NOW - 3 * 86400,
            nextAttempt=self.NOW - 1,
            lastError="",
        )
        status, out, err = self.queueRun("list")
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(
            out.splitlines(),
            [
                "00000000000001  5m  <alice@example.com>  bob@example.net (pending),"
                " carol@example.org (sent)  in 4m  451 4.7.1 greylisted",
                "00000000000002  3d  <>  bob@example.net (pending),"
                " carol@example.org (sent)  due",
                "2 entries, 2 recipients pending",
            ],
        )

    def test_listCorrupt(self) -> None:
        """
        An unreadable record is set aside, and the listing says so.
        """
        self.enqueue("00000000000001")
        with open(os.path.join(self.queueDir, "00000000000002.env"), "w") as f:
            f.write("{}")
        status, out, err = self.queueRun("list")
        self.assertEqual((status, err), (0, ""))
        lines = out.splitlines()
        self.assertEqual(lines[1], "1 entry, 1 recipient pending")
        self.assertEqual(
            lines[2], f"1 unreadable record set aside in {os.path.join(self.queueDir, 'corrupt')}/"
        )

    def test_listTorn(self) -> None:
        """
        A torn entry (what a crash before an add's sync leaves: here an
        empty record) is removed, not listed and not set aside.
        """
        self.enqueue("00000000000001")
        self.enqueue("00000000000002")
        with open(os.path.join(self.queueDir, "00000000000002.env"), "w"):
            pass
        status, out, err = self.queueRun("list")
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(out.splitlines()[1:], ["1 entry, 1 recipient pending"])
        self.assertEqual(
            sorted(os.listdir(self.queueDir)), ["00000000000001.env", "00000000000001.msg", "tmp"]
        )

    def test_show(self) -> None:
        """
        The envelope, each recipient with state and response, and the
        headers (only), with control characters made harmless.
        """
        self.enqueue("00000000000001")
        status, out, err = self.queueRun("show", "00000000000001")
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(
            out.splitlines(),
            [
                "id:           00000000000001",
                "sender:       <alice@example.com>",
                "created:      2023-11-14 22:08:20 UTC (5m ago)",
                "next attempt: in 4m",
                "attempts:     2",
                "last error:   451 4.7.1 greylisted",
                "warned:       no",
                "size:         92 bytes",
                "in flight:    no",
                "recipients:",
                "  bob@example.net  pending  451 4.7.1 greylisted  (mx.example.net)",
                "  carol@example.org  sent  250 2.0.0 ok  (mx.example.org)",
                "headers:",
                "  Received: from x by mx.example.com",
                "  Subject: hello \\x1b[31mred",
                "   folded",
            ],
        )

    def test_showUnknown(self) -> None:
        self.assertError(self.queueRun("show", "00000000000009"), "no queue entry 00000000000009")

    def test_badId(self) -> None:
        """
        An id that could leave the queue directory is refused by every
        command.
        """
        for command in ("show", "flush", "delete"):
            self.assertError(self.queueRun(command, "../users"), "not a queue id")

    def test_flushOne(self) -> None:
        """
        C{flush ID} rewrites that entry's next attempt to 0 and signals
        the server named by the pid file.
        """
        import signal

        self.enqueue("00000000000001")
        self.enqueue("00000000000002")
        self.fakeServer()
        status, out, err = self.queueRun("flush", "00000000000001")
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(
            out.splitlines(),
            ["1 entry due now", "signalled the server (pid 4242) to retry now"],
        )
        self.assertEqual(self.queue.get("00000000000001").nextAttempt, 0)  # type: ignore[union-attr]
        self.assertEqual(self.queue.get("00000000000002").nextAttempt, self.NOW + 240)  # type: ignore[union-attr]
        self.assertEqual(self.killed, [(4242, signal.SIGUSR1)])
        self.assertEqual(os.listdir(os.path.join(self.queueDir, "tmp")), [])

    def test_flushAllNoServer(self) -> None:
        """
        C{flush} makes every deferred entry due; with no server running it
        says they are due at the next start.
        """
        self.enqueue("00000000000001")
        self.enqueue("00000000000002")
        self.enqueue("00000000000003")
        self.queue.markInFlight("00000000000003")
        status, out, err = self.queueRun("flush")
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(
            out.splitlines(),
            [
                "00000000000003 is being tried now; left alone",
                "2 entries due now",
                "no running server was signalled; the entries are due at the next start",
            ],
        )
        self.assertEqual(
            [self.queue.get(i).nextAttempt for i in self.queue.ids()],  # type: ignore[union-attr]
            [0, 0, self.NOW + 240],
        )

    def test_flushEmpty(self) -> None:
        self.fakeServer()
        self.assertEqual(self.queueRun("flush"), (0, "nothing to flush\n", ""))
        self.assertEqual(self.killed, [])

    def test_flushUnknown(self) -> None:
        self.assertError(self.queueRun("flush", "00000000000009"), "no queue entry 00000000000009")

    def test_delete(self) -> None:
        """
        C{delete ID} removes the entry and says whose it was.
        """
        self.enqueue("00000000000001")
        self.enqueue("00000000000002")
        status, out, err = self.queueRun("delete", "00000000000001")
        self.assertEqual((status, err), (0, ""))
        self.assertEqual(
            out,
            "deleted 00000000000001 from <alice@example.com>"
            " to bob@example.net, carol@example.org\n",
        )
        self.assertEqual(self.queue.ids(), ["00000000000002"])
        self.assertEqual(
            sorted(os.listdir(self.queueDir)),
            ["00000000000002.env", "00000000000002.msg", "tmp"],
        )
        # The command's owner file (its marker was a link to it) is gone.
        self.assertEqual(os.listdir(os.path.join(self.queueDir, "tmp")), [])

    def test_deleteInFlight(self) -> None:
        """
        An entry being tried is not deleted, and its marker stays.
        """
        self.enqueue("00000000000001")
        self.queue.markInFlight("00000000000001")
        self.assertError(self.queueRun("delete", "00000000000001"), "being tried now")
        self.assertEqual(self.queue.ids(), ["00000000000001"])
        self.assertTrue(self.queue.inFlight("00000000000001"))

    def test_deleteUnknown(self) -> None:
        self.assertError(self.queueRun("delete", "00000000000009"), "no queue entry 00000000000009")

    def test_help(self) -> None:
        """
        C{queue} needs a subcommand (a usage error, status 2).
        """
        status, out, err = self.queueRun()
        self.assertEqual(status, 2)
