"""
Twisted's own IMAP client, L{twisted.mail.imap4.IMAP4Client}, against the
server: login (it upgrades with STARTTLS itself, checked against the
server's certificate), implicit TLS, AUTHENTICATE PLAIN, and every command
it has: SELECT/EXAMINE, FETCH of each kind, SEARCH with its query builder,
APPEND, COPY, STORE, EXPUNGE, CLOSE, CHECK, the folder commands, STATUS,
NAMESPACE; the extensions it has no method for (ID, ENABLE, MOVE, UID
EXPUNGE, UNSELECT) through its C{sendCommand}; and two clients at once,
one learning of the other's changes through NOOP.
"""

from __future__ import annotations

import email.utils
from io import BytesIO

from twisted.internet.interfaces import ISSLTransport
from twisted.mail import imap4

from tests.functional.imapsupport import ALICE, PASSWORD, IMAPTestCase
from tests.functional.test_imap_fetch_search import NESTED
from tests.functional.support import message


class TwistedClientTests(IMAPTestCase):
    """
    L{IMAP4Client} logged in as alice.
    """

    async def test_loginUpgradesWithSTARTTLS(self) -> None:
        """
        On the plain port the client sees STARTTLS and LOGINDISABLED, does
        STARTTLS (verifying the certificate for the server's name) before
        LOGIN, and is then logged in over TLS.
        """
        client = await self.twisted(login=False)
        capabilities = await client.getCapabilities()
        self.assertIn(b"STARTTLS", capabilities)
        self.assertIn(b"LOGINDISABLED", capabilities)
        await client.login(ALICE.encode(), PASSWORD.encode())
        self.assertTrue(client.startedTLS)
        self.assertIsNotNone(ISSLTransport(client.transport, None))
        capabilities = await client.getCapabilities(useCache=False)
        self.assertEqual(capabilities[b"AUTH"], [b"PLAIN"])
        self.assertNotIn(b"LOGINDISABLED", capabilities)
        for name in (b"IDLE", b"NAMESPACE", b"UIDPLUS", b"MOVE", b"SPECIAL-USE", b"ENABLE", b"UNSELECT", b"LITERAL+", b"ID", b"CHILDREN"):
            self.assertIn(name, capabilities)
        self.assertEqual((await client.select("INBOX"))["EXISTS"], 0)

    async def test_implicitTLS(self) -> None:
        """
        On the implicit-TLS port the client logs in at once.
        """
        client = await self.twisted(implicit=True)
        self.assertFalse(client.startedTLS)
        self.assertIsNotNone(ISSLTransport(client.transport, None))
        self.assertEqual((await client.select("INBOX"))["READ-WRITE"], True)

    async def test_authenticatePlain(self) -> None:
        """
        AUTHENTICATE PLAIN with Twisted's authenticator: the client finds
        no AUTH before TLS, does STARTTLS, then authenticates; a wrong
        password fails.
        """
        client = await self.twisted(login=False)
        client.registerAuthenticator(imap4.PLAINAuthenticator(ALICE.encode()))
        await client.authenticate(PASSWORD.encode())
        self.assertTrue(client.startedTLS)
        self.assertEqual((await client.examine("INBOX"))["READ-WRITE"], False)

        other = await self.twisted(implicit=True, login=False)
        other.registerAuthenticator(imap4.PLAINAuthenticator(ALICE.encode()))
        with self.assertRaises(imap4.IMAP4Exception) as raised:
            await other.authenticate(b"wrong password")
        self.assertIn(b"AUTHENTICATIONFAILED", raised.exception.args[0])

    async def test_selectAndExamine(self) -> None:
        """
        SELECT and EXAMINE give counts, flags, UIDVALIDITY and the mode;
        a missing folder fails.
        """
        await self.deliver(message("one"), message("two"))
        client = await self.twisted()
        examined = await client.examine("INBOX")
        self.assertEqual((examined["EXISTS"], examined["RECENT"], examined["READ-WRITE"]), (2, 2, False))
        self.assertEqual(examined["PERMANENTFLAGS"], ())
        selected = await client.select("INBOX")
        self.assertEqual((selected["EXISTS"], selected["READ-WRITE"]), (2, True))
        self.assertEqual(selected["UIDVALIDITY"], examined["UIDVALIDITY"])
        for flag in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft"):
            self.assertIn(flag, selected["FLAGS"])
        self.assertIn("\\*", selected["PERMANENTFLAGS"])
        with self.assertRaises(imap4.IMAP4Exception):
            await client.select("Nowhere")

    async def test_fetch(self) -> None:
        """
        Every fetch method of the client on a message with nested parts.
        """
        client = await self.twisted()
        await client.append("INBOX", BytesIO(NESTED), ("\\Flagged",), "03-Mar-2026 10:00:05 +0100")
        await client.select("INBOX")
        self.assertEqual(await client.fetchUID("1"), {1: {"UID": "1"}})
        self.assertEqual(await client.fetchFlags("1"), {1: {"FLAGS": ["\\Flagged"]}})
        internal = (await client.fetchInternalDate("1"))[1]["INTERNALDATE"]
        self.assertEqual(
            email.utils.parsedate_to_datetime(internal.replace("-", " ", 2)),
            email.utils.parsedate_to_datetime("03 Mar 2026 10:00:05 +0100"),
        )
        self.assertEqual((await client.fetchSize("1"))[1]["RFC822.SIZE"], str(len(NESTED)))
        envelope = (await client.fetchEnvelope("1"))[1]["ENVELOPE"]
        self.assertEqual(envelope[1], "Nested parts")
        self.assertEqual(envelope[2], [["Alice Example", None, "alice", "example.test"]])
        self.assertEqual(envelope[9], "<nested@example.test>")
        structure = (await client.fetchBodyStructure("1"))[1]["BODYSTRUCTURE"]
        self.assertEqual([s.upper() for s in structure[0][0][:2]], ["TEXT", "PLAIN"])
        self.assertEqual(structure[3].upper(), "MIXED")
        self.assertEqual((await client.fetchHeaders("1"))[1]["RFC822.HEADER"], NESTED.split(b"\r\n\r\n")[0].decode() + "\r\n\r\n")
        part = await client.fetchSpecific("1", peek=True, headerNumber=(1, 1))
        self.assertEqual(part[1], [["BODY", ["1.1"], "Plain caf=C3=A9 text.\r\nSecond line."]])
        fields = await client.fetchSpecific("1", peek=True, headerType="HEADER.FIELDS", headerArgs=["SUBJECT"])
        self.assertEqual(fields[1][0][-1], "Subject: Nested parts\r\n\r\n")
        partial = await client.fetchSpecific("1", peek=True, offset=0, length=10)
        self.assertEqual(partial[1][0][-1], NESTED[:10].decode())
        everything = (await client.fetchFull("1"))[1]
        self.assertEqual(set(everything), {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"})
        self.assertNotIn("\\Seen", (await client.fetchFlags("1"))[1]["FLAGS"])
        await client.fetchSpecific("1", headerNumber=2)
        self.assertIn("\\Seen", (await client.fetchFlags("1"))[1]["FLAGS"])
        self.assertEqual((await client.fetchMessage("1"))[1]["RFC822"], NESTED.decode("utf-8"))

    async def test_search(self) -> None:
        """
        Twisted's query builder: flags, OR, NOT, header and size keys, by
        sequence number and by UID.
        """
        client = await self.twisted()
        for n, flags in enumerate([("\\Seen",), ("\\Flagged",), ()]):
            body = b"x" * (3000 if n == 2 else 10)
            await client.append("INBOX", BytesIO(message(f"subject {n}", body)), flags)
        await client.select("INBOX")
        await client.setFlags("1", ["\\Deleted"])
        await client.expunge()
        self.assertEqual(await client.search(imap4.Query(unseen=1)), [1, 2])
        self.assertEqual(await client.search(imap4.Query(flagged=1)), [1])
        self.assertEqual(await client.search(imap4.Or(imap4.Query(flagged=1), imap4.Query(larger=2000))), [1, 2])
        self.assertEqual(await client.search(imap4.Not(imap4.Query(flagged=1))), [2])
        self.assertEqual(await client.search(imap4.Query(subject="subject 2")), [2])
        self.assertEqual(await client.search(imap4.Query(header=("To", "alice")), uid=True), [2, 3])
        self.assertEqual(await client.search(imap4.Query(uid="3:*"), uid=True), [3])

    async def test_appendCopyStoreExpunge(self) -> None:
        """
        APPEND with flags and a date, COPY, the three kinds of STORE, then
        EXPUNGE and CLOSE; the Maildir shows the outcome.
        """
        client = await self.twisted()
        for n in range(3):
            await client.append("INBOX", BytesIO(message(f"n{n}")), ("\\Answered",) if n == 0 else ())
        await client.select("INBOX")
        await client.copy("1:2", "Archive", uid=False)
        flags = await client.addFlags("2:3", ["\\Flagged", "$Keep"], silent=False)
        self.assertEqual({seq: sorted(v["FLAGS"]) for seq, v in flags.items()}, {2: ["$Keep", "\\Flagged"], 3: ["$Keep", "\\Flagged"]})
        flags = await client.removeFlags("2", ["$Keep"], silent=False)
        self.assertEqual(flags, {2: {"FLAGS": ["\\Flagged"]}})
        await client.setFlags("1,3", ["\\Deleted"], silent=True)
        self.assertEqual(await client.expunge(), [1, 2])
        await client.check()
        await client.setFlags("1", ["\\Deleted", "\\Seen"])
        await client.close()
        self.assertEqual(len(self.stdlibMaildir()), 0)
        archived = sorted((m["Subject"], m.get_flags()) for m in self.stdlibMaildir("Archive").values())
        self.assertEqual(archived, [("n0", "R"), ("n1", "")])

    async def test_folders(self) -> None:
        """
        CREATE, LIST, LSUB, SUBSCRIBE, RENAME, DELETE, STATUS and NAMESPACE
        through the client.
        """
        client = await self.twisted()
        await client.create("Projects/2026")
        await client.create("Notes")
        await client.subscribe("Notes")
        listed = {name: flags for flags, _, name in await client.list("", "*")}
        self.assertIn("\\Noselect", listed["Projects"])
        self.assertIn("\\HasChildren", listed["Projects"])
        self.assertIn("\\Sent", listed["Sent"])
        subscribed = sorted(name for _, _, name in await client.lsub("", "*"))
        self.assertEqual(subscribed, ["Archive", "Drafts", "INBOX", "Junk", "Notes", "Sent", "Trash"])
        await client.rename("Notes", "Journal")
        await client.append("Journal", BytesIO(message("dear diary")))
        status = await client.status("Journal", "MESSAGES", "UIDNEXT", "UNSEEN")
        # (The client turns only MESSAGES, RECENT and UNSEEN into numbers.)
        self.assertEqual(status, {"MESSAGES": 1, "UIDNEXT": b"2", "UNSEEN": 1})
        await client.delete("Journal")
        with self.assertRaises(imap4.IMAP4Exception):
            await client.status("Journal", "MESSAGES")
        self.assertEqual(await client.namespace(), [[["", "/"]], [], []])

    async def test_noopObservesTheOtherClient(self) -> None:
        """
        Two clients on INBOX: what one appends, flags and expunges reaches
        the other in the answer to its next NOOP, in order (EXPUNGE, then
        FETCH FLAGS); nothing comes unasked (no IDLE).
        """
        watcher = await self.twisted()
        actor = await self.twisted(implicit=True)
        await watcher.select("INBOX")
        await actor.append("INBOX", BytesIO(message("one")))
        await actor.append("INBOX", BytesIO(message("two")))
        lines = await watcher.noop()
        self.assertIn([b"2", b"EXISTS"], lines)
        await actor.select("INBOX")
        await actor.addFlags("2", ["\\Flagged"])
        await actor.setFlags("1", ["\\Deleted"])
        await actor.expunge()
        lines = await watcher.noop()
        self.assertEqual(lines[0], [b"1", b"EXPUNGE"])
        self.assertIn([b"1", b"FETCH", [b"FLAGS", [b"\\Flagged"]]], lines)
        self.assertEqual(await watcher.fetchUID("1:*"), {1: {"UID": "2"}})
        self.assertEqual(watcher.events, [])

    async def test_extensionsThroughSendCommand(self) -> None:
        """
        The extensions the client has no method for, sent with its
        C{sendCommand}: ID, ENABLE, MOVE with COPYUID, UID EXPUNGE,
        UNSELECT; their untagged responses and tagged codes come back.
        """
        client = await self.twisted()
        for n in range(3):
            await client.append("INBOX", BytesIO(message(f"n{n}")), ("\\Deleted",) if n == 2 else ())
        # The client hands the responses it does not know to _extraInfo,
        # just after the command's Deferred has fired.
        await client.sendCommand(imap4.Command(b"ID", b'("name" "twisted")'))
        await client.sendCommand(imap4.Command(b"ENABLE", b"X-NOTHING"))
        await client.select("INBOX")
        self.assertEqual(client.unused, [[b"ID", [b"name", b"mailhub"]], [b"ENABLED"]])
        lines, tagged = await client.sendCommand(imap4.Command(b"UID MOVE", b"1 Archive"))
        self.assertIn([b"1", b"EXPUNGE"], lines)
        self.assertIn(b"OK", tagged)
        lines, tagged = await client.sendCommand(imap4.Command(b"UID EXPUNGE", b"1:*"))
        self.assertEqual(lines, [[b"2", b"EXPUNGE"]])
        await client.sendCommand(imap4.Command(b"UNSELECT"))
        with self.assertRaises(imap4.IMAP4Exception):
            await client.fetchUID("1")
        self.assertEqual([m["Subject"] for m in self.stdlibMaildir("Archive").values()], ["n0"])
        self.assertEqual([m["Subject"] for m in self.stdlibMaildir().values()], ["n1"])
