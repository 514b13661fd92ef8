"""
Stopping the service, and starting again on the same data directory.
"""

from __future__ import annotations

import os
import smtplib
from typing import Callable

from tests.functional.support import DOMAIN, SENDER, ServerTestCase, message

#: Bigger than the spool's in-memory threshold, so it passes through a
#: spool file.
LARGE_BODY = (b"z" * 998 + b"\r\n") * 400


def sendToAlice(text: bytes) -> Callable[[smtplib.SMTP], tuple[int, bytes]]:
    """
    A function for L{ServerTestCase.smtp}: one message to alice.
    """

    def work(client: smtplib.SMTP) -> tuple[int, bytes]:
        client.ehlo()
        client.mail(SENDER)
        client.rcpt(f"alice@{DOMAIN}")
        result = client.data(text)
        client.quit()
        return result

    return work


def read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class RestartTests(ServerTestCase):
    """
    A server stopped, and a new one started on its data directory.
    """

    async def test_restartKeepsMailAndCertificate(self) -> None:
        """
        After a restart the delivered messages are still in C{new/}, the
        certificate and key are the same bytes, the spool is empty
        (including a leftover a crash could have left), and mail is
        accepted again.
        """
        first = self.startServer()
        first.createMailbox("alice")
        small, large = message("before restart"), message("large", LARGE_BODY)
        for text in (small, large):
            self.assertEqual((await self.smtp(sendToAlice(text), first.port))[0], 250)
        certificate = read(first.certificatePath)
        key = read(os.path.join(first.data, "tls", "key.pem"))
        await first.stop()
        self.assertEqual(first.spoolFiles(), [])
        with open(os.path.join(first.data, "spool", "0123456789abcd"), "wb") as f:
            f.write(b"what a crash left\r\n")

        second = self.startServer(data=first.data)
        self.assertEqual(second.spoolFiles(), [])
        self.assertEqual(read(second.certificatePath), certificate)
        self.assertEqual(read(os.path.join(second.data, "tls", "key.pem")), key)
        stored = second.messages("alice")
        self.assertEqual(len(stored), 2)
        self.assertEqual(sorted(m.endswith(small) for m in stored), [False, True])
        self.assertEqual(sorted(m.endswith(large) for m in stored), [False, True])

        after = message("after restart")
        self.assertEqual((await self.smtp(sendToAlice(after), second.port))[0], 250)
        self.assertEqual(len(second.messages("alice")), 3)
        self.assertEqual(second.spoolFiles(), [])

    async def test_stopClosesOpenSessions(self) -> None:
        """
        Stopping the service tells a client still connected C{421 4.3.2}
        (RFC 5321 §3.8) and closes its connection, rather than leaving a
        session that takes mail for a stopped server.
        """
        server = self.startServer()
        client = await self.connect(server.port)
        self.assertEqual((await client.nextReply()).code, 220)
        client.write(b"EHLO client.test\r\n")
        self.assertEqual((await client.nextReply()).code, 250)
        await server.service.stopService()
        client.write(b"NOOP\r\n")
        reply = await client.nextReply()
        self.assertEqual(reply.code, 421, reply)
        self.assertTrue(reply.text.startswith("4.3.2 "), reply)
        await client.closed

