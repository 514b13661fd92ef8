"""
Message size: a large message arrives intact; one over the limit is
refused (C{552 5.3.4}) however the client declares its size, and nothing
of it is kept.
"""

from __future__ import annotations

import base64
import hashlib
import os
import smtplib

from tests.functional.support import DOMAIN, SENDER, RunningServerTestCase, message

MiB = 1024 * 1024


class LargeMessageTests(RunningServerTestCase):
    """
    A limit of 25 MiB.
    """

    limits = {"message_size": 25 * MiB}

    async def test_twentyMegabyteMessageArrivesIntact(self) -> None:
        """
        A message of about 20 MiB (declared with SIZE) is stored whole: the
        body's SHA-256 is the one sent, and the spool is empty afterwards.
        """
        # 76-character base64 lines: no dots, no long lines.
        body = base64.encodebytes(os.urandom(15 * MiB)).replace(b"\n", b"\r\n")
        self.assertGreater(len(body), 20 * MiB)
        text = message("large", body)

        def send(client: smtplib.SMTP) -> tuple[int, bytes]:
            client.ehlo()
            self.assertEqual(client.mail(SENDER, [f"SIZE={len(text)}"])[0], 250)
            self.assertEqual(client.rcpt(f"alice@{DOMAIN}")[0], 250)
            result = client.data(text)
            client.quit()
            return result

        code, reply = await self.smtp(send)
        self.assertEqual(code, 250, reply)
        [stored] = self.server.messages("alice")
        storedBody = stored.split(b"\r\n\r\n", 1)[1]
        self.assertEqual(len(storedBody), len(body))
        self.assertEqual(hashlib.sha256(storedBody).hexdigest(), hashlib.sha256(body).hexdigest())
        self.assertTrue(stored.endswith(text))
        self.assertEqual(self.server.spoolFiles(), [])


def ofSize(size: int, subject: str) -> bytes:
    """
    A message of exactly C{size} octets, in lines of at most 1000.
    """
    head = message(subject, b"")
    left = size - len(head)
    lines, last = divmod(left, 1000)
    body = (b"a" * 998 + b"\r\n") * lines
    if last:
        assert last >= 2
        body += b"b" * (last - 2) + b"\r\n"
    text = head + body
    assert len(text) == size
    return text


class AbandonedMessageTests(RunningServerTestCase):
    """
    A client that goes away in the middle of a message.
    """

    async def test_disconnectDuringDataDeliversNothing(self) -> None:
        """
        A client that hangs up halfway through a message large enough to be
        spooled to a file leaves nothing behind: no message, no spool file.
        """
        client = await self.connect()
        self.assertEqual((await client.nextReply()).code, 220)
        client.write(
            f"EHLO client.test\r\nMAIL FROM:<{SENDER}>\r\nRCPT TO:<alice@{DOMAIN}>\r\nDATA\r\n".encode()
        )
        self.assertEqual([r.code for r in await client.replies(4)], [250, 250, 250, 354])
        client.write(message("abandoned", (b"a" * 998 + b"\r\n") * 1000))
        client.transport.loseConnection()
        await client.closed
        await self.server.sessionsClosed()
        self.assertEqual(self.server.messages("alice"), [])
        self.assertEqual(self.server.spoolFiles(), [])


class SizeLimitTests(RunningServerTestCase):
    """
    A limit of 1 MiB.
    """

    limits = {"message_size": MiB}

    def setUp(self) -> None:
        super().setUp()
        self.big = message("too big", (b"x" * 998 + b"\r\n") * (MiB // 1000 + 10))
        self.assertGreater(len(self.big), MiB)

    def assertNothingKept(self) -> None:
        self.assertEqual(self.server.messages("alice"), [])
        self.assertEqual(self.server.spoolFiles(), [])

    async def test_ehloAnnouncesLimit(self) -> None:
        """
        EHLO announces the configured limit.
        """

        def ehlo(client: smtplib.SMTP) -> str | None:
            client.ehlo()
            return client.esmtp_features.get("size")

        self.assertEqual(await self.smtp(ehlo), str(MiB))

    async def test_limitIsInclusive(self) -> None:
        """
        A message of exactly the limit is accepted; one octet more is
        refused.
        """

        def send(client: smtplib.SMTP) -> list[tuple[int, bytes]]:
            client.ehlo()
            results = []
            for size in (MiB, MiB + 1):
                self.assertEqual(client.docmd("MAIL", f"FROM:<{SENDER}>")[0], 250)
                self.assertEqual(client.docmd("RCPT", f"TO:<alice@{DOMAIN}>")[0], 250)
                results.append(client.data(ofSize(size, f"size {size}")))
            client.quit()
            return results

        exact, over = await self.smtp(send)
        self.assertEqual(exact[0], 250, exact)
        self.assertEqual(over[0], 552, over)
        [stored] = self.server.messages("alice")
        self.assertTrue(stored.endswith(ofSize(MiB, f"size {MiB}")))

    async def test_declaredSizeOverLimitRefusedAtMail(self) -> None:
        """
        MAIL with a SIZE above the limit: C{552 5.3.4} at once (RFC 1870).
        """

        def send(client: smtplib.SMTP) -> tuple[int, bytes]:
            client.ehlo()
            result = client.mail(SENDER, [f"SIZE={len(self.big)}"])
            client.quit()
            return result

        code, reply = await self.smtp(send)
        self.assertEqual(code, 552)
        self.assertTrue(reply.startswith(b"5.3.4 "), reply)
        self.assertNothingKept()

    async def test_undeclaredSizeOverLimitRefusedAfterData(self) -> None:
        """
        MAIL without SIZE, then a message over the limit: C{552 5.3.4}
        after the final dot, nothing stored, and the session goes on (a
        small message afterwards is accepted).
        """
        small = message("small")

        def send(client: smtplib.SMTP) -> tuple[tuple[int, bytes], tuple[int, bytes]]:
            client.ehlo()
            self.assertEqual(client.docmd("MAIL", f"FROM:<{SENDER}>")[0], 250)
            self.assertEqual(client.docmd("RCPT", f"TO:<alice@{DOMAIN}>")[0], 250)
            refused = client.data(self.big)
            self.assertEqual(client.docmd("MAIL", f"FROM:<{SENDER}>")[0], 250)
            self.assertEqual(client.docmd("RCPT", f"TO:<alice@{DOMAIN}>")[0], 250)
            accepted = client.data(small)
            client.quit()
            return refused, accepted

        (code, reply), (smallCode, _) = await self.smtp(send)
        self.assertEqual(code, 552)
        self.assertTrue(reply.startswith(b"5.3.4 "), reply)
        self.assertEqual(smallCode, 250)
        [stored] = self.server.messages("alice")
        self.assertTrue(stored.endswith(small))
        self.assertEqual(self.server.spoolFiles(), [])

    async def test_understatedSizeOverLimitRefusedAfterData(self) -> None:
        """
        A client that declares a small SIZE and then sends more than the
        limit is refused after the final dot all the same.
        """

        def send(client: smtplib.SMTP) -> tuple[int, bytes]:
            client.ehlo()
            self.assertEqual(client.mail(SENDER, ["SIZE=1000"])[0], 250)
            self.assertEqual(client.rcpt(f"alice@{DOMAIN}")[0], 250)
            result = client.data(self.big)
            client.quit()
            return result

        code, reply = await self.smtp(send)
        self.assertEqual(code, 552)
        self.assertTrue(reply.startswith(b"5.3.4 "), reply)
        self.assertNothingKept()
