"""
Submission with C{smtplib}: STARTTLS then AUTH on the submission port,
implicit TLS on the submissions port, what an authenticated user may send.
"""

from __future__ import annotations

import os
import smtplib

from tests.functional.support import (
    CLIENT_NAME,
    DOMAIN,
    PASSWORD,
    SOCKET_GUARD,
    RunningServerTestCase,
    message,
    unverified,
)
from twisted.internet.threads import deferToThread



ALICE = f"alice@{DOMAIN}"


class SubmissionTests(RunningServerTestCase):
    """
    The submission listeners with a real mail client library.
    """

    aliases = {"sales": ["alice", "bob"]}

    def submit(self, work, implicit: bool = False):
        """
        Run C{work(client)} on a connection to submission (STARTTLS done)
        or submissions (implicit TLS), in a thread.
        """
        port = self.server.ports["submissions" if implicit else "submission"]

        def run():
            if implicit:
                client = smtplib.SMTP_SSL(
                    "127.0.0.1", port, local_hostname=CLIENT_NAME, timeout=SOCKET_GUARD,
                    context=unverified(),
                )
            else:
                client = smtplib.SMTP("127.0.0.1", port, local_hostname=CLIENT_NAME, timeout=SOCKET_GUARD)
            try:
                client.ehlo()
                if not implicit:
                    client.starttls(context=unverified())
                    client.ehlo()
                return work(client)
            finally:
                client.close()

        return deferToThread(run)

    async def test_authAndSendLocal(self) -> None:
        """
        STARTTLS, AUTH PLAIN with the user's password, then a message to a
        local user is delivered at once, with ESMTPSA in the trace header.
        """

        def work(client: smtplib.SMTP):
            assert "PLAIN" in client.esmtp_features["auth"], client.esmtp_features
            client.login(ALICE, PASSWORD)
            return client.sendmail(ALICE, [f"bob@{DOMAIN}"], message("submitted"))

        self.assertEqual(await self.submit(work), {})
        [stored] = self.server.messages("bob")
        self.assertIn(b"with ESMTPSA id", stored)

    async def test_authLoginImplicitTLS(self) -> None:
        """
        On the implicit-TLS port AUTH LOGIN works from the first EHLO.
        """

        def work(client: smtplib.SMTP):
            client.user, client.password = ALICE, PASSWORD
            code, _ = client.auth("LOGIN", client.auth_login, initial_response_ok=False)
            assert code == 235, code
            return client.sendmail(ALICE, [f"bob@{DOMAIN}"], message("implicit"))

        self.assertEqual(await self.submit(work, implicit=True), {})
        self.assertEqual(len(self.server.messages("bob")), 1)

    async def test_noAuthBeforeTLS(self) -> None:
        """
        Before STARTTLS, AUTH is not offered and is refused (538); MAIL is
        refused with 530.
        """

        def work():
            client = smtplib.SMTP("127.0.0.1", self.server.ports["submission"], local_hostname=CLIENT_NAME, timeout=SOCKET_GUARD)
            try:
                client.ehlo()
                offered = client.has_extn("auth")
                auth = client.docmd("AUTH", "PLAIN AGFsaWNlAHg=")
                mail = client.docmd("MAIL", f"FROM:<{ALICE}>")
                return offered, auth, mail
            finally:
                client.close()

        offered, auth, mail = await deferToThread(work)
        self.assertFalse(offered)
        self.assertEqual(auth[0], 538)
        self.assertEqual(mail[0], 530)

    async def test_wrongPassword(self) -> None:
        """
        A wrong password is refused with 535 (after the throttle's delay).
        """

        def work(client: smtplib.SMTP):
            try:
                client.login(ALICE, "wrong")
            except smtplib.SMTPAuthenticationError as e:
                return e.smtp_code
            return None

        self.assertEqual(await self.submit(work), 535)

    async def test_mailBeforeAuth(self) -> None:
        """
        After TLS but before AUTH, MAIL is 530 5.7.0.
        """

        def work(client: smtplib.SMTP):
            return client.docmd("MAIL", f"FROM:<{ALICE}>")

        code, text = await self.submit(work)
        self.assertEqual((code, text[:5]), (530, b"5.7.0"))

    async def test_senderMustBeOwn(self) -> None:
        """
        The user may send as their alias but not as another user (553 5.7.1).
        """

        def work(client: smtplib.SMTP):
            client.login(ALICE, PASSWORD)
            own = client.docmd("MAIL", f"FROM:<sales@{DOMAIN}>")
            client.rset()
            other = client.docmd("MAIL", f"FROM:<bob@{DOMAIN}>")
            return own, other

        own, other = await self.submit(work)
        self.assertEqual(own[0], 250)
        self.assertEqual((other[0], other[1][:5]), (553, b"5.7.1"))

    async def test_remoteRecipientQueued(self) -> None:
        """
        A remote recipient of an authenticated user is accepted into the
        durable relay queue (the 250 comes once the entry is on disk).
        """

        def work(client: smtplib.SMTP):
            client.login(ALICE, PASSWORD)
            return client.sendmail(ALICE, ["friend@elsewhere.example"], message("outbound"))

        self.assertEqual(await self.submit(work), {})
        queue = os.path.join(self.server.data, "queue")
        self.assertEqual(len([n for n in os.listdir(queue) if n.endswith(".msg")]), 1)

    async def test_mxDoesNotOfferAuth(self) -> None:
        """
        The MX port offers no AUTH, even after STARTTLS.
        """

        def work(client: smtplib.SMTP):
            client.ehlo()
            client.starttls(context=unverified())
            client.ehlo()
            return client.has_extn("auth")

        self.assertFalse(await self.smtp(work))

    async def test_sendersFieldAllowsMore(self) -> None:
        """
        The users file's C{senders=} extra field (per user) allows more
        sender addresses; here C{*} allows any.
        """
        from mailhub.auth.userfile import UserEntry, readUsers, writeUsers
        from tests.functional.support import cheapHash

        users = os.path.join(self.server.data, "users")
        entries = readUsers(users)
        address = f"carol@{DOMAIN}"
        entries[address] = UserEntry(address, cheapHash(PASSWORD), ("", "", "", "", "", "senders=*"))
        writeUsers(users, entries.values())
        os.makedirs(self.server.maildir("carol"), exist_ok=True)

        def work(client: smtplib.SMTP):
            client.login(address, PASSWORD)
            return client.docmd("MAIL", "FROM:<newsletter@elsewhere.example>")

        code, _ = await self.submit(work)
        self.assertEqual(code, 250)
