"""
Tests for L{mailhub.relay.enqueue}: handing accepted mail to the queue, and
sending delivery reports.
"""

from __future__ import annotations

import os

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from mailhub.address import parsePath
from mailhub.directory import Directory, MaildirMailboxes, Resolution
from mailhub.envelope import Envelope, Session
from mailhub.maildir.delivery import Committer
from mailhub.maildir.names import QueueIds, UniqueNames
from mailhub.relay.enqueue import Relay, ReportSender
from mailhub.relay.queue import Queue


class EnqueueTests(SynchronousTestCase):
    """
    L{Relay} writes entries durably and releases them to the manager.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(1_800_000_000)
        self.data = self.mktemp()
        self.queue = Queue(os.path.join(self.data, "queue"), clock=self.clock)
        self.released: list[str] = []
        manager = type(
            "Manager", (), {"enqueued": lambda _, entry, received=None: self.released.append(entry.id)}
        )()
        self.relay = Relay(self.clock, self.queue, manager, maybeDeferred)
        os.makedirs(os.path.join(self.data, "mail", "example.test", "alice"))
        self.directory = Directory(("example.test",), {}, "+", MaildirMailboxes(self.data))
        committer = Committer(self.clock, threaded=False)
        self.reports = ReportSender(
            self.directory, committer, UniqueNames(self.clock, "mx.test"), self.relay, QueueIds(self.clock).make
        )

    def envelope(self) -> Envelope:
        return Envelope(
            queueId="6B0859B70D30AC",
            sender=parsePath("<alice@example.test>"),
            recipients=((parsePath("<bob@remote.test>"), Resolution(remote=("bob@remote.test",))),),
            session=Session(peer="192.0.2.1"),
        )

    def test_enqueue(self) -> None:
        """
        The entry is on disk, due now, with the message; the manager hears
        of it only on release.
        """
        entry = self.successResultOf(
            Deferred.fromCoroutine(
                self.relay.enqueue(self.envelope(), b"Subject: x\r\n\r\nhi\r\n", None, 19, ["bob@remote.test"])
            )
        )
        stored = self.queue.get(entry.id)
        self.assertEqual(stored.sender, "alice@example.test")
        self.assertEqual(stored.nextAttempt, self.clock.seconds())
        self.assertEqual([r.address for r in stored.recipients], ["bob@remote.test"])
        with open(self.queue.messagePath(entry.id), "rb") as f:
            self.assertEqual(f.read(), b"Subject: x\r\n\r\nhi\r\n")
        self.assertEqual(self.released, [])
        self.relay.release(entry)
        self.assertEqual(self.released, [entry.id])

    def freshManager(self) -> list[tuple[str, int | None]]:
        handed: list[tuple[str, int | None]] = []
        manager = type(
            "Manager",
            (),
            {
                "wantsFresh": lambda _: True,
                "enqueued": lambda _, entry, received=None: handed.append((entry.id, received)),
            },
        )()
        self.relay = Relay(self.clock, self.queue, manager, maybeDeferred)
        return handed

    def test_enqueueClaimedForTheManager(self) -> None:
        """
        When the manager takes new entries in memory, the entry is written
        with its in-flight marker taken, and handed over with the count of
        its Received fields.
        """
        handed = self.freshManager()
        message = b"Received: from a\r\nReceived: from b\r\nSubject: x\r\n\r\nReceived: body\r\n"
        entry = self.successResultOf(
            Deferred.fromCoroutine(
                self.relay.enqueue(self.envelope(), message, None, len(message), ["bob@remote.test"])
            )
        )
        self.assertTrue(self.queue.inFlight(entry.id))
        self.assertEqual(self.queue.get(entry.id).attempts, 0)
        self.relay.release(entry)
        self.assertEqual(handed, [(entry.id, 2)])

    def test_cancelClaimed(self) -> None:
        """
        Cancelling a claimed entry removes it and its marker.
        """
        self.freshManager()
        entry = self.successResultOf(
            Deferred.fromCoroutine(self.relay.enqueue(self.envelope(), b"x\r\n", None, 3, ["bob@remote.test"]))
        )
        self.successResultOf(self.relay.cancel(entry.id))
        self.assertIsNone(self.queue.get(entry.id))
        self.assertFalse(self.queue.inFlight(entry.id))

    def test_cancel(self) -> None:
        """
        Cancelling removes the entry.
        """
        entry = self.successResultOf(
            Deferred.fromCoroutine(
                self.relay.enqueue(self.envelope(), b"x\r\n", None, 3, ["bob@remote.test"])
            )
        )
        self.successResultOf(self.relay.cancel(entry.id))
        self.assertIsNone(self.queue.get(entry.id))

    def test_reportToLocalSender(self) -> None:
        """
        A report to a local sender lands in their Maildir with the null
        Return-Path.
        """
        self.successResultOf(Deferred.fromCoroutine(self.reports("alice@example.test", b"Subject: report\r\n\r\nx\r\n")))
        new = os.path.join(self.data, "mail", "example.test", "alice", "new")
        [name] = os.listdir(new)
        with open(os.path.join(new, name), "rb") as f:
            self.assertTrue(f.read().startswith(b"Return-Path: <>\r\nSubject: report"))

    def test_reportToRemoteSender(self) -> None:
        """
        A report to a remote sender is queued with the null sender.
        """
        self.successResultOf(Deferred.fromCoroutine(self.reports("someone@remote.test", b"Subject: report\r\n\r\nx\r\n")))
        [queueId] = self.released
        entry = self.queue.get(queueId)
        self.assertEqual(entry.sender, "")
        self.assertEqual([r.address for r in entry.recipients], ["someone@remote.test"])

    def test_reportToUnknownLocalDropped(self) -> None:
        """
        A report for a local address that does not exist is dropped (and
        logged), never bounced back.
        """
        self.successResultOf(Deferred.fromCoroutine(self.reports("nobody@example.test", b"x\r\n")))
        self.assertEqual(self.released, [])
