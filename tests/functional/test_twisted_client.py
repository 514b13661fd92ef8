"""
Twisted's own SMTP client against the server: one message in the clear,
one over verified STARTTLS, and a hundred at once.
"""

from __future__ import annotations

from twisted.internet.defer import gatherResults
from twisted.internet.ssl import Certificate, optionsForClientTLS

from tests.functional.support import DOMAIN, HOSTNAME, RunningServerTestCase


def lfMessage(subject: str, body: str) -> bytes:
    """
    A message with LF line ends, which Twisted's client turns into CRLF.
    """
    return (
        f"From: <sender@client.test>\nTo: <alice@{DOMAIN}>\nSubject: {subject}\n\n{body}"
    ).encode("utf-8")


class TwistedClientTests(RunningServerTestCase):
    """
    L{twisted.mail.smtp.ESMTPSenderFactory} delivering to alice.
    """

    async def test_sendWithoutTLS(self) -> None:
        """
        With no TLS context the client sends in the clear, and the message
        arrives, with CRLF line ends.
        """
        text = lfMessage("from Twisted", "One.\n.Two.\nThree.\n")
        accepted, addresses = await self.twistedSend([f"alice@{DOMAIN}"], text)
        self.assertEqual(accepted, 1)
        [stored] = self.server.messages("alice")
        self.assertTrue(stored.endswith(text.replace(b"\n", b"\r\n")), stored)
        self.assertIn(b" with ESMTP id ", stored)

    async def test_sendRequiringTLS(self) -> None:
        """
        With C{requireTransportSecurity} and a context that trusts only the
        server's certificate, checked for its hostname, the client upgrades
        with STARTTLS and the message arrives marked ESMTPS.
        """
        with open(self.server.certificatePath, "rb") as f:
            trustRoot = Certificate.loadPEM(f.read())
        context = optionsForClientTLS(HOSTNAME, trustRoot=trustRoot)
        text = lfMessage("from Twisted over TLS", "Secret.\n")
        accepted, addresses = await self.twistedSend(
            [f"alice@{DOMAIN}"], text, contextFactory=context, requireTransportSecurity=True
        )
        self.assertEqual(accepted, 1)
        [stored] = self.server.messages("alice")
        self.assertTrue(stored.endswith(text.replace(b"\n", b"\r\n")))
        self.assertIn(b" with ESMTPS id ", stored)


class ConcurrencyTests(RunningServerTestCase):
    """
    Many clients at once (loopback is exempt from the per-peer limit by
    default).
    """

    async def test_hundredConcurrentClients(self) -> None:
        """
        A hundred clients connected at the same time each deliver one
        message; all hundred arrive, each once and intact.
        """
        texts = [
            lfMessage(f"concurrent {n}", f"This is message number {n} of 100.\n") for n in range(100)
        ]
        results = await gatherResults(
            [self.twistedSend([f"alice@{DOMAIN}"], text) for text in texts], consumeErrors=True
        )
        self.assertEqual([accepted for accepted, _ in results], [1] * 100)
        stored = self.server.messages("alice")
        self.assertEqual(len(stored), 100)
        bodies = sorted(m.split(b"\r\n\r\n", 1)[1] for m in stored)
        expected = sorted(t.split(b"\n\n", 1)[1].replace(b"\n", b"\r\n") for t in texts)
        self.assertEqual(bodies, expected)
