"""
Tests for L{mailhub.imap.message}: ENVELOPE, BODYSTRUCTURE, sections,
partials and the text SEARCH decodes.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.mail.imap4 import collapseNestedLists
from twisted.trial.unittest import SynchronousTestCase

from mailhub.errors import MailhubError
from mailhub.imap.message import (
    Section,
    SectionError,
    bodyLabel,
    bodyStructure,
    bodyText,
    decodeHeader,
    envelope,
    fetchBody,
    headerValues,
    nestedList,
    parseSection,
    partial,
    section,
    splitHeader,
    toCRLF,
)


def crlf(text: str) -> bytes:
    """A message written with \\n in the test, stored with CRLF."""
    return text.replace("\n", "\r\n").encode("utf-8")


SIMPLE = crlf(
    "Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\n"
    "From: Terry Gray <gray@cac.washington.edu>\n"
    "Subject: IMAP4rev1 WG mtg summary and minutes\n"
    "To: imap@cac.washington.edu\n"
    "Cc: minutes@CNRI.Reston.VA.US,\n"
    " John Klensin <KLENSIN@MIT.EDU>\n"
    "Message-Id: <B27397-0100000@cac.washington.edu>\n"
    "MIME-Version: 1.0\n"
    "Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\n"
    "\n"
    "Hello Joe, do you think we can meet at 3:30 tomorrow?\n"
)

ALTERNATIVE = crlf(
    "From: a@example.org\n"
    "Subject: alt\n"
    'Content-Type: multipart/alternative; boundary="XX"\n'
    "\n"
    "This is a preamble.\n"
    "--XX\n"
    "Content-Type: text/plain; charset=utf-8\n"
    "Content-Transfer-Encoding: quoted-printable\n"
    "\n"
    "Caf=C3=A9 au lait\n"
    "--XX\n"
    "Content-Type: text/html; charset=utf-8\n"
    "Content-Transfer-Encoding: 8bit\n"
    "\n"
    "<p>Caf\u00e9</p>\n"
    "second line\n"
    "--XX--\n"
    "epilogue\n"
)

# multipart/mixed: a text part, a nested multipart/alternative, a base64
# attachment with disposition, language and location, and a message/rfc822.
MIXED = crlf(
    "From: Ann <ann@example.org>\n"
    "To: bob@example.net\n"
    "Subject: mixed\n"
    "Content-Type: multipart/mixed; boundary=outer\n"
    "\n"
    "--outer\n"
    "\n"
    "plain text, default type\n"
    "--outer\n"
    "Content-Type: multipart/alternative; boundary=inner\n"
    "\n"
    "--inner\n"
    "Content-Type: text/plain\n"
    "\n"
    "inner plain\n"
    "--inner\n"
    "Content-Type: text/html\n"
    "\n"
    "<b>inner</b>\n"
    "--inner--\n"
    "--outer\n"
    'Content-Type: application/pdf; name="r.pdf"\n'
    "Content-Transfer-Encoding: base64\n"
    "Content-ID: <pdf@x>\n"
    "Content-Description: the report\n"
    'Content-Disposition: attachment; filename="r.pdf"\n'
    "Content-Language: en, fr\n"
    "Content-Location: http://example.org/r.pdf\n"
    "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==\n"
    "\n"
    "JVBERi0xLjQK\n"
    "--outer\n"
    "Content-Type: message/rfc822\n"
    "\n"
    "From: Carl <carl@example.com>\n"
    "Subject: inner message\n"
    "\n"
    "inner body\n"
    "two\n"
    "--outer--\n"
)

TEXT_US_ASCII = [b"CHARSET", b"us-ascii"]


class SplitHeaderTests(SynchronousTestCase):
    """
    L{splitHeader} cuts after the blank line; header + body is the message.
    """

    cases = [
        # (message, header, body)
        (b"A: 1\r\n\r\nbody\r\n", b"A: 1\r\n\r\n", b"body\r\n"),
        (b"A: 1\n\nbody\n", b"A: 1\r\n\r\n", b"body\r\n"),
        (b"A: 1\r\nB: 2\r\n", b"A: 1\r\nB: 2\r\n", b""),
        (b"A: 1", b"A: 1", b""),
        (b"\r\nbody only", b"\r\n", b"body only"),
        (b"", b"", b""),
        (b"A: 1\r\n\r\n", b"A: 1\r\n\r\n", b""),
    ]

    def test_table(self) -> None:
        """Each message splits as expected."""
        for message, header, body in self.cases:
            self.assertEqual(splitHeader(message), (header, body), message)

    @given(st.binary(max_size=300))
    @settings(max_examples=300)
    def test_rejoins(self, data: bytes) -> None:
        """Header and body rejoin into the CRLF form of the message."""
        header, body = splitHeader(data)
        self.assertEqual(header + body, toCRLF(data))

    def test_lfOnly(self) -> None:
        """Bare LF becomes CRLF; CRLF and a lone CR are left alone."""
        self.assertEqual(toCRLF(b"a\nb\r\nc\rd\n"), b"a\r\nb\r\nc\rd\r\n")
        self.assertIs(toCRLF(SIMPLE), SIMPLE)


class HeaderValuesTests(SynchronousTestCase):
    """
    L{headerValues} unfolds and finds every occurrence, any case.
    """

    def test_folded(self) -> None:
        self.assertEqual(
            headerValues(SIMPLE, "CC"),
            [b"minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>"],
        )

    def test_repeated(self) -> None:
        self.assertEqual(headerValues(b"Received: a\r\nX: 1\r\nreceived: b\r\n\r\n", "received"), [b"a", b"b"])

    def test_missing(self) -> None:
        self.assertEqual(headerValues(SIMPLE, "bcc"), [])


class EnvelopeTests(SynchronousTestCase):
    """
    L{envelope} gives RFC 3501 §7.4.2 ENVELOPE structures.
    """

    def test_rfcExample(self) -> None:
        """The example message of RFC 3501 §8, with every field."""
        terry = [[b"Terry Gray", None, b"gray", b"cac.washington.edu"]]
        self.assertEqual(
            envelope(SIMPLE),
            [
                b"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)",
                b"IMAP4rev1 WG mtg summary and minutes",
                terry,
                terry,
                terry,
                [[None, None, b"imap", b"cac.washington.edu"]],
                [[None, None, b"minutes", b"CNRI.Reston.VA.US"], [b"John Klensin", None, b"KLENSIN", b"MIT.EDU"]],
                None,
                None,
                b"<B27397-0100000@cac.washington.edu>",
            ],
        )

    cases = [
        # (header lines, index into the envelope, expected)
        ("Subject: hi", 2, None),  # no From
        ("Subject: hi", 0, None),  # no Date
        ("From: a@b.c\nSender: s@b.c", 3, [[None, None, b"s", b"b.c"]]),
        ("From: a@b.c\nReply-To: r@b.c", 4, [[None, None, b"r", b"b.c"]]),
        ("From: a@b.c\nReply-To:", 4, [[None, None, b"a", b"b.c"]]),
        ('To: "Doe, John" <john@x.org>', 5, [[b"Doe, John", None, b"john", b"x.org"]]),
        ('To: "say \\"hi\\"" <a@x>', 5, [[b'say "hi"', None, b"a", b"x"]]),
        ("To: a@x, b@y,\n c@z", 5, [[None, None, b"a", b"x"], [None, None, b"b", b"y"], [None, None, b"c", b"z"]]),
        ("To: a@x (Comment Here)", 5, [[None, None, b"a", b"x"]]),
        ("To: <@r1,@r2:joe@x.org>", 5, [[None, b"@r1,@r2", b"joe", b"x.org"]]),
        ("To: first.last@x.org", 5, [[None, None, b"first.last", b"x.org"]]),
        (
            "To: friends: a@x, Bee <b@y>;, c@z",
            5,
            [
                [None, None, b"friends", None],
                [None, None, b"a", b"x"],
                [b"Bee", None, b"b", b"y"],
                [None, None, None, None],
                [None, None, b"c", b"z"],
            ],
        ),
        ("To: undisclosed-recipients:;", 5, [[None, None, b"undisclosed-recipients", None], [None, None, None, None]]),
        ("To: nodomain", 5, [[None, None, b"nodomain", b"MISSING_DOMAIN"]]),
        ("Cc:", 6, None),
        ("Bcc: x@y", 7, [[None, None, b"x", b"y"]]),
        ("In-Reply-To: <a@b>", 8, b"<a@b>"),
        # RFC 2047 encoded words are returned raw, as RFC 3501 asks.
        ("Subject: =?utf-8?q?caf=C3=A9?=", 1, b"=?utf-8?q?caf=C3=A9?="),
        (
            "From: =?iso-8859-1?q?Andr=E9?= Pirard <PIRARD@vm1.ulg.ac.be>",
            2,
            [[b"=?iso-8859-1?q?Andr=E9?= Pirard", None, b"PIRARD", b"vm1.ulg.ac.be"]],
        ),
        # Raw UTF-8 (RFC 6532) passes through as its octets.
        ("From: J\u00fcrgen <j@x.de>", 2, [["J\u00fcrgen".encode(), None, b"j", b"x.de"]]),
        ("Subject: folded\n  over lines", 1, b"folded  over lines"),
    ]

    def test_table(self) -> None:
        """Missing fields, defaults, groups, encoded words, lists."""
        for headers, index, expected in self.cases:
            message = crlf(headers + "\n\nbody\n")
            self.assertEqual(envelope(message)[index], expected, headers)

    def test_headerOnly(self) -> None:
        """The header block alone is enough; the body is not read."""
        header, _ = splitHeader(SIMPLE)
        self.assertEqual(envelope(header), envelope(SIMPLE))

    def test_formats(self) -> None:
        """Twisted's formatter turns it into the wire form."""
        wire = collapseNestedLists([envelope(crlf("From: A <a@x>\nSubject: s\n\n"))])
        self.assertEqual(
            wire,
            b'(NIL "s" (("A" NIL "a" "x")) (("A" NIL "a" "x")) (("A" NIL "a" "x")) NIL NIL NIL NIL NIL)',
        )

    @given(st.binary(max_size=200))
    @settings(max_examples=300)
    def test_neverRaises(self, value: bytes) -> None:
        """Any address header gives a well-formed ENVELOPE."""
        result = envelope(b"From: " + value.replace(b"\n", b" ").replace(b"\r", b" ") + b"\r\n\r\n")
        self.assertEqual(len(result), 10)
        for address in result[2] or []:
            self.assertEqual(len(address), 4)


class BodyStructureTests(SynchronousTestCase):
    """
    L{bodyStructure} describes every part, with exact sizes and lines.
    """

    def test_textPlain(self) -> None:
        """The RFC 3501 §8 example: a text part with a charset."""
        body = b"Hello Joe, do you think we can meet at 3:30 tomorrow?\r\n"
        self.assertEqual(
            bodyStructure(SIMPLE),
            [b"TEXT", b"PLAIN", [b"CHARSET", b"US-ASCII"], None, None, b"7BIT", len(body), 1, None, None, None, None],
        )
        self.assertEqual(
            bodyStructure(SIMPLE, extensible=False),
            [b"TEXT", b"PLAIN", [b"CHARSET", b"US-ASCII"], None, None, b"7BIT", len(body), 1],
        )

    def test_noContentType(self) -> None:
        """RFC 2045 §5.2: no Content-Type means text/plain; charset=us-ascii."""
        self.assertEqual(
            bodyStructure(b"Subject: x\r\n\r\nab\r\ncd", extensible=False),
            [b"TEXT", b"PLAIN", TEXT_US_ASCII, None, None, b"7BIT", 6, 2],
        )

    def test_noBody(self) -> None:
        """A message without a body has size 0 and no lines."""
        self.assertEqual(bodyStructure(b"Subject: x\r\n", False)[6:], [0, 0])

    def test_alternative(self) -> None:
        """multipart/alternative, quoted-printable and 8bit parts."""
        html = "<p>Caf\u00e9</p>\r\nsecond line".encode()
        self.assertEqual(
            bodyStructure(ALTERNATIVE),
            [
                [b"TEXT", b"PLAIN", [b"CHARSET", b"utf-8"], None, None, b"QUOTED-PRINTABLE", 17, 1, None, None, None, None],
                [b"TEXT", b"HTML", [b"CHARSET", b"utf-8"], None, None, b"8BIT", len(html), 2, None, None, None, None],
                b"ALTERNATIVE",
                [b"BOUNDARY", b"XX"],
                None,
                None,
                None,
            ],
        )

    def test_mixed(self) -> None:
        """Nested multipart, attachment with extension data, message/rfc822."""
        inner = b"From: Carl <carl@example.com>\r\nSubject: inner message\r\n\r\ninner body\r\ntwo"
        carl = [[b"Carl", None, b"carl", b"example.com"]]
        self.assertEqual(
            bodyStructure(MIXED),
            [
                [b"TEXT", b"PLAIN", TEXT_US_ASCII, None, None, b"7BIT", 24, 1, None, None, None, None],
                [
                    [b"TEXT", b"PLAIN", TEXT_US_ASCII, None, None, b"7BIT", 11, 1, None, None, None, None],
                    [b"TEXT", b"HTML", TEXT_US_ASCII, None, None, b"7BIT", 12, 1, None, None, None, None],
                    b"ALTERNATIVE",
                    [b"BOUNDARY", b"inner"],
                    None,
                    None,
                    None,
                ],
                [
                    b"APPLICATION",
                    b"PDF",
                    [b"NAME", b"r.pdf"],
                    b"<pdf@x>",
                    b"the report",
                    b"BASE64",
                    12,
                    b"Q2hlY2sgSW50ZWdyaXR5IQ==",
                    [b"ATTACHMENT", [b"FILENAME", b"r.pdf"]],
                    [b"en", b"fr"],
                    b"http://example.org/r.pdf",
                ],
                [
                    b"MESSAGE",
                    b"RFC822",
                    None,
                    None,
                    None,
                    b"7BIT",
                    len(inner),
                    [None, b"inner message", carl, carl, carl, None, None, None, None, None],
                    [b"TEXT", b"PLAIN", TEXT_US_ASCII, None, None, b"7BIT", 15, 2, None, None, None, None],
                    5,
                    None,
                    None,
                    None,
                    None,
                ],
                b"MIXED",
                [b"BOUNDARY", b"outer"],
                None,
                None,
                None,
            ],
        )

    def test_bodyHasNoExtensions(self) -> None:
        """BODY drops extension data at every depth."""
        structure = bodyStructure(MIXED, extensible=False)
        self.assertEqual(structure[-1], b"MIXED")
        self.assertEqual(structure[1][-1], b"ALTERNATIVE")
        self.assertEqual(structure[2], [b"APPLICATION", b"PDF", [b"NAME", b"r.pdf"], b"<pdf@x>", b"the report", b"BASE64", 12])
        self.assertEqual(structure[3][8], [b"TEXT", b"PLAIN", TEXT_US_ASCII, None, None, b"7BIT", 15, 2])

    def test_sizesMatchSections(self) -> None:
        """Every part's size is the length of its BODY[n] section."""
        structure = bodyStructure(MIXED)
        self.assertEqual(len(section(MIXED, "1")), structure[0][6])
        self.assertEqual(len(section(MIXED, "2.1")), structure[1][0][6])
        self.assertEqual(len(section(MIXED, "2.2")), structure[1][1][6])
        self.assertEqual(len(section(MIXED, "3")), structure[2][6])
        self.assertEqual(len(section(MIXED, "4")), structure[3][6])

    def test_lfOnly(self) -> None:
        """Bare-LF storage gives the sizes of the CRLF form."""
        self.assertEqual(bodyStructure(MIXED.replace(b"\r\n", b"\n")), bodyStructure(MIXED))

    def test_rfc2231Continuations(self) -> None:
        """name*0/name*1 parameters are joined."""
        message = crlf("Content-Type: application/x; name*0=\"long\"; name*1=\"name.txt\"\n\nx")
        self.assertEqual(bodyStructure(message, False)[2], [b"NAME", b"longname.txt"])

    def test_badMultipart(self) -> None:
        """A multipart without a boundary is text/plain (RFC 2045 §5.2)."""
        self.assertEqual(bodyStructure(crlf("Content-Type: multipart/mixed\n\nx\n"), False)[:2], [b"TEXT", b"PLAIN"])

    def test_multipartWithoutParts(self) -> None:
        """A multipart whose boundary never appears still has one (empty) part."""
        structure = bodyStructure(crlf("Content-Type: multipart/mixed; boundary=z\n\nnothing\n"), False)
        self.assertEqual(structure, [[b"TEXT", b"PLAIN", TEXT_US_ASCII, None, None, b"7BIT", 0, 0], b"MIXED"])

    def test_deepNesting(self) -> None:
        """Thousands of nested multiparts do not exhaust the stack."""
        depth = 2000
        opening = "".join(f"Content-Type: multipart/mixed; boundary=b{i}\n\n--b{i}\n" for i in range(depth))
        structure = bodyStructure(crlf(opening + "\nleaf\n"))
        self.assertIsInstance(structure, list)

    def test_formats(self) -> None:
        """Twisted's formatter accepts the structure."""
        wire = collapseNestedLists([bodyStructure(ALTERNATIVE, extensible=False)])
        self.assertTrue(wire.startswith(b'(("TEXT" "PLAIN" ("CHARSET" "utf-8") NIL NIL "QUOTED-PRINTABLE" 17 1)'))

    @given(st.lists(st.sampled_from([b"--b", b"--b--", b"Content-Type: multipart/mixed; boundary=b", b"Content-Type: message/rfc822", b"", b"x", b"A: b"]), max_size=30))
    @settings(max_examples=300)
    def test_neverRaises(self, lines: list) -> None:
        """Any arrangement of boundaries and headers gives a structure."""
        message = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"\r\n".join(lines)
        self.assertIsInstance(bodyStructure(message), list)
        self.assertIsInstance(bodyStructure(message, extensible=False), list)


class SectionTests(SynchronousTestCase):
    """
    L{section} gives the octets of BODY[spec] (RFC 3501 §6.4.5).
    """

    def test_simpleMessage(self) -> None:
        """Whole, HEADER, TEXT, and part 1 of a non-multipart message."""
        header, body = splitHeader(SIMPLE)
        table = [
            ("", SIMPLE),
            ("HEADER", header),
            ("header", header),
            ("TEXT", body),
            ("1", body),
            ("1.MIME", header),
            ("2", b""),
            ("1.1", b""),
            ("1.HEADER", b""),
        ]
        for spec, expected in table:
            self.assertEqual(section(SIMPLE, spec), expected, spec)

    def test_multipart(self) -> None:
        """Part numbers into nested multiparts and a message/rfc822."""
        table = [
            ("1", b"plain text, default type"),
            ("1.MIME", b"\r\n"),
            ("2.1", b"inner plain"),
            ("2.2", b"<b>inner</b>"),
            ("2.2.MIME", b"Content-Type: text/html\r\n\r\n"),
            ("3", b"JVBERi0xLjQK"),
            ("4.HEADER", b"From: Carl <carl@example.com>\r\nSubject: inner message\r\n\r\n"),
            ("4.TEXT", b"inner body\r\ntwo"),
            ("4.1", b"inner body\r\ntwo"),
            ("4.HEADER.FIELDS (SUBJECT)", b"Subject: inner message\r\n\r\n"),
            ("4.2", b""),
            ("5", b""),
            ("2.3", b""),
            ("3.1", b""),
            ("2.TEXT", b""),
            ("HEADER.FIELDS (To Subject)", b"To: bob@example.net\r\nSubject: mixed\r\n\r\n"),
            ("HEADER.FIELDS.NOT (From To Content-Type)", b"Subject: mixed\r\n\r\n"),
            ("HEADER.FIELDS (X-Nothing)", b"\r\n"),
        ]
        for spec, expected in table:
            self.assertEqual(section(MIXED, spec), expected, spec)
        self.assertEqual(section(MIXED, "4"), section(MIXED, "4.HEADER") + section(MIXED, "4.TEXT"))

    def test_headerFieldsKeepsFolding(self) -> None:
        """HEADER.FIELDS returns fields as they are, folding included."""
        self.assertEqual(
            section(SIMPLE, "HEADER.FIELDS (CC)"),
            b"Cc: minutes@CNRI.Reston.VA.US,\r\n John Klensin <KLENSIN@MIT.EDU>\r\n\r\n",
        )

    def test_lfOnlyGivesCRLF(self) -> None:
        """A bare-LF message gives CRLF octets in every section."""
        bare = MIXED.replace(b"\r\n", b"\n")
        for spec in ["", "HEADER", "TEXT", "1", "2.1", "4.HEADER", "4.TEXT", "HEADER.FIELDS (SUBJECT)"]:
            self.assertEqual(section(bare, spec), section(MIXED, spec), spec)
            self.assertNotIn(b"\n", section(bare, spec).replace(b"\r\n", b""), spec)

    def test_parseSection(self) -> None:
        """Specs parse into parts, text and fields."""
        table = [
            ("", Section((), None)),
            ("HEADER", Section((), "HEADER")),
            ("1.2.3", Section((1, 2, 3), None)),
            ("1.2.header.fields (a b)", Section((1, 2), "HEADER.FIELDS", ("a", "b"))),
            ('HEADER.FIELDS.NOT ("X")', Section((), "HEADER.FIELDS.NOT", ("X",))),
            (b"2.MIME", Section((2,), "MIME")),
        ]
        for spec, expected in table:
            self.assertEqual(parseSection(spec), expected, spec)

    def test_badSpecs(self) -> None:
        """Malformed specs raise L{SectionError} with a reason."""
        for spec in ["MIME", "HEADER.FIELDS", "HEADER.FIELDS ()", "TEXT (A)", "0", "1.0", "FOO", "1.BODY", "01", "1" * 11, "HEADER.FIELDS (a:b)"]:
            error = self.assertRaises(SectionError, parseSection, spec)
            self.assertTrue(error.reason, spec)
            self.assertIsInstance(error, MailhubError)

    @given(st.text(max_size=40))
    @settings(max_examples=300)
    def test_parseNeverRaisesOthers(self, spec: str) -> None:
        """Any spec parses or raises L{SectionError}; a parsed one fetches."""
        try:
            parsed = parseSection(spec)
        except SectionError:
            return
        self.assertIsInstance(section(MIXED, parsed), bytes)


class PartialTests(SynchronousTestCase):
    """
    Partial fetches: the octets and the label.
    """

    def test_partial(self) -> None:
        table = [
            (b"0123456789", 0, 4, b"0123"),
            (b"0123456789", 8, 10, b"89"),
            (b"0123456789", 10, 5, b""),
            (b"0123456789", 50, 5, b""),
            (b"0123456789", 3, 0, b""),
        ]
        for data, start, length, expected in table:
            self.assertEqual(partial(data, start, length), expected)

    def test_negative(self) -> None:
        self.assertRaises(SectionError, partial, b"x", -1, 1)

    def test_labels(self) -> None:
        table = [
            ("", None, b"BODY[]"),
            ("", 0, b"BODY[]<0>"),
            ("text", 100, b"BODY[TEXT]<100>"),
            ("1.2.mime", None, b"BODY[1.2.MIME]"),
            ("header.fields  (From   To)", None, b"BODY[HEADER.FIELDS (From To)]"),
        ]
        for spec, start, expected in table:
            self.assertEqual(bodyLabel(spec, start), expected)

    def test_twistedPartialLabelTrap(self) -> None:
        """
        Regression, Twisted's partial-label trap: IMAP4Server answered
        C{BODY[]<0.10>} with the whole message under the label C{BODY[]}.
        The label must carry the origin octet (and not the length), and only
        the requested octets are sent.
        """
        label, data = fetchBody(SIMPLE, "", 0, 10)
        self.assertEqual(label, b"BODY[]<0>")
        self.assertEqual(data, SIMPLE[:10])
        label, data = fetchBody(SIMPLE, "TEXT", 6, 3)
        self.assertEqual(label, b"BODY[TEXT]<6>")
        self.assertEqual(data, b"Joe")
        label, data = fetchBody(SIMPLE, "HEADER", 100000, 10)
        self.assertEqual((label, data), (b"BODY[HEADER]<100000>", b""))

    def test_fetchBodyWhole(self) -> None:
        self.assertEqual(fetchBody(MIXED, "2.1"), (b"BODY[2.1]", b"inner plain"))

    def test_fetchBodyHalfRange(self) -> None:
        self.assertRaises(SectionError, fetchBody, SIMPLE, "", 0, None)
        self.assertRaises(SectionError, fetchBody, SIMPLE, "", None, 3)


class DecodingTests(SynchronousTestCase):
    """
    The decoded text that SEARCH compares.
    """

    headers = [
        (b"plain", "plain"),
        (b"=?utf-8?q?caf=C3=A9?=", "caf\u00e9"),
        (b"=?UTF-8?B?Y2Fmw6k=?=", "caf\u00e9"),
        (b"=?iso-8859-1?q?a_b?= =?iso-8859-1?q?c?=", "a bc"),
        (b"x =?utf-8?q?y?= z", "x y z"),
        (b"=?bogus-charset?q?abc?=", "abc"),
        (b"=?utf-8?b?!!!?=", "=?utf-8?b?!!!?="),
        (b"=?utf-8*en?q?hi?=", "hi"),
        ("J\u00fcrgen".encode(), "J\u00fcrgen"),
        (b"J\xfcrgen", "J\u00fcrgen"),
    ]

    def test_decodeHeader(self) -> None:
        for raw, expected in self.headers:
            self.assertEqual(decodeHeader(raw), expected, raw)

    def test_bodyText(self) -> None:
        """QP and 8bit text parts are decoded; base64 PDFs are skipped."""
        self.assertIn("Caf\u00e9 au lait", bodyText(ALTERNATIVE))
        self.assertIn("<p>Caf\u00e9</p>", bodyText(ALTERNATIVE))
        text = bodyText(MIXED)
        self.assertIn("inner plain", text)
        self.assertIn("inner message", text)  # encapsulated message headers
        self.assertNotIn("JVBER", text)

    def test_base64Text(self) -> None:
        message = crlf("Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\nY2Fmw6kgbm9pcg==\n")
        self.assertEqual(bodyText(message), "caf\u00e9 noir")


class NestedListTests(SynchronousTestCase):
    def test_asTwistedWrites(self) -> None:
        """
        L{nestedList} writes what Twisted's C{collapseNestedLists} does:
        strings quoted (with escapes) or as literals (line ends, over 1000
        octets), NIL, numbers, nested lists.
        """
        cases = [
            [],
            [None],
            [b"", b"plain", 0, 12345],
            [b'a "quoted" \\ one', [b"x", None, [b"deep", [None]]]],
            [b"two\r\nlines", b"bare\nLF", b"lone\rCR"],
            [b"x" * 1000, b"y" * 1001],
            ["text", [1, [2, [3]]]],
        ]
        for items in cases:
            self.assertEqual(nestedList(items), collapseNestedLists(items), items)
