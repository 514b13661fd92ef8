"""
Tests for L{mailhub.smtp.delivery.LocalDelivery}: the MX delivery policy
over a real Maildir, and the whole receive path from SMTP to disk with
failures injected at each file operation.
"""

from __future__ import annotations

import errno
import mailbox
import os

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mailhub.address import parsePath
from mailhub.config import Limits
from mailhub.directory import Directory, MaildirMailboxes
from mailhub.envelope import Envelope, Session
from mailhub.errors import DeliveryError
from mailhub.fs import FileSystem
from mailhub.maildir.delivery import Committer
from mailhub.maildir.names import QueueIds, UniqueNames
from mailhub.smtp.delivery import IMailDelivery, LocalDelivery
from mailhub.smtp.server import SMTPFactory
from mailhub.spool import Spool


class FailingFileSystem(FileSystem):
    """
    Fails the C{failAt}-th call of the operation C{operation}.
    """

    def __init__(self, operation: str | None = None, failAt: int = 1, code: int = errno.ENOSPC) -> None:
        self.operation = operation
        self.failAt = failAt
        self.code = code
        self.calls: dict[str, int] = {}

    def __getattribute__(self, name: str):
        attribute = super().__getattribute__(name)
        if name == super().__getattribute__("operation"):
            def failing(*args, **kwargs):
                calls = super(FailingFileSystem, self).__getattribute__("calls")
                calls[name] = calls.get(name, 0) + 1
                if calls[name] == super(FailingFileSystem, self).__getattribute__("failAt"):
                    raise OSError(self.code, os.strerror(self.code))
                return attribute(*args, **kwargs)

            return failing
        return attribute


class LocalDeliveryTests(SynchronousTestCase):
    """
    L{LocalDelivery} resolves recipients and delivers into Maildirs.
    """

    def setUp(self) -> None:
        self.data = self.mktemp()
        self.clock = Clock()
        self.clock.advance(1795700000)
        for user in ("alice", "bob"):
            os.makedirs(os.path.join(self.data, "mail", "example.test", user))
        self.fs = FileSystem()
        self.delivery = self.makeDelivery(self.fs)
        self.spoolDir = os.path.join(self.data, "spool")
        os.makedirs(self.spoolDir)

    def makeDelivery(self, fs: FileSystem) -> LocalDelivery:
        directory = Directory(
            ("example.test",),
            {
                "team@example.test": ("alice@example.test", "bob@example.test"),
                "away@example.test": ("friend@elsewhere.test",),
            },
            "+",
            MaildirMailboxes(self.data),
        )
        return LocalDelivery(directory, Committer(self.clock, fs, threaded=False), UniqueNames(self.clock, "mx.test"))

    def maildir(self, user: str) -> mailbox.Maildir:
        return mailbox.Maildir(os.path.join(self.data, "mail", "example.test", user), factory=None, create=False)

    def envelope(self, *recipients: str) -> Envelope:
        session = Session(peer="192.0.2.1", helo="client.test")
        return Envelope(
            queueId="Q1",
            sender=parsePath("<sender@remote.test>"),
            recipients=tuple(
                (parsePath(f"<{r}>"), self.delivery.validateTo(session, parsePath(f"<{r}>")))
                for r in recipients
            ),
            session=session,
        )

    def spool(self, text: bytes, threshold: int = 1 << 20) -> Spool:
        spool = Spool(self.spoolDir, "Q1", threshold=threshold)
        spool.write(text)
        return spool

    def test_interface(self) -> None:
        """
        L{LocalDelivery} provides L{IMailDelivery}.
        """
        self.assertTrue(verifyObject(IMailDelivery, self.delivery))

    def test_deliverWithReturnPath(self) -> None:
        """
        The message lands in new/ with Return-Path first, readable by the
        stdlib Maildir reader.
        """
        self.successResultOf(self.delivery.deliver(self.envelope("alice@example.test"), self.spool(b"Subject: hi\r\n\r\nbody\r\n")))
        box = self.maildir("alice")
        self.assertEqual(len(box), 1)
        self.assertEqual(box.get_bytes(next(iter(box.keys()))), b"Return-Path: <sender@remote.test>\r\nSubject: hi\r\n\r\nbody\r\n")
        self.assertEqual(os.listdir(os.path.join(self.data, "mail", "example.test", "alice", "tmp")), [])

    def test_aliasAndDuplicatesOneCopyEach(self) -> None:
        """
        An alias and a direct recipient for the same mailbox give one copy
        per mailbox, hard-linked.
        """
        envelope = self.envelope("team@example.test", "alice@example.test", "Alice+tag@example.test")
        self.successResultOf(self.delivery.deliver(envelope, self.spool(b"x\r\n")))
        alice = os.listdir(os.path.join(self.data, "mail", "example.test", "alice", "new"))
        bob = os.listdir(os.path.join(self.data, "mail", "example.test", "bob", "new"))
        self.assertEqual((len(alice), len(bob)), (1, 1))
        a = os.stat(os.path.join(self.data, "mail", "example.test", "alice", "new", alice[0]))
        b = os.stat(os.path.join(self.data, "mail", "example.test", "bob", "new", bob[0]))
        self.assertEqual(a.st_ino, b.st_ino)

    def test_spilledMessage(self) -> None:
        """
        A message spilled to a spool file is copied whole.
        """
        text = b"".join(b"line %06d\r\n" % i for i in range(50000))
        spool = self.spool(text, threshold=1024)
        self.assertIsNotNone(spool.path)
        self.successResultOf(self.delivery.deliver(self.envelope("alice@example.test"), spool))
        box = self.maildir("alice")
        self.assertEqual(box.get_bytes(next(iter(box.keys()))), b"Return-Path: <sender@remote.test>\r\n" + text)

    def test_remoteAliasTarget(self) -> None:
        """
        An alias that forwards to another domain is refused for now with a
        temporary 451 4.3.2 (relaying is not available), never dropped.
        """
        error = self.assertRaises(
            DeliveryError, self.delivery.validateTo, Session(peer="192.0.2.1"), parsePath("<away@example.test>")
        )
        self.assertEqual((error.code, error.enhanced, error.permanent), (451, "4.3.2", False))

    def test_failureIsTemporary(self) -> None:
        """
        A file system failure is a temporary L{DeliveryError} 451 4.3.0.
        """
        delivery = self.makeDelivery(FailingFileSystem("openExclusive"))
        f = self.failureResultOf(delivery.deliver(self.envelope("alice@example.test"), self.spool(b"x\r\n")), DeliveryError)
        self.assertEqual((f.value.code, f.value.enhanced), (451, "4.3.0"))
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)


STEPS = ["openExclusive", "write", "copy", "openRead", "syncfs", "fsync", "close", "link", "rename", "openDirectory", "fsyncDirectory"]


class ReceivePathFailureTests(SynchronousTestCase):
    """
    The whole path, SMTP to disk: a failure injected at each file
    operation is answered 451 4.3.0 and leaves no message, whole or
    partial, in any new/ (and nothing in tmp/).
    """

    def setUp(self) -> None:
        self.data = self.mktemp()
        for user in ("alice", "bob"):
            os.makedirs(os.path.join(self.data, "mail", "example.test", user))

    def converse(self, fs: FileSystem, body: bytes, threshold: int = 1 << 20) -> str:
        clock = Clock()
        clock.advance(1795700000)
        directory = Directory(("example.test",), {}, "+", MaildirMailboxes(self.data))
        delivery = LocalDelivery(directory, Committer(clock, fs, threaded=False), UniqueNames(clock, "mx.test"))
        spoolDir = os.path.join(self.data, "spool")
        factory = SMTPFactory(
            hostname="mx.test",
            delivery=delivery,
            limits=Limits(),
            clock=clock,
            newQueueId=QueueIds(clock).make,
            newSpool=lambda q: Spool(spoolDir, q, threshold=threshold, fs=fs),
        )
        peer = IPv4Address("TCP", "192.0.2.1", 1)
        server = factory.buildProtocol(peer)
        transport = StringTransport(peerAddress=peer)
        server.makeConnection(transport)
        server.dataReceived(
            b"EHLO c.test\r\nMAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"
            b"RCPT TO:<bob@example.test>\r\nDATA\r\n" + body + b".\r\n"
        )
        return transport.value().decode().split("\r\n")[-2]

    def wipe(self) -> None:
        """
        Empty every mailbox (a conversation that did not reach the failing
        step delivered its message).
        """
        import shutil

        for user in ("alice", "bob"):
            shutil.rmtree(os.path.join(self.data, "mail", "example.test", user))
            os.makedirs(os.path.join(self.data, "mail", "example.test", user))

    def leftovers(self) -> list[str]:
        found = []
        for user in ("alice", "bob"):
            for sub in ("new", "tmp"):
                path = os.path.join(self.data, "mail", "example.test", user, sub)
                if os.path.isdir(path):
                    found += [os.path.join(user, sub, name) for name in os.listdir(path)]
        return found

    def test_eachStepFails(self) -> None:
        """
        For every file operation, small and spooled messages, ENOSPC and
        EIO: 451 4.3.0 and nothing left behind.
        """
        body = b"".join(b"line %05d\r\n" % i for i in range(2000))
        exercised = set()
        for threshold in (1 << 20, 1024):
            for step in STEPS:
                for code in (errno.ENOSPC, errno.EIO):
                    self.wipe()
                    fs = FailingFileSystem(step, 1, code)
                    reply = self.converse(fs, body, threshold)
                    if not fs.calls.get(step):
                        continue  # this path does not use the operation
                    exercised.add(step)
                    self.assertTrue(reply.startswith("451 4.3.0"), (step, threshold, code, reply))
                    self.assertEqual(self.leftovers(), [], (step, threshold, code))
                    self.flushLoggedErrors(OSError)
        # syncfs and fsync are alternatives; every other step must have run.
        self.assertTrue({"syncfs", "fsync"} & exercised)
        self.assertEqual(set(STEPS) - exercised - {"syncfs", "fsync", "fsyncDirectory"}, set())

    def test_perFileFsyncPath(self) -> None:
        """
        Where syncfs is not available, each file and directory is fsynced;
        failures there are handled the same way.
        """
        for step in ("fsync", "fsyncDirectory"):
            fs = FailingFileSystem(step, 1, errno.EIO)
            fs.canSyncFilesystem = False
            reply = self.converse(fs, b"x\r\n")
            self.assertTrue(reply.startswith("451 4.3.0"), (step, reply))
            self.assertEqual(self.leftovers(), [])
            self.flushLoggedErrors(OSError)

    def test_success(self) -> None:
        """
        Without failures, both recipients have the message.
        """
        reply = self.converse(FileSystem(), b"hello\r\n")
        self.assertTrue(reply.startswith("250 2.0.0 Ok: queued as "), reply)
        self.assertEqual(sorted(p.split(os.sep)[1] for p in self.leftovers()), ["new", "new"])
