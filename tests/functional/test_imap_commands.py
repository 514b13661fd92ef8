"""
Every IMAP command and extension the server offers, end to end with the
stdlib C{imaplib} (and the raw client where a test must see the octets):
TLS and login, AUTHENTICATE PLAIN, NAMESPACE, ID, ENABLE, UNSELECT,
LITERAL+, CHILDREN and SPECIAL-USE, SEARCH, FETCH, APPEND, COPY, MOVE and
UIDPLUS, EXPUNGE, CREATE/DELETE/RENAME, STATUS, CHECK, CLOSE, EXAMINE, the
per-user session limit, and bad input.  Results are read back from disk
with the stdlib's C{mailbox.Maildir} where the disk is what matters.
"""

from __future__ import annotations

import base64
import email.utils
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
    fetched,
    maildirFiles,
    parseValues,
    untagged,
    unverified,
)
from tests.functional.support import SOCKET_GUARD, message

#: The extensions the server announces once TLS is on.
EXTENSIONS = (
    "IMAP4REV1", "IDLE", "NAMESPACE", "UIDPLUS", "MOVE", "SPECIAL-USE", "ENABLE",
    "UNSELECT", "LITERAL+", "ID", "CHILDREN", "AUTH=PLAIN",
)


def check(result: tuple[str, list[Any]]) -> list[Any]:
    """
    The data of an C{imaplib} command that must have answered OK.
    """
    typ, data = result
    if typ != "OK":
        raise AssertionError(f"{typ} {data!r}")
    return data


def failure(call: Any, *args: Any) -> str:
    """
    Run an C{imaplib} call that must fail with a tagged NO or BAD; its text.
    """
    try:
        typ, data = call(*args)
    except imaplib.IMAP4.error as e:
        return str(e)
    if typ == "OK":
        raise AssertionError(f"succeeded: {data!r}")
    return f"{typ} " + b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")


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


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


#: A message with nested parts: multipart/mixed of a multipart/alternative
#: (text and HTML), a base64 attachment and a forwarded message.
NESTED = crlf(
    """From: "Alice Example" <alice@example.test>
To: Bob <bob@example.test>, carol@other.test
Cc: Dave <dave@other.test>
Subject: Nested parts
Date: Tue, 03 Mar 2026 10:00:00 +0100
Message-ID: <nested@example.test>
In-Reply-To: <parent@example.test>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

Preamble.
--outer
Content-Type: multipart/alternative; boundary="inner"

--inner
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: quoted-printable

Plain caf=C3=A9 text.
Second line.
--inner
Content-Type: text/html; charset=utf-8

<p>HTML text.</p>
--inner--
--outer
Content-Type: application/pdf; name="report.pdf"
Content-Disposition: attachment; filename="report.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--outer
Content-Type: message/rfc822

From: Inner <inner@other.test>
Subject: Forwarded
Content-Type: text/plain

Inner body.
--outer--
"""
)

HEADER, TEXT = NESTED.split(b"\r\n\r\n", 1)
HEADER += b"\r\n\r\n"
FORWARDED = crlf(
    """From: Inner <inner@other.test>
Subject: Forwarded
Content-Type: text/plain

Inner body."""
)


def upper(value: Any) -> Any:
    """
    A BODYSTRUCTURE with every string upper-cased (types and parameter
    names are case-insensitive).
    """
    if isinstance(value, list):
        return [upper(v) for v in value]
    if isinstance(value, bytes):
        return value.upper()
    return value


class FetchTests(IMAPTestCase):
    """
    FETCH of every item, on a message with nested parts that was APPENDed
    (so its octets are known).
    """

    async def appendNested(self, flags: str = "()") -> None:
        def work(client: imaplib.IMAP4) -> None:
            check(client.append("INBOX", flags, '"03-Mar-2026 10:00:05 +0100"', NESTED))

        await self.imap(work)

    async def fetch(self, items: str, select: str = "select") -> dict[str, Any]:
        def work(client: imaplib.IMAP4) -> Any:
            if select == "select":
                check(client.select("INBOX"))
            else:
                check(client.select("INBOX", readonly=True))
            return fetched(check(client.fetch("1", items)))[1]

        return await self.imap(work)

    async def test_sections(self) -> None:
        """
        BODY.PEEK[section] for the whole message, HEADER, TEXT, nested part
        numbers, MIME headers of a part, and a forwarded message's HEADER,
        TEXT and first part: each the exact octets of that section.
        """
        await self.appendNested()
        items = await self.fetch(
            "(BODY.PEEK[] BODY.PEEK[HEADER] BODY.PEEK[TEXT] BODY.PEEK[1] BODY.PEEK[1.1] "
            "BODY.PEEK[1.2] BODY.PEEK[1.MIME] BODY.PEEK[2] BODY.PEEK[2.MIME] BODY.PEEK[3] "
            "BODY.PEEK[3.HEADER] BODY.PEEK[3.TEXT] BODY.PEEK[3.1])"
        )
        self.assertEqual(items["BODY[]"], NESTED)
        self.assertEqual(items["BODY[HEADER]"], HEADER)
        self.assertEqual(items["BODY[TEXT]"], TEXT)
        self.assertEqual(
            items["BODY[1.1]"], b"Plain caf=C3=A9 text.\r\nSecond line."
        )
        self.assertEqual(items["BODY[1.2]"], b"<p>HTML text.</p>")
        self.assertTrue(items["BODY[1]"].startswith(b"--inner\r\nContent-Type: text/plain"))
        self.assertTrue(items["BODY[1]"].endswith(b"<p>HTML text.</p>\r\n--inner--"))
        self.assertEqual(items["BODY[1.MIME]"], b'Content-Type: multipart/alternative; boundary="inner"\r\n\r\n')
        self.assertEqual(items["BODY[2]"], b"JVBERi0xLjQK")
        self.assertEqual(
            items["BODY[2.MIME]"],
            b'Content-Type: application/pdf; name="report.pdf"\r\n'
            b'Content-Disposition: attachment; filename="report.pdf"\r\n'
            b"Content-Transfer-Encoding: base64\r\n\r\n",
        )
        self.assertEqual(items["BODY[3]"], FORWARDED)
        self.assertEqual(items["BODY[3.HEADER]"], FORWARDED.split(b"\r\n\r\n")[0] + b"\r\n\r\n")
        self.assertEqual(items["BODY[3.TEXT]"], b"Inner body.")
        self.assertEqual(items["BODY[3.1]"], b"Inner body.")
        self.assertNotIn("FLAGS", items)

    async def test_headerFields(self) -> None:
        """
        HEADER.FIELDS gives the named fields in the message's order (names
        case-insensitive, a missing one left out) and the blank line;
        HEADER.FIELDS.NOT everything else.
        """
        await self.appendNested()
        items = await self.fetch(
            "(BODY.PEEK[HEADER.FIELDS (subject FROM X-Missing)] BODY.PEEK[HEADER.FIELDS.NOT (Subject From To Cc Date Message-ID In-Reply-To)])"
        )
        [fields] = [v for k, v in items.items() if k.startswith("BODY[HEADER.FIELDS (")]
        [others] = [v for k, v in items.items() if k.startswith("BODY[HEADER.FIELDS.NOT")]
        self.assertEqual(fields, b'From: "Alice Example" <alice@example.test>\r\nSubject: Nested parts\r\n\r\n')
        self.assertEqual(
            others,
            b'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="outer"\r\n\r\n',
        )

    async def test_partials(self) -> None:
        """
        A partial fetch returns that slice, labelled with its origin
        (BODY[]<0>); one that starts past the end is empty; the octets of
        a partial of a part are that part's.
        """
        await self.appendNested()
        items = await self.fetch(
            f"(BODY.PEEK[]<0.10> BODY.PEEK[TEXT]<5.8> BODY.PEEK[1.1]<6.9> BODY.PEEK[]<{len(NESTED) - 4}.100> BODY.PEEK[]<{len(NESTED) + 10}.5>)"
        )
        self.assertEqual(items["BODY[]<0>"], NESTED[:10])
        self.assertEqual(items["BODY[TEXT]<5>"], TEXT[5:13])
        self.assertEqual(items["BODY[1.1]<6>"], b"caf=C3=A9")
        self.assertEqual(items[f"BODY[]<{len(NESTED) - 4}>"], NESTED[-4:])
        self.assertEqual(items[f"BODY[]<{len(NESTED) + 10}>"], b"")

    async def test_bodyStructure(self) -> None:
        """
        BODYSTRUCTURE describes every nested part with its type,
        parameters, encoding, size, lines, disposition, and the forwarded
        message's envelope and structure; BODY is the same without the
        extension data.
        """
        await self.appendNested()
        items = await self.fetch("(BODYSTRUCTURE BODY)")
        structure = upper(items["BODYSTRUCTURE"])
        plain = b"Plain caf=C3=A9 text.\r\nSecond line."
        html = b"<p>HTML text.</p>"
        alternative = structure[0]
        self.assertEqual(
            alternative[0][:8],
            [b"TEXT", b"PLAIN", [b"CHARSET", b"UTF-8"], None, None, b"QUOTED-PRINTABLE", len(plain), 2],
        )
        self.assertEqual(alternative[1][:8], [b"TEXT", b"HTML", [b"CHARSET", b"UTF-8"], None, None, b"7BIT", len(html), 1])
        self.assertEqual(alternative[2], b"ALTERNATIVE")
        self.assertEqual(alternative[3], [b"BOUNDARY", b"INNER"])
        attachment = structure[1]
        self.assertEqual(
            attachment[:7], [b"APPLICATION", b"PDF", [b"NAME", b"REPORT.PDF"], None, None, b"BASE64", 12]
        )
        self.assertEqual(attachment[8], [b"ATTACHMENT", [b"FILENAME", b"REPORT.PDF"]])
        forwarded = structure[2]
        self.assertEqual(forwarded[:7], [b"MESSAGE", b"RFC822", None, None, None, b"7BIT", len(FORWARDED)])
        self.assertEqual(forwarded[7][1], b"FORWARDED")  # its envelope's subject
        self.assertEqual(forwarded[7][2], [[b"INNER", None, b"INNER", b"OTHER.TEST"]])
        self.assertEqual(forwarded[8][:8], [b"TEXT", b"PLAIN", [b"CHARSET", b"US-ASCII"], None, None, b"7BIT", 11, 1])
        self.assertEqual(forwarded[9], 5)
        self.assertEqual(structure[3], b"MIXED")
        self.assertEqual(structure[4], [b"BOUNDARY", b"OUTER"])
        body = upper(items["BODY"])
        self.assertEqual(body[0][0], [b"TEXT", b"PLAIN", [b"CHARSET", b"UTF-8"], None, None, b"QUOTED-PRINTABLE", len(plain), 2])
        self.assertEqual(body[1], [b"APPLICATION", b"PDF", [b"NAME", b"REPORT.PDF"], None, None, b"BASE64", 12])
        self.assertEqual(body[3], b"MIXED")
        self.assertEqual(len(body), 4)

    async def test_envelopeAndAttributes(self) -> None:
        """
        ENVELOPE has every field (sender and reply-to default to from);
        INTERNALDATE is the APPEND date; RFC822.SIZE the stored octets;
        UID and FLAGS; the ALL, FAST and FULL macros expand.
        """
        await self.appendNested("(\\Flagged $Work)")
        items = await self.fetch("(ENVELOPE INTERNALDATE RFC822.SIZE UID FLAGS)")
        alice = [[b"Alice Example", None, b"alice", b"example.test"]]
        self.assertEqual(
            items["ENVELOPE"],
            [
                b"Tue, 03 Mar 2026 10:00:00 +0100",
                b"Nested parts",
                alice,
                alice,
                alice,
                [[b"Bob", None, b"bob", b"example.test"], [None, None, b"carol", b"other.test"]],
                [[b"Dave", None, b"dave", b"other.test"]],
                None,
                b"<parent@example.test>",
                b"<nested@example.test>",
            ],
        )
        sent = email.utils.parsedate_to_datetime("Tue, 03 Mar 2026 10:00:05 +0100")
        internal = items["INTERNALDATE"].decode()
        self.assertEqual(
            email.utils.parsedate_to_datetime(
                re.sub(r"^(\d+)-(\w+)-(\d+) ", r"\1 \2 \3 ", internal.strip())
            ),
            sent,
        )
        self.assertEqual(items["RFC822.SIZE"], len(NESTED))
        self.assertEqual(items["UID"], 1)
        self.assertEqual(sorted(items["FLAGS"]), ["$Work", "\\Flagged"])

        def macros(client: imaplib.IMAP4) -> Any:
            check(client.select("INBOX"))
            return [set(fetched(check(client.fetch("1", macro)))[1]) for macro in ("ALL", "FAST", "FULL")]

        every, fast, full = await self.imap(macros)
        self.assertEqual(every, {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"})
        self.assertEqual(fast, {"FLAGS", "INTERNALDATE", "RFC822.SIZE"})
        self.assertEqual(full, {"FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"})

    async def test_rfc822Items(self) -> None:
        """
        RFC822.HEADER and RFC822.TEXT are the header and the body;
        RFC822.HEADER leaves the message unseen, RFC822 sets \\Seen and
        says so with FLAGS.
        """
        await self.appendNested()

        def work(client: imaplib.IMAP4) -> Any:
            check(client.select("INBOX"))
            header = fetched(check(client.fetch("1", "(RFC822.HEADER)")))[1]
            whole = fetched(check(client.fetch("1", "(RFC822)")))[1]
            text = fetched(check(client.fetch("1", "(RFC822.TEXT)")))[1]
            return header, whole, text

        header, whole, text = await self.imap(work)
        self.assertEqual(header, {"RFC822.HEADER": HEADER})
        self.assertEqual(whole["RFC822"], NESTED)
        self.assertIn("\\Seen", whole["FLAGS"])
        self.assertEqual(text["RFC822.TEXT"], TEXT)

    async def test_bodySetsSeenPeekDoesNot(self) -> None:
        """
        BODY.PEEK[] leaves the message unseen; BODY[] sets \\Seen, answers
        FLAGS with it unasked, and the file's name carries S.
        """
        await self.appendNested()

        def work(client: imaplib.IMAP4) -> Any:
            check(client.select("INBOX"))
            peeked = fetched(check(client.fetch("1", "(BODY.PEEK[TEXT])")))[1]
            flagsAfterPeek = fetched(check(client.fetch("1", "(FLAGS)")))[1]["FLAGS"]
            name = list(maildirFiles(self.folder()))[0]
            read = fetched(check(client.fetch("1", "(BODY[1.1])")))[1]
            again = fetched(check(client.fetch("1", "(BODY[1.1])")))[1]
            return peeked, flagsAfterPeek, name, read, again

        peeked, flagsAfterPeek, before, read, again = await self.imap(work)
        self.assertNotIn("FLAGS", peeked)
        self.assertNotIn("\\Seen", flagsAfterPeek)
        self.assertFalse(before.endswith("S"))
        self.assertIn("\\Seen", read["FLAGS"])
        self.assertNotIn("FLAGS", again)  # already seen: nothing changed
        [name] = maildirFiles(self.folder())
        self.assertTrue(name.endswith(":2,S"), name)
        [stored] = self.stdlibMaildir().values()
        self.assertIn("S", stored.get_flags())

    async def test_uidFetchAndSequenceSets(self) -> None:
        """
        FETCH takes sequence sets with ranges, lists and *; UID FETCH
        answers by UID, always with UID, and a UID range beyond the last
        message still gives the last one (RFC 3501 §6.4.8); a sequence
        number past the end is BAD.
        """
        await self.deliver(*(message(f"number {n}") for n in range(1, 6)))

        def work(client: imaplib.IMAP4) -> Any:
            check(client.select("INBOX"))
            ranges = sorted(fetched(check(client.fetch("1:2,4,*", "(UID)"))))
            reverse = sorted(fetched(check(client.fetch("*:4", "(UID)"))))
            byUid = fetched(check(client.uid("FETCH", "2:3", "(FLAGS)")))
            beyond = fetched(check(client.uid("FETCH", "100:*", "(FLAGS)")))
            past = failure(client.fetch, "9", "(UID)")
            return ranges, reverse, byUid, beyond, past

        ranges, reverse, byUid, beyond, past = await self.imap(work)
        self.assertEqual(ranges, [1, 2, 4, 5])
        self.assertEqual(reverse, [4, 5])
        self.assertEqual({seq: items["UID"] for seq, items in byUid.items()}, {2: 2, 3: 3})
        self.assertEqual({seq: items["UID"] for seq, items in beyond.items()}, {5: 5})
        self.assertIn("BAD", past)


def searchMessage(sender: str, subject: str, date: str, body: str, extra: str = "") -> bytes:
    return crlf(
        f"From: {sender}\nTo: Bob <bob@example.test>\n{extra}Subject: {subject}\nDate: {date}\n"
        f"MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
        f"Content-Transfer-Encoding: 8bit\n\n{body}\n"
    )


#: The messages SEARCH looks at: (flags, internal date, message).  A first
#: message is appended and expunged before them, so UIDs are sequence
#: numbers plus one.
CORPUS = [
    (
        "(\\Seen \\Answered)",
        "01-Feb-2026 12:00:00 +0000",
        searchMessage("Alice <alice@example.test>", "Quarterly report", "Sun, 1 Feb 2026 11:00:00 +0000", "The numbers are inside."),
    ),
    (
        "(\\Flagged $Later)",
        "15-Feb-2026 12:00:00 +0000",
        searchMessage("Carol <carol@other.test>", "Lunch plans", "Sun, 15 Feb 2026 11:00:00 +0000", "Pizza at noon?", "Cc: Dave <dave@other.test>\n"),
    ),
    (
        "(\\Deleted \\Draft)",
        "01-Mar-2026 12:00:00 +0000",
        searchMessage("Bob <bob@example.test>", "Re: Quarterly report", "Sun, 1 Mar 2026 11:00:00 +0000", "x" * 5000),
    ),
    (
        "()",
        "10-Mar-2026 12:00:00 +0000",
        searchMessage("Dora <dora@other.test>", "=?utf-8?q?caf=C3=A9?= meeting", "Tue, 10 Mar 2026 11:00:00 +0000", "Viele Grüße.", "X-Priority: 1\n"),
    ),
]


class SearchTests(IMAPTestCase):
    """
    SEARCH and UID SEARCH over four messages with different flags, dates,
    sizes, headers and bodies.
    """

    async def searches(
        self, queries: list[str], uid: tuple[str, ...] | list[str] = (), literal: dict[str, bytes] | None = None
    ) -> dict[str, list[int]]:
        """
        Append the corpus and run each query; C{{query: numbers}}.

        @param uid: queries to run with UID SEARCH (their keys start with
            C{"UID SEARCH "} in the result).
        @param literal: queries whose last argument is sent as a literal
            (with CHARSET UTF-8).
        """

        def work(client: imaplib.IMAP4) -> dict[str, list[int]]:
            check(client.append("INBOX", "(\\Deleted)", None, message("throwaway")))
            for flags, date, text in CORPUS:
                check(client.append("INBOX", flags, f'"{date}"', text))
            check(client.select("INBOX"))
            check(client.uid("EXPUNGE", "1"))
            results = {}
            for query in queries:
                data = check(client.search(None, query))
                results[query] = [int(n) for n in data[0].split()]
            for query in uid:
                data = check(client.uid("SEARCH", query))
                results["UID SEARCH " + query] = [int(n) for n in data[0].split()]
            for query, value in (literal or {}).items():
                client.literal = value
                data = check(client.search("UTF-8", query))
                results[query] = [int(n) for n in data[0].split()]
            return results

        return await self.imap(work)

    async def test_flagKeys(self) -> None:
        """
        Every flag key, and keywords.
        """
        expected = {
            "ALL": [1, 2, 3, 4],
            "SEEN": [1],
            "UNSEEN": [2, 3, 4],
            "ANSWERED": [1],
            "UNANSWERED": [2, 3, 4],
            "FLAGGED": [2],
            "UNFLAGGED": [1, 3, 4],
            "DELETED": [3],
            "UNDELETED": [1, 2, 4],
            "DRAFT": [3],
            "UNDRAFT": [1, 2, 4],
            "KEYWORD $Later": [2],
            "UNKEYWORD $Later": [1, 3, 4],
            "KEYWORD $Nothing": [],
            "RECENT": [],
            "NEW": [],
            "OLD": [1, 2, 3, 4],
        }
        self.assertEqual(await self.searches(list(expected)), expected)

    async def test_sequenceAndUIDSets(self) -> None:
        """
        Sequence sets and UID sets as keys, ANDed with others; UID SEARCH
        answers UIDs.
        """
        expected = {
            "2:3": [2, 3],
            "2,4": [2, 4],
            "*": [4],
            "3:*": [3, 4],
            "UID 3:4": [2, 3],
            "UID 4:*": [3, 4],
            "UID 100:*": [4],
            "1:2 SEEN": [1],
            "NOT 1:2": [3, 4],
        }
        byUid = {"ALL": [2, 3, 4, 5], "UID 3:4": [3, 4], "2:3": [3, 4], "FLAGGED": [3]}
        results = await self.searches(list(expected), uid=list(byUid))
        self.assertEqual({k: results[k] for k in expected}, expected)
        self.assertEqual({k: results["UID SEARCH " + k] for k in byUid}, byUid)

    async def test_textKeys(self) -> None:
        """
        Header keys, HEADER with and without a value, BODY and TEXT: case
        insensitive substrings; an encoded word in Subject and an 8-bit
        body are decoded for a UTF-8 search given as a literal.
        """
        expected = {
            "FROM carol": [2],
            "FROM example.test": [1, 3],
            "TO bob": [1, 2, 3, 4],
            "CC dave": [2],
            "BCC dave": [],
            "SUBJECT quarterly": [1, 3],
            'SUBJECT "re: quarterly"': [3],
            "HEADER X-Priority 1": [4],
            'HEADER X-Priority ""': [4],
            "HEADER Message-ID x": [],
            "BODY pizza": [2],
            "BODY carol": [],
            "TEXT carol": [2],
            "TEXT PIZZA": [2],
        }
        literal = {"SUBJECT": "Café".encode(), "BODY": "VIELE GRÜßE".encode(), "TEXT": "grüße!".encode()}
        results = await self.searches(list(expected), literal=literal)
        self.assertEqual({k: results[k] for k in expected}, expected)
        self.assertEqual(results["SUBJECT"], [4])
        self.assertEqual(results["BODY"], [4])
        self.assertEqual(results["TEXT"], [])

    async def test_datesAndSizes(self) -> None:
        """
        BEFORE/ON/SINCE compare the internal date's day, SENT* the Date
        field's; LARGER and SMALLER the size.
        """
        expected = {
            "BEFORE 15-Feb-2026": [1],
            "ON 15-Feb-2026": [2],
            "SINCE 1-Mar-2026": [3, 4],
            "SINCE 11-Mar-2026": [],
            "SENTBEFORE 15-Feb-2026": [1],
            "SENTON 1-Mar-2026": [3],
            "SENTSINCE 15-Feb-2026": [2, 3, 4],
            "LARGER 4000": [3],
            "SMALLER 4000": [1, 2, 4],
        }
        self.assertEqual(await self.searches(list(expected)), expected)

    async def test_orNotAndGroups(self) -> None:
        """
        OR, NOT, parenthesised groups, nested.
        """
        expected = {
            "OR FROM carol FROM bob": [2, 3],
            "NOT SEEN": [2, 3, 4],
            "(FLAGGED KEYWORD $Later)": [2],
            "OR (SEEN ANSWERED) DELETED": [1, 3],
            "NOT (OR SEEN DELETED)": [2, 4],
            "OR OR SEEN FLAGGED DRAFT": [1, 2, 3],
            "NOT NOT SEEN": [1],
            "UNSEEN NOT OR DELETED LARGER 4000": [2, 4],
        }
        self.assertEqual(await self.searches(list(expected)), expected)

    async def test_recentAndNew(self) -> None:
        """
        A message delivered over SMTP is \\Recent to the first session
        that selects the folder: RECENT and NEW find it, OLD does not.
        """
        await self.deliver(message("fresh"))

        def work(client: imaplib.IMAP4) -> Any:
            data = check(client.select("INBOX"))
            recent = client.response("RECENT")[1]
            return data, recent, [check(client.search(None, key))[0] for key in ("RECENT", "NEW", "OLD", "UNSEEN")]

        exists, recent, (recentFound, new, old, unseen) = await self.imap(work)
        self.assertEqual(exists, [b"1"])
        self.assertEqual(recent, [b"1"])
        self.assertEqual((recentFound, new, old, unseen), (b"1", b"1", b"", b"1"))

        def second(client: imaplib.IMAP4) -> Any:
            check(client.select("INBOX"))
            return check(client.search(None, "RECENT"))[0], check(client.search(None, "OLD"))[0]

        self.assertEqual(await self.imap(second), (b"", b"1"))

    async def test_badSearches(self) -> None:
        """
        An unknown charset is NO [BADCHARSET]; malformed keys are BAD; the
        session goes on.
        """

        def work(client: imaplib.IMAP4) -> Any:
            check(client.append("INBOX", None, None, message("one")))
            check(client.select("INBOX"))
            outcomes = [failure(client.search, "X-UNKNOWN", "ALL")]
            for query in ("FROM", "BEFORE notadate", "(SEEN", "NOSUCHKEY", "LARGER x", "UID x:y", "OR SEEN"):
                outcomes.append(failure(client.search, None, query))
            outcomes.append(check(client.search(None, "ALL"))[0])
            return outcomes

        outcomes = await self.imap(work)
        self.assertIn("BADCHARSET", outcomes[0])
        self.assertTrue(outcomes[0].startswith("NO"), outcomes[0])
        for outcome in outcomes[1:-1]:
            self.assertIn("BAD", outcome)
        self.assertEqual(outcomes[-1], b"1")


def responseCode(client: imaplib.IMAP4, data: list[Any], name: str) -> list[str]:
    """
    The arguments of response code C{[NAME ...]} of the last tagged reply
    (C{imaplib} keeps only its text).
    """
    text = b" ".join(d for d in data if isinstance(d, bytes)).decode()
    match = re.search(r"\[" + name + r" ([^\]]*)\]", text)
    if match is None:
        raise AssertionError(f"no [{name}] in {text!r}")
    return match.group(1).split()


def uidsOf(client: imaplib.IMAP4) -> list[int]:
    return [int(n) for n in check(client.uid("SEARCH", "ALL"))[0].split()]


class AppendTests(IMAPTestCase):
    """
    APPEND, read back from the Maildir with the stdlib's reader.
    """

    async def test_appendWithFlagsAndDate(self) -> None:
        """
        APPEND with system flags, a keyword and an internal date stores the
        exact octets in cur/ with the flags in the name (keywords as
        Dovecot's letters), answers APPENDUID with the folder's
        UIDVALIDITY and UIDNEXT, and FETCH gives the date back.
        """
        text = message("appended", b"Body.\r\n")

        def work(client: imaplib.IMAP4) -> Any:
            status = check(client.status("Drafts", "(UIDVALIDITY UIDNEXT)"))[0]
            data = check(client.append("Drafts", "(\\Draft \\Seen $Pending)", '"24-Dec-2025 18:30:00 -0500"', text))
            appendUid = responseCode(client, data, "APPENDUID")
            check(client.select("Drafts"))
            items = fetched(check(client.fetch("1", "(UID FLAGS INTERNALDATE RFC822.SIZE)")))[1]
            return status, appendUid, items

        status, appendUid, items = await self.imap(work)
        values = parseValues(status)
        uidValidity, uidNext = values[1][1], values[1][3]
        self.assertEqual(appendUid, [str(uidValidity), str(uidNext)])
        self.assertEqual(items["UID"], uidNext)
        self.assertEqual(sorted(items["FLAGS"]), ["$Pending", "\\Draft", "\\Seen"])
        self.assertEqual(items["RFC822.SIZE"], len(text))
        when = email.utils.parsedate_to_datetime(
            re.sub(r"^\s*(\d+)-(\w+)-(\d+) ", r"\1 \2 \3 ", items["INTERNALDATE"].decode())
        )
        self.assertEqual(when, email.utils.parsedate_to_datetime("Wed, 24 Dec 2025 18:30:00 -0500"))
        box = self.stdlibMaildir("Drafts")
        [(key, stored)] = box.items()
        self.assertEqual(box.get_bytes(key), text)
        self.assertEqual(stored.get_subdir(), "cur")
        self.assertEqual(stored.get_flags(), "DSa")
        with open(os.path.join(self.folder("Drafts"), "dovecot-keywords")) as f:
            self.assertEqual(f.read().split(), ["0", "$Pending"])
        # The file's mtime is the internal date, as Dovecot keeps it.
        path = os.path.join(self.folder("Drafts"), "cur", os.path.basename(box._toc[key]))
        self.assertEqual(int(os.stat(path).st_mtime), int(when.timestamp()))

    async def test_appendRefused(self) -> None:
        """
        APPEND to a missing folder is NO [TRYCREATE]; an empty message and
        \\Recent as a flag are refused; a date-time that is no date (a
        month, day or hour that does not exist) is BAD, not an internal
        error; nothing is stored.
        """

        def work(client: imaplib.IMAP4) -> list[str]:
            return [
                failure(client.append, "Nowhere", None, None, message("lost")),
                failure(client.append, "INBOX", None, None, b""),
                failure(client.append, "INBOX", "(\\Recent)", None, message("recent")),
                failure(client.append, "INBOX", None, '"31-Foo-2026 10:00:00 +0000"', message("bad month")),
                failure(client.append, "INBOX", None, '"32-Jan-2026 10:00:00 +0000"', message("bad day")),
                failure(client.append, "INBOX", None, '"01-Jan-2026 24:00:00 +0000"', message("bad hour")),
            ]

        trycreate, empty, recent, *badDates = await self.imap(work)
        self.assertIn("TRYCREATE", trycreate)
        self.assertTrue(empty.startswith(("NO", "BAD")), empty)
        self.assertIn("BAD", recent)
        for text in badDates:
            self.assertIn("BAD", text)
        self.assertEqual(maildirFiles(self.folder()), {})
        self.assertFalse(os.path.exists(self.folder("Nowhere")))

    async def test_appendAndCopyLeaveRecentAlone(self) -> None:
        """
        A session that APPENDs or COPYs into INBOX without selecting it
        takes no \\Recent: the delivered messages stay in new/, STATUS
        counts them RECENT, and they are \\Recent to the next session
        that selects INBOX.
        """
        await self.deliver(message("one"), message("two"))

        def other(client: imaplib.IMAP4) -> Any:
            check(client.append("INBOX", None, None, message("appended")))
            check(client.append("Archive", None, None, message("archived")))
            check(client.select("Archive"))
            check(client.copy("1", "INBOX"))
            return parseValues(check(client.status("INBOX", "(MESSAGES RECENT)"))[0])

        status = await self.imap(other)
        self.assertEqual(status, [b"INBOX", ["MESSAGES", 4, "RECENT", 2]])
        self.assertEqual(sorted(maildirFiles(self.folder()).values()), ["cur", "cur", "new", "new"])

        def reader(client: imaplib.IMAP4) -> Any:
            check(client.select("INBOX"))
            return client.response("RECENT")[1], check(client.search(None, "RECENT"))[0]

        self.assertEqual(await self.imap(reader), ([b"2"], b"1 2"))

    async def test_appendAndCopyToSelectedMailbox(self) -> None:
        """
        APPEND and COPY into the selected mailbox answer EXISTS at once (RFC
        3501 §6.3.11), so the client can use the new sequence numbers right
        away.
        """
        client = await self.raw()
        await client.command("SELECT INBOX")
        text = message("into the selected mailbox")
        tag = client.nextTag()
        reply = client.expectTag(tag)
        client.send(tag + b" APPEND INBOX {%d+}\r\n" % len(text) + text + b"\r\n")
        answer = await reply
        self.assertTrue(answer.ok, answer)
        self.assertIn(b"* 1 EXISTS", answer.untagged)
        reply = await client.command("STORE 1 +FLAGS (\\Flagged)")
        self.assertEqual(reply.untagged, [b"* 1 FETCH (FLAGS (\\Flagged))"])
        reply = await client.command("COPY 1 INBOX")
        self.assertTrue(reply.ok, reply)
        self.assertIn(b"* 2 EXISTS", reply.untagged)
        reply = await client.command("FETCH 2 (UID FLAGS)")
        self.assertEqual(reply.untagged, [b"* 2 FETCH (UID 2 FLAGS (\\Flagged))"])
        await client.command("LOGOUT")

    async def test_appendLiteralPlus(self) -> None:
        """
        LITERAL+ (RFC 7888): an APPEND with a non-synchronising literal gets
        no continuation and is stored; a synchronising one gets "+" first.
        """
        client = await self.raw()
        text = message("literal plus")
        tag = client.nextTag()
        reply = client.expectTag(tag)
        client.send(tag + b" APPEND INBOX (\\Seen) {%d+}\r\n" % len(text) + text + b"\r\n")
        answer = await reply
        self.assertTrue(answer.ok, answer)
        self.assertIn("APPENDUID", answer.text)
        self.assertEqual([r for r in answer.untagged if r.startswith(b"+")], [])
        tag = client.nextTag()
        reply = client.expectTag(tag)
        client.send(tag + b" APPEND INBOX {%d}\r\n" % len(text))
        await client.waitFor(rb"\+ ")
        client.send(text + b"\r\n")
        self.assertTrue((await reply).ok)
        await client.command("LOGOUT")
        self.assertEqual(sorted(m.get_flags() for m in self.stdlibMaildir().values()), ["", "S"])
        self.assertEqual([self.stdlibMaildir().get_bytes(k) for k in self.stdlibMaildir().keys()], [text, text])

    async def test_oversizedLiteralRefusedBeforeReading(self) -> None:
        """
        An APPEND literal over the message size limit is NO [TOOBIG] at
        once, with no continuation (the client never sends the octets);
        a non-synchronising one is BAD [TOOBIG] and the connection is
        closed, since its octets are already on their way; a string
        literal over 64 KiB elsewhere is BAD [TOOBIG].
        """
        limit = self.server.service.factories["imap"].maxLiteral
        client = await self.raw()
        tag = client.nextTag()
        reply = client.expectTag(tag)
        client.send(tag + b" APPEND INBOX {%d}\r\n" % (limit + 1))
        answer = await reply
        self.assertEqual((answer.status, answer.untagged), ("NO", []))
        self.assertIn("[TOOBIG]", answer.text)
        tag = client.nextTag()
        reply = client.expectTag(tag)
        client.send(tag + b" LOGIN {100000}\r\n")
        answer = await reply
        self.assertEqual(answer.status, "BAD")
        self.assertIn("[TOOBIG]", answer.text)
        self.assertTrue((await client.command("NOOP")).ok)
        tag = client.nextTag()
        reply = client.expectTag(tag)
        client.send(tag + b" APPEND INBOX {%d+}\r\n" % (limit + 1) + b"x" * 1000)
        answer = await reply
        self.assertEqual(answer.status, "BAD")
        await client.closed
        self.assertEqual(maildirFiles(self.folder()), {})


class CopyMoveTests(IMAPTestCase):
    """
    COPY, MOVE, and UIDPLUS's COPYUID and UID EXPUNGE.
    """

    async def test_copyAnswersCOPYUID(self) -> None:
        """
        COPY keeps the source, answers COPYUID pairing source and new UIDs
        in order, and the copies have the flags and octets of the
        originals; COPY to a missing folder is NO [TRYCREATE].
        """
        texts = [message(f"copy {n}") for n in range(3)]

        def work(client: imaplib.IMAP4) -> Any:
            for n, text in enumerate(texts):
                check(client.append("INBOX", "(\\Flagged)" if n == 1 else None, None, text))
            check(client.select("INBOX"))
            copyUid = responseCode(client, check(client.copy("2:3", "Archive")), "COPYUID")
            # (imaplib's uid() returns untagged data; the tagged text has COPYUID.)
            uidCopy = responseCode(client, check(client._simple_command("UID", "COPY", "3,1", "Trash")), "COPYUID")
            missing = failure(client.copy, "1", "Nowhere")
            count = check(client.select("INBOX"))[0]
            check(client.select("Archive"))
            items = fetched(check(client.fetch("1:*", "(UID FLAGS BODY.PEEK[])")))
            return copyUid, uidCopy, missing, count, items

        copyUid, uidCopy, missing, count, items = await self.imap(work)
        self.assertEqual(uidCopy[1:], ["1,3", "1:2"])
        validity, sources, targets = copyUid
        self.assertEqual(sources, "2:3")
        self.assertEqual(targets, "1:2")
        self.assertIn("TRYCREATE", missing)
        self.assertEqual(count, b"3")
        self.assertEqual([items[n]["BODY[]"] for n in (1, 2)], texts[1:])
        self.assertEqual(items[1]["FLAGS"], ["\\Flagged"])
        self.assertEqual(items[2]["FLAGS"], [])
        self.assertEqual(len(self.stdlibMaildir("Archive")), 2)

    async def test_moveAnswersCOPYUIDThenEXPUNGE(self) -> None:
        """
        MOVE (RFC 6851) sends COPYUID in an untagged OK, then EXPUNGE for
        each message moved, highest first numbering kept valid; the
        messages are in the target and no longer in the source, on disk
        too.
        """
        client = await self.raw()
        for n in range(4):
            text = message(f"move {n}")
            tag = client.nextTag()
            reply = client.expectTag(tag)
            client.send(tag + b" APPEND INBOX {%d+}\r\n" % len(text) + text + b"\r\n")
            self.assertTrue((await reply).ok)
        await client.command("SELECT INBOX")
        reply = await client.command("MOVE 2,4 Trash")
        self.assertTrue(reply.ok, reply)
        self.assertTrue(reply.untagged[0].startswith(b"* OK [COPYUID "), reply.untagged)
        self.assertEqual(reply.untagged[0].split()[3:6], [reply.untagged[0].split()[3], b"2,4", b"1:2]"])
        self.assertEqual(reply.untagged[1:], [b"* 2 EXPUNGE", b"* 3 EXPUNGE"])
        reply = await client.command("UID MOVE 3 Trash")
        self.assertTrue(reply.ok, reply)
        self.assertEqual(reply.untagged[1:], [b"* 2 EXPUNGE"])
        await client.command("LOGOUT")
        subjects = sorted(m["Subject"] for m in self.stdlibMaildir("Trash").values())
        self.assertEqual(subjects, ["move 1", "move 2", "move 3"])
        self.assertEqual([m["Subject"] for m in self.stdlibMaildir().values()], ["move 0"])

    async def test_uidExpungeOnlyThose(self) -> None:
        """
        UID EXPUNGE (RFC 4315) removes only the \\Deleted messages among
        the UIDs given; another \\Deleted message stays, still \\Deleted.
        """

        def work(client: imaplib.IMAP4) -> Any:
            for n in range(4):
                check(client.append("INBOX", "(\\Deleted)" if n != 2 else None, None, message(f"n{n}")))
            check(client.select("INBOX"))
            typ, data = client.uid("EXPUNGE", "2:3")
            check((typ, data))
            expunged = client.response("EXPUNGE")[1]
            left = fetched(check(client.fetch("1:*", "(UID FLAGS)")))
            return expunged, left

        expunged, left = await self.imap(work)
        self.assertEqual(expunged, [b"2"])
        self.assertEqual({v["UID"]: v["FLAGS"] for v in left.values()}, {1: ["\\Deleted"], 3: [], 4: ["\\Deleted"]})
        self.assertEqual(len(self.stdlibMaildir()), 3)

    async def test_expunge(self) -> None:
        """
        EXPUNGE removes every \\Deleted message, answering one EXPUNGE each
        with sequence numbers valid when sent; the files are gone and the
        UIDs of the others stay.
        """

        def work(client: imaplib.IMAP4) -> Any:
            for n in range(5):
                check(client.append("INBOX", None, None, message(f"n{n}")))
            check(client.select("INBOX"))
            check(client.store("2,3,5", "+FLAGS.SILENT", "(\\Deleted)"))
            expunged = check(client.expunge())
            return expunged, uidsOf(client)

        expunged, uids = await self.imap(work)
        self.assertEqual(expunged, [b"2", b"2", b"3"])
        self.assertEqual(uids, [1, 4])
        self.assertEqual(sorted(m["Subject"] for m in self.stdlibMaildir().values()), ["n0", "n3"])

    async def test_store(self) -> None:
        """
        STORE sets, adds and removes flags and keywords, answers FETCH
        FLAGS (with UID for UID STORE) unless .SILENT; the names on disk
        follow.
        """

        def work(client: imaplib.IMAP4) -> Any:
            check(client.append("INBOX", None, None, message("flags")))
            check(client.select("INBOX"))
            added = check(client.store("1", "+FLAGS", "(\\Flagged $Label1)"))
            replaced = check(client.uid("STORE", "1", "FLAGS", "(\\Seen \\Answered)"))
            silent = check(client.store("1", "-FLAGS.SILENT", "(\\Answered)"))
            return added, replaced, silent

        added, replaced, silent = await self.imap(work)
        self.assertEqual(parseValues(added[0]), [1, ["FLAGS", ["\\Flagged", "$Label1"]]])
        items = dict(zip(*[iter(parseValues(replaced[0])[1])] * 2))
        self.assertEqual((sorted(items["FLAGS"]), items["UID"]), (["\\Answered", "\\Seen"], 1))
        self.assertEqual(silent, [None])
        [stored] = self.stdlibMaildir().values()
        self.assertEqual(stored.get_flags(), "S")


class FolderTests(IMAPTestCase):
    """
    CREATE, DELETE, RENAME, LIST, LSUB, SUBSCRIBE, STATUS, and the
    Maildir++ tree they make on disk.
    """

    def listed(self, lines: list[bytes]) -> dict[str, list[str]]:
        """
        LIST lines as C{{name: attributes}}.
        """
        out = {}
        for line in untagged(lines):
            attributes, delimiter, name = parseValues(line)
            self.assertEqual(delimiter, b"/")
            out[name.decode() if isinstance(name, bytes) else name] = attributes
        return out

    async def test_dovecotTree(self) -> None:
        """
        The first login makes INBOX and the special-use folders as Dovecot
        lays them out (C{.Sent} with C{maildirfolder}, C{cur new tmp}),
        subscribed; a nested folder is C{.Parent.Child}; a name in
        modified UTF-7 is stored so.
        """

        def work(client: imaplib.IMAP4) -> Any:
            check(client.create("Projects/2026"))
            check(client.create("Entw&APw-rfe"))
            return self.listed(check(client.list()))

        folders = await self.imap(work)
        root = self.folder()
        for name in ("Sent", "Drafts", "Trash", "Junk", "Archive", "Projects.2026", "Entw&APw-rfe"):
            path = os.path.join(root, "." + name)
            self.assertTrue(os.path.isfile(os.path.join(path, "maildirfolder")), name)
            for sub in ("cur", "new", "tmp"):
                self.assertTrue(os.path.isdir(os.path.join(path, sub)), (name, sub))
        self.assertFalse(os.path.exists(os.path.join(root, ".Projects")))
        with open(os.path.join(root, "subscriptions")) as f:
            self.assertEqual(sorted(f.read().split()), ["Archive", "Drafts", "INBOX", "Junk", "Sent", "Trash"])
        self.assertEqual(
            set(folders),
            {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive", "Projects", "Projects/2026", "Entw&APw-rfe"},
        )
        # SPECIAL-USE (RFC 6154) and CHILDREN (RFC 3348).
        for name, use in (("Sent", "\\Sent"), ("Drafts", "\\Drafts"), ("Trash", "\\Trash"), ("Junk", "\\Junk"), ("Archive", "\\Archive")):
            self.assertIn(use, folders[name])
        self.assertEqual(sorted(folders["Projects"]), ["\\HasChildren", "\\Noselect"])
        self.assertEqual(folders["Projects/2026"], ["\\HasNoChildren"])
        self.assertIn("\\HasNoChildren", folders["INBOX"])
        # Dovecot's own reader would see the same folders.
        box = self.stdlibMaildir()
        self.assertIn("Projects.2026", box.list_folders())

    async def test_listPatterns(self) -> None:
        """
        LIST with % stops at the separator, * does not; a reference is
        prefixed; INBOX matches in any case; an empty pattern gives the
        delimiter.
        """

        def work(client: imaplib.IMAP4) -> Any:
            check(client.create("Projects/2026/Q1"))
            check(client.create("Projects/2025"))
            return (
                self.listed(check(client.list('""', "%"))),
                self.listed(check(client.list('""', "Projects/*"))),
                self.listed(check(client.list("Projects/", "%"))),
                self.listed(check(client.list('""', "inbox"))),
                check(client.list('""', '""')),
            )

        top, below, referenced, inbox, root = await self.imap(work)
        self.assertEqual(set(top), {"INBOX", "Sent", "Drafts", "Trash", "Junk", "Archive", "Projects"})
        self.assertEqual(set(below), {"Projects/2025", "Projects/2026", "Projects/2026/Q1"})
        self.assertEqual(set(referenced), {"Projects/2025", "Projects/2026"})
        self.assertIn("\\HasChildren", below["Projects/2026"])
        self.assertEqual(set(inbox), {"INBOX"})
        self.assertEqual(parseValues(root[0]), [["\\Noselect"], b"/", b""])

    async def test_subscriptions(self) -> None:
        """
        SUBSCRIBE, LSUB and UNSUBSCRIBE, kept in the C{subscriptions} file.
        """

        def work(client: imaplib.IMAP4) -> Any:
            check(client.create("Lists"))
            check(client.subscribe("Lists"))
            check(client.unsubscribe("Junk"))
            lsub = check(client.lsub())
            missing = failure(client.unsubscribe, "Junk")
            return [parseValues(line)[2] for line in lsub], missing

        subscribed, missing = await self.imap(work)
        self.assertEqual(sorted(subscribed), [b"Archive", b"Drafts", b"INBOX", b"Lists", b"Sent", b"Trash"])
        self.assertTrue(missing.startswith("NO"), missing)
        with open(os.path.join(self.folder(), "subscriptions")) as f:
            self.assertEqual(sorted(f.read().split()), ["Archive", "Drafts", "INBOX", "Lists", "Sent", "Trash"])

    async def test_createAndDelete(self) -> None:
        """
        CREATE with a trailing separator, CREATE of an existing folder (NO
        [ALREADYEXISTS]) or INBOX, DELETE with its messages, DELETE of a
        folder with children (it becomes \\Noselect, the children stay),
        DELETE of INBOX or a missing folder refused.
        """

        def work(client: imaplib.IMAP4) -> Any:
            check(client.create("Work/"))
            check(client.create("Work/Old"))
            check(client.append("Work", None, None, message("work")))
            exists = failure(client.create, "Work")
            inbox = failure(client.create, "inbox")
            check(client.delete("Work"))
            afterParent = self.listed(check(client.list('""', "Work*")))
            check(client.delete("Work/Old"))
            deleteInbox = failure(client.delete, "INBOX")
            missing = failure(client.delete, "Work")
            return exists, inbox, afterParent, deleteInbox, missing, self.listed(check(client.list('""', "Work*")))

        exists, inbox, afterParent, deleteInbox, missing, afterAll = await self.imap(work)
        self.assertIn("ALREADYEXISTS", exists)
        self.assertTrue(inbox.startswith("NO"), inbox)
        self.assertEqual(sorted(afterParent["Work"]), ["\\HasChildren", "\\Noselect"])
        self.assertIn("Work/Old", afterParent)
        self.assertTrue(deleteInbox.startswith("NO"), deleteInbox)
        self.assertIn("NONEXISTENT", missing)
        self.assertEqual(afterAll, {})
        self.assertEqual([e for e in os.listdir(self.folder()) if e.startswith(".Work")], [])

    async def test_rename(self) -> None:
        """
        RENAME moves a folder with its children and messages, UIDs kept;
        renaming onto an existing folder, below itself, or a missing one
        is refused.
        """

        def work(client: imaplib.IMAP4) -> Any:
            check(client.create("Old"))
            check(client.create("Old/Child"))
            check(client.append("Old", None, None, message("kept")))
            check(client.append("Old", None, None, message("kept too")))
            check(client.select("Old"))
            check(client.store("1", "+FLAGS", "(\\Deleted)"))
            check(client.expunge())
            before = uidsOf(client)
            check(client.unselect())
            check(client.rename("Old", "New"))
            check(client.select("New"))
            after = uidsOf(client)
            subject = fetched(check(client.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")))[1]
            refused = [
                failure(client.rename, "New", "Sent"),
                failure(client.rename, "New", "New/Below"),
                failure(client.rename, "Nothing", "Else"),
                failure(client.rename, "New", "INBOX"),
            ]
            return before, after, subject, refused, self.listed(check(client.list()))

        before, after, subject, refused, folders = await self.imap(work)
        self.assertEqual(before, [2])
        self.assertEqual(after, [2])
        self.assertEqual(list(subject.values()), [b"Subject: kept too\r\n\r\n"])
        for text in refused:
            self.assertTrue(text.startswith("NO"), text)
        self.assertIn("New/Child", folders)
        self.assertNotIn("Old", folders)
        self.assertNotIn("Old/Child", folders)
        self.assertTrue(os.path.isdir(self.folder("New/Child")))
        self.assertEqual([m["Subject"] for m in self.stdlibMaildir("New").values()], ["kept too"])

    async def test_renameInbox(self) -> None:
        """
        RENAME INBOX (RFC 3501 §6.3.5) moves every message of INBOX into
        the new folder; INBOX stays, empty and selectable.
        """
        await self.deliver(message("one"), message("two"))

        def work(client: imaplib.IMAP4) -> Any:
            check(client.rename("INBOX", '"Old Mail"'))
            inbox = check(client.select("INBOX"))[0]
            old = check(client.select('"Old Mail"'))[0]
            subjects = fetched(check(client.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")))
            return inbox, old, sorted(list(v.values())[0] for v in subjects.values())

        inbox, old, subjects = await self.imap(work)
        self.assertEqual((inbox, old), (b"0", b"2"))
        self.assertEqual(subjects, [b"Subject: one\r\n\r\n", b"Subject: two\r\n\r\n"])
        self.assertEqual(len(self.stdlibMaildir()), 0)
        self.assertEqual(len(self.stdlibMaildir("Old Mail")), 2)
        await self.deliver(message("three"))
        self.assertEqual([m["Subject"] for m in self.stdlibMaildir().values()], ["three"])

    async def test_status(self) -> None:
        """
        STATUS of a folder that is not selected: MESSAGES, RECENT, UIDNEXT,
        UIDVALIDITY, UNSEEN; of a missing folder NO; an unknown item BAD.
        """
        await self.deliver(message("new one"), message("new two"))

        def work(client: imaplib.IMAP4) -> Any:
            check(client.append("INBOX", "(\\Seen)", None, message("seen")))
            inbox = parseValues(check(client.status("INBOX", "(MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)"))[0])
            sent = parseValues(check(client.status("Sent", "(MESSAGES UIDNEXT UNSEEN)"))[0])
            select = check(client.select("INBOX"))
            validity = client.response("UIDVALIDITY")[1]
            return inbox, sent, validity, failure(client.status, "Nowhere", "(MESSAGES)"), failure(client.status, "INBOX", "(SIZE-OF-ALL)")

        inbox, sent, validity, missing, unknown = await self.imap(work)
        self.assertEqual(inbox[0], b"INBOX")
        items = dict(zip(inbox[1][::2], inbox[1][1::2]))
        self.assertEqual(
            {k: v for k, v in items.items() if k != "UIDVALIDITY"},
            {"MESSAGES": 3, "RECENT": 2, "UIDNEXT": 4, "UNSEEN": 2},
        )
        self.assertEqual([str(items["UIDVALIDITY"]).encode()], validity)
        self.assertEqual(sent, [b"Sent", ["MESSAGES", 0, "UIDNEXT", 1, "UNSEEN", 0]])
        self.assertIn("NONEXISTENT", missing)
        self.assertIn("BAD", unknown)


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
