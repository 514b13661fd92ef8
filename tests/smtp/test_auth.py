"""
Tests for SMTP AUTH (RFC 4954) and submission rules (RFC 6409) in
L{mailhub.smtp.server}.
"""

from __future__ import annotations

import base64

from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred, fail, succeed
from twisted.trial.unittest import SynchronousTestCase

from mailhub.errors import TemporaryAuthError
from mailhub.smtp.delivery import IMailDelivery
from tests.smtp.test_server import RecordingDelivery, ServerTestsMixin


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


class FakeAuthenticator:
    """
    Accepts alice@example.test with "secret"; C{temporary} makes every
    login a temporary failure; C{hold} keeps the answer pending.
    """

    def __init__(self) -> None:
        self.logins: list[tuple[bytes, str]] = []
        self.avatar = RecordingDelivery()
        self.loggedOut = 0
        self.temporary = False
        self.hold: Deferred | None = None

    def login(self, credentials, peer, *interfaces):
        self.logins.append((credentials.username, peer))
        assert IMailDelivery in interfaces
        if self.temporary:
            return fail(TemporaryAuthError("down"))
        if credentials.username == b"alice@example.test" and credentials.password == b"secret":
            result = (IMailDelivery, self.avatar, self.logout)
            if self.hold is not None:
                self.hold.addCallback(lambda _: result)
                return self.hold
            return succeed(result)
        return fail(UnauthorizedLogin())

    def logout(self) -> None:
        self.loggedOut += 1


class SubmissionTests(ServerTestsMixin, SynchronousTestCase):
    """
    A submission listener: AUTH after TLS, MAIL only after AUTH.
    """

    def setUp(self) -> None:
        super().setUp()
        self.authenticator = FakeAuthenticator()
        self.factory.authenticator = self.authenticator
        self.factory.offerAuth = True
        self.factory.requireAuth = True

    def tls(self) -> None:
        self.greet()
        self.send(b"STARTTLS\r\n")
        self.assertEqual(self.codes(b"EHLO client.test\r\n"), ["250"])

    def test_authOfferedOnlyAfterTLS(self) -> None:
        """
        EHLO lists AUTH PLAIN LOGIN only once the connection is encrypted.
        """
        self.replies()
        self.assertNotIn("250-AUTH PLAIN LOGIN", self.send(b"EHLO c.test\r\n"))
        self.send(b"STARTTLS\r\n")
        self.assertIn("250-AUTH PLAIN LOGIN", self.send(b"EHLO c.test\r\n"))

    def test_authBeforeTLS(self) -> None:
        """
        Regression (AUTH before TLS): refused with 538 5.7.11 and no
        password is checked.
        """
        self.greet()
        lines = self.send(b"AUTH PLAIN " + b64(b"\0alice@example.test\0secret") + b"\r\n")
        self.assertEqual(lines, ["538 5.7.11 Encryption required for requested authentication mechanism"])
        self.assertEqual(self.authenticator.logins, [])

    def test_mailBeforeAuth(self) -> None:
        """
        MAIL before AUTH is 530 5.7.0 (before TLS: STARTTLS first).
        """
        self.greet()
        self.assertEqual(self.send(b"MAIL FROM:<alice@example.test>\r\n"), ["530 5.7.0 Must issue a STARTTLS command first"])
        self.send(b"STARTTLS\r\n")
        self.send(b"EHLO c.test\r\n")
        self.assertEqual(self.send(b"MAIL FROM:<alice@example.test>\r\n"), ["530 5.7.0 Authentication required"])

    def test_plainInitialResponse(self) -> None:
        """
        AUTH PLAIN with an initial response logs in; mail then goes to the
        user's delivery avatar, with ESMTPSA in the Received header.
        """
        self.tls()
        self.assertEqual(
            self.send(b"AUTH PLAIN " + b64(b"\0alice@example.test\0secret") + b"\r\n"),
            ["235 2.7.0 Authentication successful"],
        )
        self.assertEqual(self.authenticator.logins, [(b"alice@example.test", "192.0.2.7")])
        self.assertEqual(self.transaction(b"hi\r\n.\r\n"), ["250", "250", "354", "250"])
        self.assertEqual(self.delivery.messages, [])
        envelope, content = self.authenticator.avatar.messages[0]
        self.assertEqual(envelope.session.user, "alice@example.test")
        self.assertIn(b"with ESMTPSA id", content)
        self.assertNotIn(b"250-AUTH", b"".join(l.encode() for l in self.send(b"EHLO c.test\r\n")))

    def test_plainContinuation(self) -> None:
        """
        AUTH PLAIN without an initial response gets an empty 334 challenge.
        """
        self.tls()
        self.assertEqual(self.send(b"AUTH PLAIN\r\n"), ["334 "])
        self.assertEqual(self.codes(b64(b"alice@example.test\0alice@example.test\0secret") + b"\r\n"), ["235"])

    def test_login(self) -> None:
        """
        AUTH LOGIN prompts for the user name and the password.
        """
        self.tls()
        self.assertEqual(self.send(b"AUTH LOGIN\r\n"), ["334 VXNlcm5hbWU6"])
        self.assertEqual(self.send(b64(b"alice@example.test") + b"\r\n"), ["334 UGFzc3dvcmQ6"])
        self.assertEqual(self.codes(b64(b"secret") + b"\r\n"), ["235"])

    def test_wrongPassword(self) -> None:
        """
        A wrong password is 535 5.7.8, and the session may try again.
        """
        self.tls()
        self.assertEqual(
            self.send(b"AUTH PLAIN " + b64(b"\0alice@example.test\0wrong") + b"\r\n"),
            ["535 5.7.8 Error: authentication failed"],
        )
        self.assertEqual(self.codes(b"AUTH PLAIN " + b64(b"\0alice@example.test\0secret") + b"\r\n"), ["235"])

    def test_temporaryFailure(self) -> None:
        """
        A password service that cannot answer gives 454 4.7.0, not 535.
        """
        self.authenticator.temporary = True
        self.tls()
        self.assertEqual(self.codes(b"AUTH PLAIN " + b64(b"\0alice@example.test\0secret") + b"\r\n"), ["454"])

    def test_cancelAndGarbage(self) -> None:
        """
        C{*} cancels (501 5.7.0); a response that is not base64 is 501; an
        unknown mechanism is 504; the session goes on.
        """
        self.tls()
        self.send(b"AUTH LOGIN\r\n")
        self.assertEqual(self.send(b"*\r\n"), ["501 5.7.0 Authentication aborted"])
        self.assertEqual(self.codes(b"AUTH PLAIN !!!notbase64\r\n"), ["501"])
        self.assertEqual(self.codes(b"AUTH CRAM-MD5\r\n"), ["504"])
        self.assertEqual(self.codes(b"AUTH PLAIN " + b64(b"only-one-part") + b"\r\n"), ["501"])
        self.assertEqual(self.codes(b"NOOP\r\n"), ["250"])

    def test_authTwice(self) -> None:
        """
        A second AUTH is 503.
        """
        self.tls()
        self.send(b"AUTH PLAIN " + b64(b"\0alice@example.test\0secret") + b"\r\n")
        self.assertEqual(self.codes(b"AUTH PLAIN " + b64(b"\0alice@example.test\0secret") + b"\r\n"), ["503"])

    def test_pipelinedAfterAuthWaits(self) -> None:
        """
        Commands pipelined after AUTH are answered after its result.
        """
        self.authenticator.hold = Deferred()
        self.tls()
        lines = self.send(
            b"AUTH PLAIN " + b64(b"\0alice@example.test\0secret") + b"\r\nMAIL FROM:<alice@example.test>\r\n"
        )
        self.assertEqual(lines, [])
        self.authenticator.hold.callback(None)
        self.assertEqual(self.codes(b""), ["235", "250"])

    def test_logoutOnDisconnect(self) -> None:
        """
        The avatar's logout runs when the session ends.
        """
        self.tls()
        self.send(b"AUTH PLAIN " + b64(b"\0alice@example.test\0secret") + b"\r\n")
        self.server.connectionLost(None)
        self.assertEqual(self.authenticator.loggedOut, 1)


class MXAuthTests(ServerTestsMixin, SynchronousTestCase):
    """
    On the MX listener AUTH is not offered unless configured.
    """

    def test_notOffered(self) -> None:
        """
        With an authenticator but offerAuth off, AUTH is neither listed nor
        accepted.
        """
        self.factory.authenticator = FakeAuthenticator()
        self.greet()
        self.send(b"STARTTLS\r\n")
        self.assertNotIn("250-AUTH PLAIN LOGIN", self.send(b"EHLO c.test\r\n"))
        self.assertEqual(self.codes(b"AUTH PLAIN " + b64(b"\0alice@example.test\0secret") + b"\r\n"), ["503"])
