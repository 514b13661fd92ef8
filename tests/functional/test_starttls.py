"""
STARTTLS with C{smtplib}: the session after TLS, the trace header, the
server's own certificate, and the oldest protocols refused.
"""

from __future__ import annotations

import smtplib
import ssl
import warnings
from email.parser import BytesHeaderParser
from typing import Callable
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.trial.unittest import SkipTest

from tests.functional.support import DOMAIN, HOSTNAME, SENDER, RunningServerTestCase, message, unverified



class StartTLSTests(RunningServerTestCase):
    """
    STARTTLS on the MX listener with the self-signed certificate made at
    first start.
    """

    def startTLSAndSend(
        self, context: ssl.SSLContext, serverHostname: str | None = None
    ) -> Callable[[smtplib.SMTP], tuple[dict[str, str], str, str, tuple[int, bytes], bytes]]:
        """
        A function for L{RunningServerTestCase.smtp}: STARTTLS, EHLO again,
        send one message to alice.

        @return: a function that returns the features after TLS, the TLS
            version and cipher, the reply to the message text, and the
            message.
        """
        text = message("over TLS")

        def work(client: smtplib.SMTP) -> tuple[dict[str, str], str, str, tuple[int, bytes], bytes]:
            client.ehlo()
            if serverHostname is not None:
                # smtplib checks the certificate against the host it
                # connected to; here that is 127.0.0.1, and the name to
                # check is the server's.
                client._host = serverHostname
            code, reply = client.starttls(context=context)
            assert code == 220, (code, reply)
            client.ehlo()
            features = dict(client.esmtp_features)
            version = client.sock.version()
            cipher = client.sock.cipher()[0]
            self.assertEqual(client.mail(SENDER)[0], 250)
            self.assertEqual(client.rcpt(f"alice@{DOMAIN}")[0], 250)
            result = client.data(text)
            client.quit()
            return features, version, cipher, result, text

        return work

    def assertReceivedOverTLS(self, version: str, cipher: str, text: bytes) -> None:
        [stored] = self.server.messages("alice")
        self.assertTrue(stored.endswith(text))
        trace = BytesHeaderParser().parsebytes(stored[: -len(text)])
        received = " ".join(trace["Received"].split())
        self.assertIn(f"(using {version} with cipher {cipher} ", received)
        self.assertIn(f"by {HOSTNAME} (mailhub) with ESMTPS id ", received)

    async def test_startTLSThenSend(self) -> None:
        """
        After STARTTLS and a new EHLO, STARTTLS is no longer offered; a
        message sent then is marked ESMTPS in C{Received:}, with the TLS
        version and cipher.
        """
        features, version, cipher, (code, reply), text = await self.smtp(
            self.startTLSAndSend(unverified())
        )
        self.assertNotIn("starttls", features)
        self.assertIn("pipelining", features)
        self.assertEqual(code, 250, reply)
        self.assertReceivedOverTLS(version, cipher, text)

    async def test_certificateVerifiesForHostname(self) -> None:
        """
        The self-signed certificate in C{DATA/tls/cert.pem}, used as the
        only trust root, verifies for the configured hostname.
        """
        context = ssl.create_default_context(cafile=self.server.certificatePath)
        self.assertTrue(context.check_hostname)
        features, version, cipher, (code, reply), text = await self.smtp(
            self.startTLSAndSend(context, serverHostname=HOSTNAME)
        )
        self.assertEqual(code, 250, reply)
        self.assertReceivedOverTLS(version, cipher, text)

    async def test_tls11Refused(self) -> None:
        """
        A client that offers nothing newer than TLS 1.1 gets a
        protocol_version alert from the server (TLS 1.2 is the minimum, RFC
        8996), and nothing is delivered.
        """
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            try:
                context = unverified()
                context.minimum_version = ssl.TLSVersion.TLSv1_1
                context.maximum_version = ssl.TLSVersion.TLSv1_1
                # TLS 1.1 needs SHA-1, which security level 1 forbids.
                context.set_ciphers("DEFAULT:@SECLEVEL=0")
            except (ValueError, ssl.SSLError) as e:
                raise SkipTest(f"this OpenSSL cannot make a TLS 1.1 client: {e}")

        def work(client: smtplib.SMTP) -> ssl.SSLError | None:
            client.ehlo()
            try:
                client.starttls(context=context)
            except ssl.SSLError as e:
                return e
            return None

        error = await self.smtp(work)
        self.assertIsNotNone(error, "the TLS 1.1 handshake succeeded")
        if error.reason in ("NO_PROTOCOLS_AVAILABLE", "NO_CIPHERS_AVAILABLE"):
            raise SkipTest(f"this OpenSSL will not offer TLS 1.1: {error}")
        # The server said no: an alert from the peer, not a local failure.
        self.assertEqual(error.reason, "TLSV1_ALERT_PROTOCOL_VERSION", str(error))
        self.assertEqual(self.server.messages("alice"), [])

    async def test_commandsPipelinedAfterStartTLSDiscarded(self) -> None:
        """
        Commands written in plaintext in the same packet as STARTTLS are
        thrown away (RFC 3207 §4.2): after the handshake the first reply is
        the one to the client's new EHLO, and the session before TLS
        (HELO, sender, recipients) is forgotten.
        """
        with open(self.server.certificatePath, "rb") as f:
            context = optionsForClientTLS(HOSTNAME, trustRoot=Certificate.loadPEM(f.read()))
        client = await self.connect()
        self.assertEqual((await client.nextReply()).code, 220)
        client.write(b"EHLO client.test\r\n")
        self.assertEqual((await client.nextReply()).code, 250)
        client.write(
            f"MAIL FROM:<{SENDER}>\r\nSTARTTLS\r\nRCPT TO:<alice@{DOMAIN}>\r\nNOOP\r\n".encode()
        )
        mail, ready = await client.replies(2)
        self.assertEqual((mail.code, ready.code), (250, 220))
        client.transport.startTLS(context)
        client.write(b"EHLO client.test\r\n")
        ehlo = await client.nextReply()
        self.assertEqual(ehlo.code, 250)
        self.assertEqual(ehlo.text.split("\n")[0], HOSTNAME)
        # The sender given before TLS is gone: RCPT needs a new MAIL.
        client.write(f"RCPT TO:<alice@{DOMAIN}>\r\nQUIT\r\n".encode())
        rcpt, bye = await client.replies(2)
        self.assertEqual(rcpt.code, 503, rcpt)
        self.assertEqual(bye.code, 221)
        await client.closed
        self.assertEqual(client.unread, [])
