"""
IMAP commands end to end with the stdlib C{imaplib} (and the raw client
where a test must see the octets): TLS and login, AUTHENTICATE PLAIN,
NAMESPACE, ID, ENABLE, the per-user session limit, EXAMINE, CLOSE,
UNSELECT, CHECK, framing (pipelining, literals, LITERAL+, big messages), and
bad input.  FETCH and SEARCH are in L{tests.functional.test_imap_fetch_search},
APPEND, COPY, MOVE and the folder commands in
L{tests.functional.test_imap_mailboxes}.
"""

from __future__ import annotations

import base64
import imaplib
import os
import re
from typing import Any

from twisted.internet.threads import deferToThread

from tests.functional.imapsupport import (
    ALICE,
    BOB,
    PASSWORD,
    IMAPTestCase,
    check,
    failure,
    fetched,
    maildirFiles,
    parseValues,
    unverified,
)
from tests.functional.support import SOCKET_GUARD, message

#: The extensions the server announces once TLS is on.
EXTENSIONS = (
    "IMAP4REV1", "IDLE", "NAMESPACE", "UIDPLUS", "MOVE", "SPECIAL-USE", "ENABLE",
    "UNSELECT", "LITERAL+", "ID", "CHILDREN", "AUTH=PLAIN",
)


class SessionCommandTests(IMAPTestCase):
    """
    TLS, login, and the commands of any state and of the authenticated
    state.
    """

    async def test_startTLSThenLogin(self) -> None:
        """
        On the plain port the greeting offers STARTTLS and LOGINDISABLED;
        after STARTTLS neither is offered, AUTH=PLAIN and the extensions
        are, and LOGIN works.
        """

        def run() -> tuple[tuple[str, ...], tuple[str, ...], str]:
            client = imaplib.IMAP4("127.0.0.1", self.server.ports["imap"], timeout=SOCKET_GUARD)
            try:
                before = client.capabilities
                refused = failure(client.login, ALICE, PASSWORD)
                check(client.starttls(ssl_context=unverified()))
                after = client.capabilities
                check(client.login(ALICE, PASSWORD))
                return before, after, refused
            finally:
                client.logout()

        before, after, refused = await deferToThread(run)
        self.assertIn("STARTTLS", before)
        self.assertIn("LOGINDISABLED", before)
        self.assertNotIn("AUTH=PLAIN", before)
        self.assertIn("PRIVACYREQUIRED", refused)
        self.assertNotIn("STARTTLS", after)
        self.assertNotIn("LOGINDISABLED", after)
        for name in EXTENSIONS:
            self.assertIn(name, after)

    async def test_implicitTLS(self) -> None:
        """
        The implicit-TLS port is TLS from the first byte: no STARTTLS, no
        LOGINDISABLED, and LOGIN works at once.
        """

        def work(client: imaplib.IMAP4) -> tuple[str, ...]:
            check(client.noop())
            return tuple(check(client.capability())[0].decode().upper().split())

        capabilities = await self.imap(work, implicit=True)
        self.assertNotIn("STARTTLS", capabilities)
        self.assertNotIn("LOGINDISABLED", capabilities)
        for name in EXTENSIONS:
            self.assertIn(name, capabilities)

    async def test_authenticatePlain(self) -> None:
        """
        AUTHENTICATE PLAIN with a continuation, and with the initial
        response on the command line (SASL-IR), both log in; a response
        that is not base64, or "*" (the client cancels), is BAD and the
        session can still log in.
        """

        def continued(client: imaplib.IMAP4) -> str:
            response = f"\0{ALICE}\0{PASSWORD}".encode()
            return check(client.authenticate("PLAIN", lambda challenge: response))[0].decode()

        self.assertIn("Logged in", await self.imap(continued, login=False))

        client = await self.raw(user=None)
        bad = await client.command("AUTHENTICATE PLAIN !!!notbase64")
        self.assertEqual(bad.status, "BAD")
        _, cancelled = client.start("AUTHENTICATE PLAIN")
        await client.waitFor(rb"\+ ")
        client.send(b"*\r\n")
        self.assertEqual((await cancelled).status, "BAD")  # RFC 3501 §6.2.2: cancelled
        initial = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode()).decode()
        reply = await client.command(f"AUTHENTICATE PLAIN {initial}")
        self.assertTrue(reply.ok, reply)
        self.assertIn("CAPABILITY", reply.text)
        self.assertTrue((await client.command("SELECT INBOX")).ok)
        await client.command("LOGOUT")

    async def test_authenticateUnknownMechanism(self) -> None:
        """
        A mechanism the server does not offer is refused; PLAIN still works.
        """

        def work(client: imaplib.IMAP4) -> str:
            refused = failure(client.authenticate, "CRAM-MD5", lambda challenge: b"x")
            response = f"\0{ALICE}\0{PASSWORD}".encode()
            check(client.authenticate("PLAIN", lambda challenge: response))
            return refused

        self.assertIn("Unsupported mechanism", await self.imap(work, login=False))

    async def test_wrongPassword(self) -> None:
        """
        A wrong password is NO [AUTHENTICATIONFAILED], and the session may
        try again.
        """

        def work(client: imaplib.IMAP4) -> str:
            refused = failure(client.login, ALICE, "wrong")
            check(client.login(ALICE, PASSWORD))
            return refused

        self.assertIn("AUTHENTICATIONFAILED", await self.imap(work, login=False))

    async def test_namespace(self) -> None:
        """
        NAMESPACE (RFC 2342): one personal namespace, prefix "" and
        separator "/"; no shared or other users' namespaces.
        """

        def work(client: imaplib.IMAP4) -> bytes:
            return check(client.namespace())[0]

        self.assertEqual(await self.imap(work), b'(("" "/")) NIL NIL')

    async def test_id(self) -> None:
        """
        ID (RFC 2971) before and after login, with parameters or NIL, says
        the server's name; a malformed ID is BAD.
        """
        client = await self.raw(tls="none", user=None)
        reply = await client.command('ID ("name" "test" "version" "1")')
        self.assertTrue(reply.ok, reply)
        self.assertEqual(parseValues(reply.untagged[0]), ["*", "ID", [b"name", b"mailhub"]])
        self.assertTrue((await client.command("ID NIL")).ok)
        self.assertEqual((await client.command('ID ("odd")')).status, "BAD")
        self.assertEqual((await client.command("ID")).status, "BAD")
        await client.command("LOGOUT")

        def work(client: imaplib.IMAP4) -> list[Any]:
            typ, data = client.xatom("ID", '("name" "imaplib")')
            check((typ, data))
            return client._untagged_response(typ, data, "ID")[1]

        self.assertEqual(await self.imap(work), [b'("name" "mailhub")'])

    async def test_enable(self) -> None:
        """
        ENABLE (RFC 5161) answers ENABLED with nothing for an extension the
        server does not have; it is BAD before login.
        """
        client = await self.raw(user=None)
        self.assertEqual((await client.command("ENABLE X-NOTHING")).status, "BAD")
        await client.command(f'LOGIN "{ALICE}" "{PASSWORD}"')
        reply = await client.command("ENABLE X-NOTHING")
        self.assertTrue(reply.ok, reply)
        self.assertEqual(reply.untagged, [b"* ENABLED"])
        self.assertEqual((await client.command("ENABLE")).status, "BAD")
        await client.command("LOGOUT")

    async def test_capabilityAndNoopAnyState(self) -> None:
        """
        CAPABILITY and NOOP work before login; commands of the
        authenticated state are BAD before login, and commands of the
        selected state before a SELECT.
        """
        client = await self.raw(user=None)
        reply = await client.command("CAPABILITY")
        self.assertTrue(reply.ok)
        self.assertTrue(reply.untagged[0].startswith(b"* CAPABILITY IMAP4rev1"))
        self.assertTrue((await client.command("NOOP")).ok)
        for command in ("SELECT INBOX", "LIST \"\" *", "NAMESPACE"):
            self.assertEqual((await client.command(command)).status, "BAD", command)
        await client.command(f'LOGIN "{ALICE}" "{PASSWORD}"')
        for command in ("FETCH 1 FLAGS", "CHECK", "CLOSE", "UNSELECT", "EXPUNGE", "SEARCH ALL"):
            self.assertEqual((await client.command(command)).status, "BAD", command)
        self.assertEqual((await client.command(f'LOGIN "{ALICE}" "{PASSWORD}"')).status, "BAD")
        reply = await client.command("LOGOUT")
        self.assertEqual(reply.untagged, [b"* BYE Logging out"])
        await client.closed

    async def test_perUserSessionLimit(self) -> None:
        """
        A user may have at most C{connectionsPerUser} sessions logged in on
        a listener; the next login is NO [LIMIT], another user is not
        affected, and a closed session makes room.
        """
        factory = self.server.service.factories["imap"]
        factory.connectionsPerUser = 2
        first = await self.raw()
        await self.raw()
        third = await self.raw(user=None)
        refused = await third.command(f'LOGIN "{ALICE}" "{PASSWORD}"')
        self.assertEqual(refused.status, "NO")
        self.assertIn("[LIMIT]", refused.text)
        self.assertTrue((await third.command(f'LOGIN "{BOB}" "{PASSWORD}"')).ok)
        fourth = await self.raw(user=None)
        await first.command("LOGOUT")
        await first.closed
        self.assertTrue((await fourth.command(f'LOGIN "{ALICE}" "{PASSWORD}"')).ok)


class SelectedStateTests(IMAPTestCase):
    """
    EXAMINE, CHECK, CLOSE and UNSELECT.
    """

    async def test_examineIsReadOnly(self) -> None:
        """
        EXAMINE answers [READ-ONLY] with empty PERMANENTFLAGS; BODY[] and
        RFC822.TEXT do not set \\Seen (nor does anything change on disk);
        STORE, EXPUNGE and MOVE are NO [READ-ONLY]; the message in new/
        stays there, \\Recent to this session.
        """
        await self.deliver(message("look, don't touch"))
        before = maildirFiles(self.folder())

        def work(client: imaplib.IMAP4) -> Any:
            check(client.select("INBOX", readonly=True))
            permanent = client.response("PERMANENTFLAGS")[1]
            body = fetched(check(client.fetch("1", "(BODY[] RFC822.TEXT FLAGS)")))[1]
            refused = [
                failure(client.store, "1", "+FLAGS", "(\\Deleted)"),
                failure(client.expunge),
                failure(client.xatom, "MOVE", "1", "Trash"),
            ]
            return permanent, body, refused

        permanent, body, refused = await self.imap(work)
        self.assertEqual(permanent, [b"()"])
        self.assertEqual(body["FLAGS"], ["\\Recent"])
        for text in refused:
            self.assertIn("READ-ONLY", text)
        self.assertEqual(maildirFiles(self.folder()), before)
        self.assertEqual(list(before.values()), ["new"])
        self.assertEqual(len(self.stdlibMaildir("Trash")), 0)

    async def test_closeExpungesSilently(self) -> None:
        """
        CLOSE expunges the \\Deleted messages without EXPUNGE responses and
        leaves the selected state; after EXAMINE it expunges nothing.
        """
        client = await self.raw()
        for n in range(3):
            text = message(f"n{n}")
            tag = client.nextTag()
            reply = client.expectTag(tag)
            client.send(tag + b" APPEND INBOX (\\Deleted) {%d+}\r\n" % len(text) + text + b"\r\n")
            self.assertTrue((await reply).ok)
        await client.command("EXAMINE INBOX")
        reply = await client.command("CLOSE")
        self.assertEqual((reply.status, reply.untagged), ("OK", []))
        self.assertEqual(len(self.stdlibMaildir()), 3)
        await client.command("SELECT INBOX")
        await client.command("STORE 2 -FLAGS.SILENT (\\Deleted)")
        reply = await client.command("CLOSE")
        self.assertEqual((reply.status, reply.untagged), ("OK", []))
        self.assertEqual((await client.command("FETCH 1 FLAGS")).status, "BAD")
        self.assertEqual([m["Subject"] for m in self.stdlibMaildir().values()], ["n1"])
        await client.command("LOGOUT")

    async def test_unselectKeepsDeleted(self) -> None:
        """
        UNSELECT (RFC 3691) leaves the selected state without expunging.
        """

        def work(client: imaplib.IMAP4) -> Any:
            check(client.append("INBOX", "(\\Deleted)", None, message("kept")))
            check(client.select("INBOX"))
            check(client.unselect())
            return client.state, check(client.select("INBOX"))[0]

        state, count = await self.imap(work)
        self.assertEqual((state, count), ("AUTH", b"1"))
        self.assertEqual(len(self.stdlibMaildir()), 1)
        client = await self.raw()
        await client.command("SELECT INBOX")
        reply = await client.command("UNSELECT")
        self.assertEqual((reply.status, reply.untagged), ("OK", []))
        self.assertEqual((await client.command("FETCH 1 FLAGS")).status, "BAD")
        self.assertEqual((await client.command("UNSELECT")).status, "BAD")
        await client.command("LOGOUT")
        self.assertEqual(len(self.stdlibMaildir()), 1)

    async def test_checkAndNoopReportNewMail(self) -> None:
        """
        CHECK and NOOP report messages delivered since SELECT (EXISTS and
        RECENT).
        """
        client = await self.raw()
        reply = await client.command("SELECT INBOX")
        self.assertIn(b"* 0 EXISTS", reply.untagged)
        await self.deliver(message("while selected"))
        reply = await client.command("CHECK")
        self.assertTrue(reply.ok)
        self.assertIn(b"* 1 EXISTS", reply.untagged)
        self.assertIn(b"* 1 RECENT", reply.untagged)
        await self.deliver(message("another"))
        reply = await client.command("NOOP")
        self.assertIn(b"* 2 EXISTS", reply.untagged)
        reply = await client.command("FETCH 1:* (FLAGS)")
        self.assertEqual(len([r for r in reply.untagged if b"FETCH" in r]), 2)
        await client.command("LOGOUT")


class BadInputTests(IMAPTestCase):
    """
    What a careless or hostile client sends: malformed commands, long
    lines, big literals, names that would leave the user's tree, input
    pipelined after STARTTLS.
    """

    async def test_malformedCommandsAreBAD(self) -> None:
        """
        Each malformed command is answered BAD (tagged where a tag could be
        read) and the session goes on.
        """
        client = await self.raw()
        for line in (
            b"",
            b"nocommand",
            b"t FROBNICATE",
            b"t SELECT",
            b"t SELECT INBOX Sent",
            b't SELECT "unterminated',
            b't LIST ("" *',
            b"t UID FROB 1",
            b't"quoted NOOP',
            b"t STATUS INBOX MESSAGES",
            b"t LOGIN a b",
            b"(t) NOOP",
            b"t+ NOOP",
        ):
            client.send(line + b"\r\n")
            tag = line.split(b" ")[0]
            response = await client.waitFor(rb"(?:\*|" + re.escape(tag) + rb") BAD ")
            self.assertTrue(response, line)
        await client.command("SELECT INBOX")
        for command in ("FETCH 1 FLAGS", "FETCH x FLAGS", "FETCH 1:* (BODY[1.2.]", "FETCH 1:* BODY[NOPE]", "STORE 1:* FLAGS", "COPY"):
            self.assertEqual((await client.command(command)).status, "BAD", command)
        reply = await client.command("NOOP")
        self.assertTrue(reply.ok, reply)
        await client.command("LOGOUT")

    async def test_tooManyErrorsDisconnects(self) -> None:
        """
        After twenty errors the server says BYE and closes the connection.
        """
        client = await self.raw(user=None)
        client.send(b"".join(b"t%d FROBNICATE\r\n" % n for n in range(25)))
        await client.waitFor(rb"\* BYE")
        await client.closed
        bads = [r for r in client.responses if b" BAD " in r]
        self.assertEqual(len(bads), 20)

    async def test_longLineRefusedSessionGoesOn(self) -> None:
        """
        A command line longer than the limit is BAD [TOOBIG]; it is not
        run, and the next command is.
        """
        client = await self.raw()
        client.send(b"t1 CREATE " + b"x" * 10000 + b"\r\n")
        response = await client.waitFor(rb"\* BAD \[TOOBIG\]")
        self.assertIn(b"too long", response)
        self.assertTrue((await client.command("NOOP")).ok)
        self.assertEqual([e for e in os.listdir(self.folder()) if e.startswith(".x")], [])
        await client.command("LOGOUT")

    async def test_folderNamesThatEscapeRefused(self) -> None:
        """
        Folder names with C{..} or C{.} levels, empty levels, a leading
        separator, NUL or other control characters (sent as literals),
        or a literal C{.} are refused by CREATE, RENAME, SELECT, APPEND,
        COPY and DELETE; nothing is made outside or inside the tree.
        """
        client = await self.raw()
        await client.command("SELECT INBOX")
        root = self.folder()
        parent = os.path.dirname(root)
        before = sorted(os.listdir(root)), sorted(os.listdir(parent))
        names = [b"..", b"../bob", b"a/../../bob", b"./a", b"a//b", b"/etc", b"a.b", b"~root", b"..Sent"]
        literals = [b"a\x00b", b"a\x01b", b"line\r\nbreak", b"tab\there", b"del\x7f"]
        commands = ["CREATE {}", "SELECT {}", "DELETE {}", "RENAME Sent {}", "RENAME {} Other", "SUBSCRIBE {}", "STATUS {} (MESSAGES)"]
        for name in names:
            for command in commands:
                reply = await client.command(command.format('"' + name.decode() + '"'))
                self.assertIn(reply.status, ("NO", "BAD"), (command, name, reply))
        for name in literals:
            for command in commands:
                head, _, tail = command.partition("{}")
                tag = client.nextTag()
                reply = client.expectTag(tag)
                client.send(tag + b" " + head.encode() + b"{%d+}\r\n" % len(name) + name + tail.encode() + b"\r\n")
                answer = await reply
                self.assertIn(answer.status, ("NO", "BAD"), (command, name, answer))
        text = message("escape")
        for name in names[:3]:
            tag = client.nextTag()
            reply = client.expectTag(tag)
            client.send(tag + b' APPEND "' + name + b'" {%d+}\r\n' % len(text) + text + b"\r\n")
            self.assertIn((await reply).status, ("NO", "BAD"), name)
        self.assertTrue((await client.command("NOOP")).ok)
        await client.command("LOGOUT")
        self.assertEqual((sorted(os.listdir(root)), sorted(os.listdir(parent))), before)
        self.assertEqual(maildirFiles(self.folder(user="bob")), {})

    async def test_commandsPipelinedAfterSTARTTLSDiscarded(self) -> None:
        """
        Commands sent in the clear right after STARTTLS, in the same
        packet, are not run inside TLS (the injection of CVE-2011-0411's
        kind, RFC 3501 §6.2.1).
        """
        client = await self.raw(tls="none", user=None)
        tag = client.nextTag()
        reply = client.expectTag(tag)
        client.send(tag + b" STARTTLS\r\ninjected LOGIN " + ALICE.encode() + b' "' + PASSWORD.encode() + b'"\r\n')
        self.assertTrue((await reply).ok)
        client.transport.startTLS(self.clientTLS())
        reply = await client.command("CAPABILITY")
        self.assertTrue(reply.ok)
        self.assertFalse([r for r in client.responses if r.startswith(b"injected")])
        # Not logged in: the injected LOGIN never ran.
        self.assertEqual((await client.command("SELECT INBOX")).status, "BAD")


class ProtocolTests(IMAPTestCase):
    """
    The framing of commands: pipelining, literals where a string may be,
    big messages, a client that goes away mid-command.
    """

    async def test_pipelinedCommandsAnsweredInOrder(self) -> None:
        """
        Commands sent together in one write are each answered, in order,
        with the untagged responses of each before its tagged reply.
        """
        await self.deliver(message("one"), message("two"))
        client = await self.raw()
        replies = [client.expectTag(b"p%d" % n) for n in range(5)]
        client.send(
            b"p0 SELECT INBOX\r\np1 STORE 1 +FLAGS (\\Flagged)\r\np2 FETCH 2 (UID)\r\n"
            b"p3 SEARCH FLAGGED\r\np4 NOOP\r\n"
        )
        answers = [await d for d in replies]
        self.assertEqual([a.status for a in answers], ["OK"] * 5)
        self.assertIn(b"* 2 EXISTS", answers[0].untagged)
        self.assertEqual(answers[1].untagged, [b"* 1 FETCH (FLAGS (\\Flagged \\Recent))"])
        self.assertEqual(answers[2].untagged, [b"* 2 FETCH (UID 2)"])
        self.assertEqual(answers[3].untagged, [b"* SEARCH 1"])
        await client.command("LOGOUT")

    async def test_literalsWhereStringsMayBe(self) -> None:
        """
        LOGIN, SELECT and SEARCH take synchronising literals (each with a
        continuation) and non-synchronising ones.
        """
        client = await self.raw(user=None)
        user, password = ALICE.encode(), PASSWORD.encode()
        tag = client.nextTag()
        reply = client.expectTag(tag)
        client.send(tag + b" LOGIN {%d}\r\n" % len(user))
        await client.waitFor(rb"\+ ")
        client.send(user + b" {%d}\r\n" % len(password))
        await client.waitFor(rb"\+ ")
        client.send(password + b"\r\n")
        self.assertTrue((await reply).ok)
        tag = client.nextTag()
        reply = client.expectTag(tag)
        client.send(tag + b" CREATE {9+}\r\nWith Space\r\n")
        self.assertEqual((await reply).status, "BAD")  # 9 octets: "With Spac", then "e"
        tag = client.nextTag()
        reply = client.expectTag(tag)
        client.send(tag + b" CREATE {10+}\r\nWith Space\r\n")
        self.assertTrue((await reply).ok)
        self.assertTrue((await client.command('SELECT "With Space"')).ok)
        tag = client.nextTag()
        reply = client.expectTag(tag)
        client.send(tag + b" SEARCH CHARSET UTF-8 SUBJECT {4+}\r\n\xc3\xa9t\xc3\r\n")
        answer = await reply
        self.assertIn(answer.status, ("OK", "NO", "BAD"))
        self.assertNotIn("SERVERBUG", answer.text)
        self.assertTrue((await client.command("NOOP")).ok)
        await client.command("LOGOUT")
        self.assertTrue(os.path.isdir(self.folder("With Space")))

    async def test_bigMessage(self) -> None:
        """
        A 3 MB APPEND (spooled to a file on its way) is stored exactly, and
        read back whole and in partial pieces.
        """
        line = b"0123456789abcdefghijklmnopqrstuvwxyz" * 2 + b"\r\n"
        text = message("big", line * (3 * 1024 * 1024 // len(line)))

        def work(client: imaplib.IMAP4) -> Any:
            check(client.append("INBOX", None, None, text))
            check(client.select("INBOX"))
            return fetched(check(client.fetch("1", f"(RFC822.SIZE BODY.PEEK[] BODY.PEEK[]<{len(text) - 100}.200>)")))[1]

        items = await self.imap(work)
        self.assertEqual(items["RFC822.SIZE"], len(text))
        self.assertEqual(items["BODY[]"], text)
        self.assertEqual(items[f"BODY[]<{len(text) - 100}>"], text[-100:])
        self.assertEqual([self.stdlibMaildir().get_bytes(k) for k in self.stdlibMaildir().keys()], [text])

    async def test_manyMessagesInBatches(self) -> None:
        """
        FETCH, SEARCH, STORE, COPY and EXPUNGE over more messages than one
        FETCH batch: every message answered once, in order.
        """
        count = 230
        new = os.path.join(self.folder(), "new")
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(self.folder(), sub), exist_ok=True)
        for n in range(count):
            with open(os.path.join(new, f"{1767225600 + n}.M{n}P1.tool"), "wb") as f:
                f.write(message(f"bulk {n}"))
        client = await self.raw()
        reply = await client.command("SELECT INBOX")
        self.assertIn(b"* %d EXISTS" % count, reply.untagged)
        reply = await client.command("FETCH 1:* (UID BODY[HEADER.FIELDS (SUBJECT)])")
        self.assertTrue(reply.ok, reply)
        responses = [parseValues(r) for r in reply.untagged if b" FETCH " in r]
        self.assertEqual([r[1] for r in responses], list(range(1, count + 1)))
        subjects = [dict(zip(*[iter(r[3])] * 2))["BODY[HEADER.FIELDS (SUBJECT)]"] for r in responses]
        self.assertEqual(subjects, [b"Subject: bulk %d\r\n\r\n" % n for n in range(count)])
        reply = await client.command("SEARCH SEEN")
        self.assertEqual(reply.untagged, [b"* SEARCH " + b" ".join(b"%d" % n for n in range(1, count + 1))])
        reply = await client.command("COPY 1:* Archive")
        self.assertIn(b"COPYUID", reply.text.encode())
        self.assertIn(f" 1:{count} 1:{count}]", reply.text)
        await client.command("STORE 2:* +FLAGS.SILENT (\\Deleted)")
        reply = await client.command("EXPUNGE")
        self.assertEqual(reply.untagged, [b"* 2 EXPUNGE"] * (count - 1))
        await client.command("LOGOUT")
        self.assertEqual(len(self.stdlibMaildir()), 1)
        self.assertEqual(len(self.stdlibMaildir("Archive")), count)

    async def test_clientGoneMidLiteral(self) -> None:
        """
        A client that disconnects in the middle of an APPEND literal leaves
        no message behind, and the server serves the next client.
        """
        client = await self.raw()
        client.send(b"t1 APPEND INBOX {100000+}\r\n" + b"x" * 50000)
        client.transport.loseConnection()
        await client.closed
        await self.sessionsClosed()

        def work(imap: imaplib.IMAP4) -> bytes:
            return check(imap.select("INBOX"))[0]

        self.assertEqual(await self.imap(work), b"0")
        self.assertEqual(maildirFiles(self.folder()), {})
        self.assertEqual(os.listdir(os.path.join(self.folder(), "tmp")), [])

    async def test_emptyMailboxSequenceNumbers(self) -> None:
        """
        In an empty mailbox a sequence set with * is BAD for FETCH (no such
        message), while UID FETCH 1:* and SEARCH ALL simply find nothing.
        """
        client = await self.raw()
        await client.command("SELECT INBOX")
        self.assertEqual((await client.command("FETCH 1:* FLAGS")).status, "BAD")
        reply = await client.command("UID FETCH 1:* FLAGS")
        self.assertEqual((reply.status, reply.untagged), ("OK", []))
        reply = await client.command("SEARCH ALL")
        self.assertEqual((reply.status, reply.untagged), ("OK", [b"* SEARCH"]))
        await client.command("LOGOUT")
