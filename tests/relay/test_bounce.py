"""
Tests for L{mailhub.relay.bounce}: RFC 3464 delivery status notifications,
read back with the stdlib C{email} parser.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import os
from datetime import datetime, timezone
from email.message import EmailMessage, Message

from twisted.trial.unittest import SynchronousTestCase

from mailhub.relay.bounce import (
    DIAGNOSTIC_LIMIT,
    HEADERS_LIMIT,
    MAX_LINE,
    headersOf,
    makeReport,
    originalHeaders,
    recipientStatus,
    remoteReply,
    shouldBounce,
)
from mailhub.relay.policy import DAY, HOUR, RetryPolicy
from mailhub.relay.values import FAILED, PENDING, QueueEntry, QueuedRecipient

CREATED = 1_700_000_000.0
NOW = CREATED + 5 * HOUR
HEADERS = (
    b"Received: from client.example.test\r\n"
    b"\tby mail.example.test; Tue, 14 Nov 2023 22:13:20 +0000\r\n"
    b"From: Alice <alice@example.test>\r\n"
    b"To: bob@remote.test\r\n"
    b"Subject: lunch\r\n"
    b"Message-ID: <orig@example.test>\r\n"
)

BOB = QueuedRecipient(
    "bob@remote.test", FAILED, "550 5.1.1 <bob@remote.test>: Recipient address rejected", "mx.remote.test"
)
CAROL = QueuedRecipient("carol@other.test", FAILED, "connection refused")
DAVE = QueuedRecipient("dave@slow.test", PENDING, "451 4.7.1 greylisted, try later", "mx.slow.test")
ERIN = QueuedRecipient("erin@slow.test", PENDING)


def makeEntry(*recipients: QueuedRecipient, sender: str = "alice@example.test") -> QueueEntry:
    return QueueEntry(
        id="4F2A9C",
        sender=sender,
        recipients=recipients,
        created=CREATED,
        nextAttempt=NOW,
        attempts=7,
    )


def report(
    recipients: list[QueuedRecipient],
    action: str = "failed",
    headers: bytes = HEADERS,
    **kwargs: object,
) -> bytes:
    entry = kwargs.pop("entry", None) or makeEntry(*recipients)
    return makeReport(
        entry,  # type: ignore[arg-type]
        recipients,
        action,  # type: ignore[arg-type]
        reportingMTA="mail.example.test",
        now=NOW,
        originalHeaders=headers,
        messageId="dsn.4F2A9C@mail.example.test",
        **kwargs,  # type: ignore[arg-type]
    )


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def date(when: float) -> str:
    """
    C{when} as the RFC 5322 date a report writes.
    """
    return email.utils.format_datetime(datetime.fromtimestamp(when, timezone.utc))


class ReportCase(SynchronousTestCase):
    """
    Helpers that take a report apart.
    """

    def parts(self, data: bytes) -> tuple[EmailMessage, Message, list[Message], Message]:
        """
        Check the framing of a report and return it with its three parts:
        the text, the per-message fields and the per-recipient groups, and
        the returned header.
        """
        self.assertCRLF(data)
        message = parse(data)
        self.assertEqual(message.defects, [])
        self.assertEqual(message.get_content_type(), "multipart/report")
        self.assertEqual(message.get_param("report-type"), "delivery-status")
        payload = message.get_payload()
        assert isinstance(payload, list)
        self.assertEqual(
            [part.get_content_type() for part in payload],
            ["text/plain", "message/delivery-status", "text/rfc822-headers"],
        )
        for part in payload:
            self.assertEqual(part.defects, [])
        text, status, headers = payload
        groups = status.get_payload()
        assert isinstance(groups, list)
        return message, text, groups, headers

    def assertCRLF(self, data: bytes) -> None:
        """
        Every line of C{data} ends in CRLF, and none is too long.
        """
        self.assertTrue(data.endswith(b"\r\n"))
        bare = [line[:60] for line in data.split(b"\r\n") if b"\r" in line or b"\n" in line]
        self.assertEqual(bare, [], "bare CR or LF")
        long = [line[:60] for line in data.split(b"\r\n") if len(line) > MAX_LINE]
        self.assertEqual(long, [], "lines too long")


class FailedReportTests(ReportCase):
    """
    A bounce: C{Action: failed}.
    """

    def test_header(self) -> None:
        message, text, groups, headers = self.parts(report([BOB]))
        self.assertEqual(message["From"], "Mail Delivery System <MAILER-DAEMON@mail.example.test>")
        self.assertEqual(message["From"].addresses[0].addr_spec, "MAILER-DAEMON@mail.example.test")
        self.assertEqual(message["To"].addresses[0].addr_spec, "alice@example.test")
        self.assertEqual(message["Subject"], "Undelivered Mail Returned to Sender")
        self.assertEqual(message["Date"].datetime.timestamp(), NOW)
        self.assertEqual(message["Message-ID"], "<dsn.4F2A9C@mail.example.test>")
        self.assertEqual(message["Auto-Submitted"], "auto-replied")
        self.assertEqual(message["MIME-Version"], "1.0")

    def test_oneRecipient(self) -> None:
        message, text, groups, headers = self.parts(report([BOB]))
        perMessage, bob = groups
        self.assertEqual(perMessage["Reporting-MTA"], "dns; mail.example.test")
        self.assertEqual(perMessage["Arrival-Date"], date(CREATED))
        self.assertEqual(perMessage["X-Mailhub-Queue-ID"], "4F2A9C")
        self.assertEqual(
            dict(bob.items()),
            {
                "Final-Recipient": "rfc822; bob@remote.test",
                "Action": "failed",
                "Status": "5.1.1",
                "Remote-MTA": "dns; mx.remote.test",
                "Diagnostic-Code": "smtp; 550 5.1.1 <bob@remote.test>: Recipient address rejected",
                "Last-Attempt-Date": date(NOW),
            },
        )
        body = text.get_content()
        self.assertIn("mail.example.test", body)
        self.assertIn("<bob@remote.test>: host mx.remote.test said: 550 5.1.1", body)
        self.assertIn("Recipient address rejected", body)
        self.assertEqual(headers.get_payload(decode=True), HEADERS)

    def test_severalRecipients(self) -> None:
        message, text, groups, headers = self.parts(report([BOB, CAROL]))
        perMessage, bob, carol = groups
        self.assertEqual(bob["Final-Recipient"], "rfc822; bob@remote.test")
        self.assertEqual(carol["Final-Recipient"], "rfc822; carol@other.test")
        self.assertEqual([bob["Action"], carol["Action"]], ["failed", "failed"])
        self.assertEqual(carol["Status"], "5.0.0")
        self.assertNotIn("Will-Retry-Until", bob)
        body = text.get_content()
        self.assertIn("<bob@remote.test>", body)
        self.assertIn("<carol@other.test>: connection refused", body)

    def test_diagnosticOnlyWithReply(self) -> None:
        """
        C{Diagnostic-Code} and C{Remote-MTA} appear only when there is an
        SMTP reply and a host that gave it.
        """
        _, _, (_, bob, carol), _ = self.parts(report([BOB, CAROL]))
        self.assertIn("Diagnostic-Code", bob)
        self.assertIn("Remote-MTA", bob)
        self.assertNotIn("Diagnostic-Code", carol)
        self.assertNotIn("Remote-MTA", carol)
        _, _, (_, erin), _ = self.parts(report([ERIN], "delayed"))
        self.assertNotIn("Diagnostic-Code", erin)

    def test_expiredAfterTransientReply(self) -> None:
        """
        A recipient given up after a 4xx keeps the status of the actual
        problem (RFC 3463 §3.5, X.4.7).
        """
        dave = QueuedRecipient(DAVE.address, FAILED, DAVE.response, DAVE.remoteMTA)
        _, _, (_, group), _ = self.parts(report([dave]))
        self.assertEqual(group["Action"], "failed")
        self.assertEqual(group["Status"], "4.7.1")
        self.assertEqual(group["Diagnostic-Code"], "smtp; 451 4.7.1 greylisted, try later")

    def test_arrival(self) -> None:
        _, _, (perMessage, _), _ = self.parts(report([BOB], arrival=CREATED - 60))
        self.assertEqual(perMessage["Arrival-Date"], date(CREATED - 60))

    def test_noAttempt(self) -> None:
        """
        Without an attempt there is no C{Last-Attempt-Date}.
        """
        entry = QueueEntry("Q", "alice@example.test", (CAROL,), CREATED, CREATED)
        _, _, (_, carol), _ = self.parts(report([CAROL], entry=entry))
        self.assertNotIn("Last-Attempt-Date", carol)

    def test_deterministic(self) -> None:
        self.assertEqual(report([BOB, CAROL]), report([BOB, CAROL]))

    def test_invalid(self) -> None:
        self.assertRaises(ValueError, report, [])
        self.assertRaises(ValueError, report, [BOB], "bounced")
        entry = makeEntry(BOB)
        for host in ["", "mail.example.test\r\nBcc: x@evil.test", "a b"]:
            self.assertRaises(
                ValueError,
                makeReport,
                entry,
                [BOB],
                "failed",
                reportingMTA=host,
                now=NOW,
                originalHeaders=HEADERS,
                messageId="x@y",
            )
        self.assertRaises(
            ValueError,
            makeReport,
            entry,
            [BOB],
            "failed",
            reportingMTA="mail.example.test",
            now=NOW,
            originalHeaders=HEADERS,
            messageId="<>",
        )


class DelayedReportTests(ReportCase):
    """
    A delay warning: C{Action: delayed} with C{Will-Retry-Until}.
    """

    def test_oneRecipient(self) -> None:
        until = CREATED + 2 * DAY
        message, text, groups, headers = self.parts(report([DAVE], "delayed", retryUntil=until))
        self.assertEqual(message["Subject"], "Delayed Mail (still being retried)")
        _, dave = groups
        self.assertEqual(
            dict(dave.items()),
            {
                "Final-Recipient": "rfc822; dave@slow.test",
                "Action": "delayed",
                "Status": "4.7.1",
                "Remote-MTA": "dns; mx.slow.test",
                "Diagnostic-Code": "smtp; 451 4.7.1 greylisted, try later",
                "Last-Attempt-Date": date(NOW),
                "Will-Retry-Until": date(until),
            },
        )
        body = " ".join(text.get_content().split())
        self.assertIn(f"keep trying until {date(until)}", body)
        self.assertIn("do not need to send the message again", body)

    def test_severalRecipients(self) -> None:
        _, text, groups, _ = self.parts(report([DAVE, ERIN], "delayed"))
        perMessage, dave, erin = groups
        until = date(RetryPolicy().retryUntil(makeEntry(DAVE, ERIN)))
        self.assertEqual([dave["Action"], erin["Action"]], ["delayed", "delayed"])
        self.assertEqual(erin["Status"], "4.0.0")
        self.assertEqual([dave["Will-Retry-Until"], erin["Will-Retry-Until"]], [until, until])
        self.assertIn("<erin@slow.test>", text.get_content())


class StatusTests(SynchronousTestCase):
    """
    L{recipientStatus} takes the enhanced code from the reply.
    """

    def test_table(self) -> None:
        rows = [
            ("550 5.1.1 user unknown", "failed", "5.1.1"),
            ("550-5.7.1 first line", "failed", "5.7.1"),
            ("  552 5.3.4 too big", "failed", "5.3.4"),
            ("554 5.7.26 DMARC", "failed", "5.7.26"),
            ("451 4.7.1 greylisted", "delayed", "4.7.1"),
            ("451 4.7.1 greylisted", "failed", "4.7.1"),
            ("550 user unknown", "failed", "5.0.0"),
            ("421 closing", "delayed", "4.0.0"),
            ("550 5.1 broken", "failed", "5.0.0"),
            ("550 5.1.1234 broken", "failed", "5.0.0"),
            ("connection refused", "failed", "5.0.0"),
            ("connection refused", "delayed", "4.0.0"),
            ("", "failed", "5.0.0"),
            ("", "delayed", "4.0.0"),
            ("5.1.10 example.test has a null MX (RFC 7505)", "failed", "5.1.10"),
            ("5.4.6 the route to mx.test loops back to myself", "failed", "5.4.6"),
            ("giving up after 9 attempts: 4.4.1 connection refused", "failed", "4.4.1"),
            ("5.1 not a status", "failed", "5.0.0"),
            ("2.0.0 not a failure", "failed", "5.0.0"),
            ("250 2.0.0 a success is no failure status", "failed", "5.0.0"),
            ("giving up after 9 attempts: 451 4.7.1 greylisted", "failed", "4.7.1"),
            ("host mx.test said: 550 5.7.1 spam", "failed", "5.7.1"),
            ("550 5.1.1 a\r\n550 5.1.1 b", "failed", "5.1.1"),
            ("timeout: no reply", "delayed", "4.0.0"),
        ]
        failed = [
            (row, recipientStatus(row[0], row[1]))
            for row in rows
            if recipientStatus(row[0], row[1]) != row[2]
        ]
        self.assertEqual(failed, [])


class RemoteReplyTests(ReportCase):
    """
    L{remoteReply} finds the SMTP reply in a response.
    """

    def test_table(self) -> None:
        rows = [
            ("550 5.1.1 no such user", "550 5.1.1 no such user"),
            ("  421 closing", "421 closing"),
            ("554", "554"),
            ("giving up after 9 attempts: 451 4.7.1 greylisted", "451 4.7.1 greylisted"),
            ("giving up after 9 attempts: connection refused", ""),
            ("connection refused", ""),
            ("5501 not a reply", ""),
            ("600 not a reply", ""),
            ("", ""),
        ]
        self.assertEqual([(r, remoteReply(r)) for r, _ in rows], rows)

    def test_expiredWithNote(self) -> None:
        """
        A recipient given up with a note before the remote's last reply
        still gets its status and the reply as C{Diagnostic-Code}.
        """
        rcpt = QueuedRecipient(
            "dave@slow.test", FAILED, "giving up after 9 attempts: 451 4.7.1 greylisted", "mx.slow.test"
        )
        _, _, (_, group), _ = self.parts(report([rcpt]))
        self.assertEqual(group["Status"], "4.7.1")
        self.assertEqual(group["Diagnostic-Code"], "smtp; 451 4.7.1 greylisted")


class InjectionTests(ReportCase):
    """
    Whatever a remote server says stays inside its own field.
    """

    def evilReport(self, response: str, remote: str = "mx.remote.test") -> tuple[bytes, Message]:
        evil = QueuedRecipient("bob@remote.test", FAILED, response, remote)
        data = report([evil])
        _, _, (_, group), _ = self.parts(data)
        return data, group

    def test_crlfInReply(self) -> None:
        data, group = self.evilReport(
            "550 5.1.1 no\r\nBcc: victim@example.test\r\n\r\n--boundary\r\nContent-Type: text/html"
        )
        self.assertNotIn(b"\r\nBcc:", data)
        self.assertNotIn(b"\r\nContent-Type: text/html", data)
        self.assertNotIn("Bcc", group.keys())
        self.assertEqual(
            group["Diagnostic-Code"],
            "smtp; 550 5.1.1 no Bcc: victim@example.test --boundary Content-Type: text/html",
        )
        self.assertEqual(len(parse(data).get_payload()), 3)

    def test_bareCRAndLF(self) -> None:
        data, group = self.evilReport("550 5.1.1 a\rX-One: 1\nX-Two: 2")
        self.assertEqual(
            list(group.keys()),
            ["Final-Recipient", "Action", "Status", "Remote-MTA", "Diagnostic-Code", "Last-Attempt-Date"],
        )
        self.assertEqual(group["Diagnostic-Code"], "smtp; 550 5.1.1 a X-One: 1 X-Two: 2")

    def test_remoteMTA(self) -> None:
        data, group = self.evilReport("550 5.1.1 no", "mx.remote.test\r\nX-Evil: 1")
        self.assertNotIn(b"\r\nX-Evil", data)
        self.assertEqual(group["Remote-MTA"], "dns; mx.remote.testX-Evil:1")

    def test_controlsAndNonASCII(self) -> None:
        data, group = self.evilReport("550 5.1.1 caf\u00e9 \u2603 \x00\x1b[31m\x7f\udcff")
        self.assertEqual(
            group["Diagnostic-Code"], "smtp; 550 5.1.1 caf\\x{E9} \\x{2603} ??[31m?\\x{DCFF}"
        )
        _, text, _, _ = self.parts(data)
        self.assertEqual(text.get_content_charset(), "us-ascii")
        self.assertIn("caf\\x{E9}", text.get_content())
        self.assertTrue(data.isascii())

    def test_longReply(self) -> None:
        """
        A long reply is cut and folded; no line grows past 998 octets.
        """
        data, group = self.evilReport("550 5.1.1 " + "word " * 2000 + "x" * 5000)
        diagnostic = group["Diagnostic-Code"]
        self.assertTrue(diagnostic.startswith("smtp; 550 5.1.1 word word"))
        self.assertTrue(diagnostic.endswith("..."))
        self.assertLessEqual(len(diagnostic), len("smtp; ") + DIAGNOSTIC_LIMIT)
        data, group = self.evilReport("550 5.1.1 " + "x" * 5000)
        self.assertTrue(group["Diagnostic-Code"].startswith("smtp; 550 5.1.1 xxx"))

    def test_nonASCIIRecipient(self) -> None:
        """
        An internationalised address is written in RFC 6533's xtext form.
        """
        rcpt = QueuedRecipient("j\u00f6rg+x@r\u00e9mote.test", FAILED, "550 5.1.1 no")
        _, _, (_, group), _ = self.parts(report([rcpt]))
        self.assertEqual(group["Final-Recipient"], "utf-8; j\\x{F6}rg\\x{2B}x@r\\x{E9}mote.test")

    def test_senderInjection(self) -> None:
        entry = makeEntry(BOB, sender="alice@example.test>\r\nBcc: <victim@example.test")
        data = report([BOB], entry=entry)
        self.assertIsNone(parse(data)["Bcc"])
        self.assertIn(b"\r\nTo: <alice@example.testBcc:victim@example.test>\r\n", data)


class ReturnedHeaderTests(ReportCase):
    """
    The third part returns the original header, bounded and with CRLF.
    """

    def test_lfHeaders(self) -> None:
        _, _, _, headers = self.parts(report([BOB], headers=HEADERS.replace(b"\r\n", b"\n")))
        self.assertEqual(headers.get_payload(decode=True), HEADERS)

    def test_bodyDropped(self) -> None:
        """
        Given a whole message, only its header is returned.
        """
        _, _, _, headers = self.parts(report([BOB], headers=HEADERS + b"\r\nsecret body\r\n"))
        self.assertEqual(headers.get_payload(decode=True), HEADERS)

    def test_empty(self) -> None:
        _, _, _, headers = self.parts(report([BOB], headers=b""))
        self.assertEqual(headers.get_payload(decode=True), b"")

    def test_truncated(self) -> None:
        """
        A header past L{HEADERS_LIMIT} is cut before the field that does
        not fit whole, and the text says so.
        """
        field = b"X-Filler: " + b"a" * 70 + b"\r\n " + b"b" * 70 + b"\r\n"
        big = HEADERS + field * (2 * HEADERS_LIMIT // len(field))
        data = report([BOB], headers=big)
        self.assertLess(len(data), HEADERS_LIMIT + 8192)
        _, text, _, headers = self.parts(data)
        returned = headers.get_payload(decode=True)
        self.assertLessEqual(len(returned), HEADERS_LIMIT)
        self.assertGreater(len(returned), HEADERS_LIMIT - len(field))
        self.assertTrue(returned.startswith(HEADERS))
        self.assertTrue(returned.endswith(field))
        self.assertIn("cut", text.get_content())

    def test_oneHugeLine(self) -> None:
        data = report([BOB], headers=b"X-Huge: " + b"z" * (2 * HEADERS_LIMIT) + b"\r\n")
        _, _, _, headers = self.parts(data)
        self.assertEqual(headers["Content-Transfer-Encoding"], "quoted-printable")
        self.assertLessEqual(len(headers.get_payload(decode=True)), HEADERS_LIMIT)

    def test_eightBit(self) -> None:
        """
        Header bytes that are not 7bit are returned quoted-printable, intact.
        """
        original = b"Subject: caf\xc3\xa9\r\nX-Raw: \xff\x00 =_mailhub\r\n"
        data = report([BOB], headers=original)
        self.assertEqual(data.decode("ascii").count("--=_mailhub"), 4)
        _, _, _, headers = self.parts(data)
        self.assertEqual(headers["Content-Transfer-Encoding"], "quoted-printable")
        self.assertEqual(headers.get_payload(decode=True), original)

    def test_boundaryInHeaders(self) -> None:
        """
        Returned headers that hold the boundary do not end the part.
        """
        first = report([BOB])
        boundary = parse(first).get_boundary()
        assert boundary is not None
        data = report([BOB], headers=HEADERS + b"X-Trick: --" + boundary.encode() + b"--\r\n")
        message, _, _, headers = self.parts(data)
        self.assertNotEqual(message.get_boundary(), boundary)
        self.assertIn(boundary, headers.get_payload(decode=True).decode())


class ShouldBounceTests(SynchronousTestCase):
    """
    L{shouldBounce}: never to the null sender.
    """

    def test_table(self) -> None:
        rows = [("alice@example.test", True), ("", False), ("<>", False), (" ", False)]
        self.assertEqual(
            [(sender, shouldBounce(makeEntry(BOB, sender=sender))) for sender, _ in rows], rows
        )


class OriginalHeadersTests(SynchronousTestCase):
    """
    L{originalHeaders} reads the header block of a queued message file.
    """

    def write(self, data: bytes) -> str:
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(data)
        return path

    def test_table(self) -> None:
        rows = [
            (b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore\r\n", b"A: 1\r\nB: 2\r\n"),
            (b"A: 1\nB: 2\n\nbody\n\nmore\n", b"A: 1\nB: 2\n"),
            (b"A: 1\r\n folded\r\n\r\nbody", b"A: 1\r\n folded\r\n"),
            (b"A: 1\r\nB: 2\r\n", b"A: 1\r\nB: 2\r\n"),
            (b"A: 1\nB: 2", b"A: 1\nB: 2"),
            (b"A: 1\r\n\r\n", b"A: 1\r\n"),
            (b"\r\nbody", b""),
            (b"\nbody", b""),
            (b"", b""),
        ]
        self.assertEqual([(data, originalHeaders(self.write(data))) for data, _ in rows], rows)
        self.assertEqual([(data, headersOf(data)) for data, _ in rows], rows)

    def test_limit(self) -> None:
        rows = [
            # data, limit, expected
            (b"A: 1\r\nB: 2\r\n\r\nbody", 12, b"A: 1\r\nB: 2\r\n"),
            (b"A: 1\r\nB: 2\r\n\r\nbody", 11, b"A: 1\r\n"),
            (b"A: 1\r\nB: 2\r\nC: 3\r\n", 12, b"A: 1\r\nB: 2\r\n"),
            (b"A: 1\nB: 2\n", 8, b"A: 1\n"),
            (b"AAAAAAAAAAAAAAAAAAAA", 8, b"AAAAAAAA"),
        ]
        self.assertEqual(
            [(d, n, originalHeaders(self.write(d), n)) for d, n, _ in rows], rows
        )
        self.assertEqual([(d, n, headersOf(d, n)) for d, n, _ in rows], rows)

    def test_bounded(self) -> None:
        """
        A header with no end reads no more than the limit.
        """
        path = self.write(b"X: " + b"y" * 100 + b"\r\n" * 1 + b"Z: " + b"z" * (HEADERS_LIMIT * 4))
        self.assertEqual(originalHeaders(path), b"X: " + b"y" * 100 + b"\r\n")
        path = self.write((b"X-A: b\r\n" * (HEADERS_LIMIT // 4)) + b"\r\nbody")
        result = originalHeaders(path)
        self.assertLessEqual(len(result), HEADERS_LIMIT)
        self.assertTrue(result.endswith(b"X-A: b\r\n"))

    def test_missing(self) -> None:
        self.assertRaises(OSError, originalHeaders, os.path.join(self.mktemp(), "nothing"))
