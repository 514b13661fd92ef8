"""
FETCH of every item and SEARCH with every key, end to end with the stdlib
C{imaplib}: sections and partials of a message with nested parts,
BODYSTRUCTURE, ENVELOPE, INTERNALDATE, RFC822.SIZE, FLAGS, UID, \\Seen set
by BODY[] and not by BODY.PEEK; search keys, sequence and UID sets, OR/NOT,
header and body text (UTF-8 literals), dates and sizes.
"""

from __future__ import annotations

import email.utils
import imaplib
import re
from typing import Any

from tests.functional.imapsupport import (
    IMAPTestCase,
    check,
    crlf,
    failure,
    fetched,
    maildirFiles,
)
from tests.functional.support import message


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
