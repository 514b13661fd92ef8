"""
Tests for L{mailhub.imap.search}: parsing SEARCH keys, narrowing, matching.
"""

from __future__ import annotations

import datetime

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mailhub.errors import MailhubError
from mailhub.imap.search import (
    All,
    And,
    BodyContains,
    Context,
    DateCompare,
    HasFlag,
    HeaderContains,
    LazyMessage,
    Not,
    Or,
    SearchError,
    SequenceSet,
    SizeCompare,
    TextContains,
    candidates,
    cost,
    matches,
    needsBody,
    needsHeaders,
    parseSearch,
    requiredHeaders,
    search,
)

D = datetime.date


class ParseTests(SynchronousTestCase):
    """
    L{parseSearch} understands every RFC 3501 §6.4.4 key.
    """

    keys = [
        (["ALL"], All()),
        (["ANSWERED"], HasFlag("\\Answered")),
        (["BCC", "bob"], HeaderContains("bcc", "bob")),
        (["BEFORE", "1-Feb-1994"], DateCompare(False, "before", D(1994, 2, 1))),
        (["BODY", "hello world"], BodyContains("hello world")),
        (["CC", "ann"], HeaderContains("cc", "ann")),
        (["DELETED"], HasFlag("\\Deleted")),
        (["DRAFT"], HasFlag("\\Draft")),
        (["FLAGGED"], HasFlag("\\Flagged")),
        (["FROM", "Smith"], HeaderContains("from", "Smith")),
        (["HEADER", "X-Spam", "yes"], HeaderContains("x-spam", "yes")),
        (["HEADER", "List-Id", ""], HeaderContains("list-id", "")),
        (["KEYWORD", "$Forwarded"], HasFlag("$Forwarded")),
        (["LARGER", "1000"], SizeCompare(True, 1000)),
        (["NEW"], And((HasFlag("\\Recent"), HasFlag("\\Seen", False)))),
        (["NOT", "SEEN"], Not(HasFlag("\\Seen"))),
        (["OLD"], HasFlag("\\Recent", False)),
        (["ON", "17-Jul-1996"], DateCompare(False, "on", D(1996, 7, 17))),
        (["OR", "SEEN", "FLAGGED"], Or(HasFlag("\\Seen"), HasFlag("\\Flagged"))),
        (["RECENT"], HasFlag("\\Recent")),
        (["SEEN"], HasFlag("\\Seen")),
        (["SENTBEFORE", "1-Jan-2000"], DateCompare(True, "before", D(2000, 1, 1))),
        (["SENTON", "01-jan-2000"], DateCompare(True, "on", D(2000, 1, 1))),
        (["SENTSINCE", "29-Feb-2024"], DateCompare(True, "since", D(2024, 2, 29))),
        (["SINCE", "1-Feb-1994"], DateCompare(False, "since", D(1994, 2, 1))),
        (["SMALLER", "0"], SizeCompare(False, 0)),
        (["SUBJECT", "afternoon tea"], HeaderContains("subject", "afternoon tea")),
        (["TEXT", "x"], TextContains("x")),
        (["TO", "carol"], HeaderContains("to", "carol")),
        (["UID", "1:*"], SequenceSet(((1, None),), uid=True)),
        (["UNANSWERED"], HasFlag("\\Answered", False)),
        (["UNDELETED"], HasFlag("\\Deleted", False)),
        (["UNDRAFT"], HasFlag("\\Draft", False)),
        (["UNFLAGGED"], HasFlag("\\Flagged", False)),
        (["UNKEYWORD", "$Junk"], HasFlag("$Junk", False)),
        (["UNSEEN"], HasFlag("\\Seen", False)),
        (["1:10"], SequenceSet(((1, 10),))),
        (["5:*"], SequenceSet(((5, None),))),
        (["1,3,7:9"], SequenceSet(((1, 1), (3, 3), (7, 9)))),
        (["*"], SequenceSet(((None, None),))),
        (["9:2"], SequenceSet(((9, 2),))),
    ]

    def test_everyKey(self) -> None:
        """Each key, alone, parses into its node."""
        for tokens, expected in self.keys:
            self.assertEqual(parseSearch(tokens), expected, tokens)

    def test_bytesAndCase(self) -> None:
        """Bytes tokens and lower-case keys parse the same as str upper case."""
        for tokens, expected in self.keys:
            lowered = [t.lower().encode() if t.isupper() else t.encode() for t in tokens]
            self.assertEqual(parseSearch(lowered), expected, lowered)

    combinations = [
        # Implicit AND; cheap keys are put first.
        (["FROM", "a", "SEEN"], And((HasFlag("\\Seen"), HeaderContains("from", "a")))),
        (["OR", "NOT", "SEEN", ["FROM", "a", "TO", "b"]], Or(Not(HasFlag("\\Seen")), And((HeaderContains("from", "a"), HeaderContains("to", "b"))))),
        (["NOT", ["OR", "1", "UID", "2"]], Not(Or(SequenceSet(((1, 1),)), SequenceSet(((2, 2),), True)))),
        ([["SEEN"]], HasFlag("\\Seen")),
        (["OR", "OR", "SEEN", "DRAFT", "DELETED"], Or(Or(HasFlag("\\Seen"), HasFlag("\\Draft")), HasFlag("\\Deleted"))),
        (["CHARSET", "UTF-8", "SUBJECT", "caf\u00e9".encode()], HeaderContains("subject", "caf\u00e9")),
        (["charset", "us-ascii", "ALL"], All()),
        (["1:10", "UNSEEN"], And((SequenceSet(((1, 10),)), HasFlag("\\Seen", False)))),
    ]

    def test_combinations(self) -> None:
        for tokens, expected in self.combinations:
            self.assertEqual(parseSearch(tokens), expected, tokens)

    malformed = [
        [],
        [[]],
        ["BOGUS"],
        ["FROM"],
        ["HEADER", "Subject"],
        ["HEADER", "Bad Name", "x"],
        ["HEADER", "", "x"],
        ["OR", "SEEN"],
        ["NOT"],
        ["BEFORE", "yesterday"],
        ["BEFORE", "31-Feb-2020"],
        ["BEFORE", "1-Foo-2020"],
        ["LARGER", "-1"],
        ["LARGER", "x"],
        ["LARGER", "9" * 5000],  # int() of this raises ValueError in 3.11
        ["SMALLER", "4294967296"],
        ["UID", "0"],
        ["UID", "1:"],
        ["1,,2"],
        ["0:5"],
        ["99999999999"],
        ["$"],
        ["FROM", ["a"]],
        ["KEYWORD", "two words"],
        ["SUBJECT", b"caf\xe9"],  # not UTF-8
        ["CHARSET"],
        ["CHARSET", "UTF-8"],
        ["SEEN", 7],
        [None],
        ["LARGER", "\u00b2"],
    ]

    def test_malformed(self) -> None:
        """Malformed keys raise L{SearchError} with a reason."""
        for tokens in self.malformed:
            error = self.assertRaises(SearchError, parseSearch, tokens)
            self.assertTrue(error.reason, tokens)
            self.assertIsNone(error.code)
            self.assertIsInstance(error, MailhubError)

    def test_badCharset(self) -> None:
        """An unknown charset says BADCHARSET so the protocol can answer NO."""
        error = self.assertRaises(SearchError, parseSearch, ["CHARSET", "KOI8-R", "ALL"])
        self.assertEqual(error.code, "BADCHARSET")

    def test_asciiCharset(self) -> None:
        """CHARSET US-ASCII refuses 8-bit strings."""
        self.assertRaises(SearchError, parseSearch, ["CHARSET", "US-ASCII", "BODY", "caf\u00e9".encode()])

    def test_twistedHeaderTrap(self) -> None:
        """
        Regression, Twisted's header-search trap: IMAP4Server's HEADER, FROM,
        TO... keys raised TypeError (bytes mixed with str).  Here every form
        of token parses, and a bad one gives L{SearchError}.
        """
        for tokens in (
            [b"HEADER", b"Subject", b"tea"],
            ["HEADER", b"Subject", "tea"],
            [b"FROM", "x"],
            [b"TO", b"\xc3\xa9"],
        ):
            self.assertIsInstance(parseSearch(tokens), HeaderContains)
        self.assertRaises(SearchError, parseSearch, [b"HEADER", b"Subject"])
        message = makeMessage(1, 1, header="Subject: afternoon TEA\r\n")
        self.assertTrue(matches(parseSearch([b"HEADER", b"subject", b"tea"]), message, CONTEXT))

    def test_deepNesting(self) -> None:
        """Deep nesting is refused, not a RecursionError."""
        tokens: list = ["ALL"]
        for _ in range(5000):
            tokens = [tokens]
        self.assertRaises(SearchError, parseSearch, tokens)
        self.assertRaises(SearchError, parseSearch, ["NOT"] * 5000 + ["ALL"])
        self.assertRaises(SearchError, parseSearch, ["OR"] * 5000 + ["ALL"] * 5001)
        self.assertIsInstance(parseSearch(["NOT"] * 20 + ["ALL"]), Not)


KEYWORDS = [
    "ALL", "ANSWERED", "BCC", "BEFORE", "BODY", "CC", "DELETED", "DRAFT", "FLAGGED", "FROM", "HEADER",
    "KEYWORD", "LARGER", "NEW", "NOT", "OLD", "ON", "OR", "RECENT", "SEEN", "SENTBEFORE", "SENTON",
    "SENTSINCE", "SINCE", "SMALLER", "SUBJECT", "TEXT", "TO", "UID", "UNANSWERED", "UNDELETED",
    "UNDRAFT", "UNFLAGGED", "UNKEYWORD", "UNSEEN", "CHARSET", "UTF-8", "1:*", "*", "1,2", "3:1",
    "1-Jan-2020", "0", "", "(", ")", "$",
]
atoms = st.one_of(
    st.sampled_from(KEYWORDS),
    st.sampled_from(KEYWORDS).map(str.encode),
    st.text(max_size=12),
    st.binary(max_size=12),
)
tokenLists = st.recursive(st.lists(atoms, max_size=8), lambda inner: st.lists(st.one_of(atoms, inner), max_size=6), max_leaves=40)


class PropertyTests(SynchronousTestCase):
    """
    Whatever the tokens, the parser answers with a node or a L{SearchError}.
    """

    @given(tokenLists)
    @settings(max_examples=1000)
    def test_parseOnlyRaisesSearchError(self, tokens: list) -> None:
        try:
            node = parseSearch(tokens)
        except SearchError as error:
            self.assertTrue(error.reason)
            return
        # A parsed tree also evaluates, narrows and reports its needs.
        for message in MAILBOX:
            self.assertIn(matches(node, message, CONTEXT), (True, False))
        self.assertIsInstance(candidates(node, UIDS), list)
        self.assertIn(cost(node), (0, 1, 2))

    @given(st.lists(st.one_of(st.integers(), st.none(), st.floats(), st.binary(), st.text()), max_size=5))
    def test_oddTokenTypes(self, tokens: list) -> None:
        try:
            parseSearch(tokens)
        except SearchError:
            pass


# -- evaluation -----------------------------------------------------------------------


class Loads:
    """Counts the reads a message view makes."""

    def __init__(self) -> None:
        self.count = 0


def makeMessage(
    seq: int,
    uid: int,
    flags: tuple = (),
    header: str = "",
    body: str = "",
    internal: datetime.datetime = datetime.datetime(2024, 3, 10, 23, 30, tzinfo=datetime.timezone.utc),
    loads: Loads | None = None,
) -> LazyMessage:
    data = (header + "\r\n" + body).encode("utf-8")

    def load() -> bytes:
        if loads is not None:
            loads.count += 1
        return data

    return LazyMessage(seq, uid, frozenset(flags), internal, len(data), load)


UIDS = [10, 20, 30, 40]
CONTEXT = Context(lastSeq=4, lastUid=40)
MAILBOX = [
    makeMessage(
        1,
        10,
        ("\\Seen", "$Forwarded"),
        "From: =?utf-8?q?Andr=C3=A9?= <andre@example.org>\r\nTo: team@example.org\r\n"
        "Subject: Lunch plans\r\nDate: Sat, 9 Mar 2024 23:59:00 -0800\r\nList-Id: <team.example.org>\r\n",
        "Let's meet at noon.\r\n",
        datetime.datetime(2024, 3, 10, 8, 0),
    ),
    makeMessage(
        2,
        20,
        ("\\Recent",),
        "From: Bob <bob@example.net>\r\nTo: andre@example.org\r\nCc: carol@example.com\r\n"
        "Subject: =?iso-8859-1?q?R=E9sum=E9?=\r\nDate: Mon, 11 Mar 2024 09:00:00 +0000\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n",
        "Attached: my r=C3=A9sum=C3=A9, soft=\r\nwrapped.\r\n",
        datetime.datetime(2024, 3, 11, 9, 0),
    ),
    makeMessage(
        3,
        30,
        ("\\Deleted", "\\Answered", "\\Flagged", "\\Draft", "\\Recent", "\\Seen"),
        "From: carol@example.com\r\nSubject: no date here\r\nBcc: secret@example.org\r\n",
        "x" * 5000 + "\r\n",
        datetime.datetime(2024, 3, 12, 0, 0),
    ),
    makeMessage(4, 40, (), "Subject: empty\r\n", "", datetime.datetime(2024, 3, 13, 0, 0)),
]


def run(tokens: list) -> list:
    node = parseSearch(tokens)
    return search(node, UIDS, lambda seq: MAILBOX[seq - 1])


class EvaluationTests(SynchronousTestCase):
    """
    L{search} and L{matches} on a small mailbox.
    """

    table = [
        (["ALL"], [1, 2, 3, 4]),
        (["SEEN"], [1, 3]),
        (["UNSEEN"], [2, 4]),
        (["NEW"], [2]),
        (["OLD"], [1, 4]),
        (["RECENT"], [2, 3]),
        (["ANSWERED"], [3]),
        (["UNANSWERED"], [1, 2, 4]),
        (["DELETED"], [3]),
        (["UNDELETED"], [1, 2, 4]),
        (["DRAFT"], [3]),
        (["UNDRAFT"], [1, 2, 4]),
        (["FLAGGED"], [3]),
        (["UNFLAGGED"], [1, 2, 4]),
        (["KEYWORD", "$forwarded"], [1]),
        (["UNKEYWORD", "$Forwarded"], [2, 3, 4]),
        (["FROM", "andr\u00e9"], [1]),  # encoded word decoded
        (["FROM", "EXAMPLE.NET"], [2]),
        (["TO", "andre@"], [2]),
        (["CC", "carol"], [2]),
        (["BCC", "secret"], [3]),
        (["SUBJECT", "r\u00e9sum\u00e9"], [2]),
        (["SUBJECT", "LUNCH"], [1]),
        (["HEADER", "List-Id", "team"], [1]),
        (["HEADER", "list-id", ""], [1]),
        (["HEADER", "Subject", ""], [1, 2, 3, 4]),
        (["BODY", "NOON"], [1]),
        (["BODY", "r\u00e9sum\u00e9, softwrapped"], [2]),  # QP decoded
        (["BODY", "Lunch"], []),  # not in any body
        (["TEXT", "lunch"], [1]),  # header
        (["TEXT", "noon"], [1]),  # body
        (["LARGER", "5000"], [3]),
        (["SMALLER", "100"], [4]),
        (["BEFORE", "11-Mar-2024"], [1]),
        (["ON", "11-Mar-2024"], [2]),
        (["SINCE", "12-Mar-2024"], [3, 4]),
        # Sent dates: the day as written, whatever the zone.
        (["SENTON", "9-Mar-2024"], [1]),
        (["SENTBEFORE", "10-Mar-2024"], [1]),
        (["SENTSINCE", "10-Mar-2024"], [2]),
        (["NOT", "SENTSINCE", "10-Mar-2024"], [1, 3, 4]),
        (["1:2"], [1, 2]),
        (["*"], [4]),
        (["3:*"], [3, 4]),
        (["9:3"], [3, 4]),  # RFC 3501 §9: 9:3 is 3:9
        (["2,4"], [2, 4]),
        (["UID", "20:30"], [2, 3]),
        (["UID", "*"], [4]),
        (["UID", "25:35"], [3]),
        (["UID", "100:*"], [4]),  # n:* includes the last message
        (["UID", "41:50"], []),
        (["OR", "SEEN", "FLAGGED"], [1, 3]),
        (["OR", "1", "UID", "40"], [1, 4]),
        (["NOT", "1:2"], [3, 4]),
        (["SEEN", "NOT", "DELETED"], [1]),
        ([["SEEN", "DELETED"]], [3]),
        (["OR", ["SEEN", "DELETED"], "NEW"], [2, 3]),
        (["2:*", "UID", "1:30", "SUBJECT", "date"], [3]),
    ]

    def test_table(self) -> None:
        for tokens, expected in self.table:
            self.assertEqual(run(tokens), expected, tokens)

    def test_emptyMailbox(self) -> None:
        self.assertEqual(search(parseSearch(["*"]), [], lambda seq: MAILBOX[0]), [])
        self.assertEqual(search(parseSearch(["ALL"]), [], lambda seq: MAILBOX[0]), [])

    def test_flagsNeverReadTheFile(self) -> None:
        """Flag, date, size and set keys do not load the message."""
        loads = Loads()
        message = makeMessage(1, 1, ("\\Seen",), "Subject: x\r\n", "y", loads=loads)
        for tokens in (["SEEN"], ["UID", "1"], ["SINCE", "1-Jan-2000"], ["LARGER", "1"], ["NOT", "1"]):
            matches(parseSearch(tokens), message, CONTEXT)
        self.assertEqual(loads.count, 0)
        matches(parseSearch(["SUBJECT", "x", "BODY", "y"]), message, CONTEXT)
        self.assertEqual(loads.count, 2)  # the header once, the body once

    def test_cheapKeysFirst(self) -> None:
        """A failing flag key before a body key spares the read."""
        loads = Loads()
        message = makeMessage(1, 1, (), "Subject: x\r\n", "y", loads=loads)
        self.assertFalse(matches(parseSearch(["BODY", "y", "SEEN"]), message, CONTEXT))
        self.assertEqual(loads.count, 0)

    def test_needs(self) -> None:
        table = [
            (["SEEN", "UID", "1:*", "SINCE", "1-Jan-2000", "LARGER", "5"], False, False, 0),
            (["FROM", "x"], True, False, 1),
            (["SENTON", "1-Jan-2000"], True, False, 1),
            (["NOT", "OR", "SEEN", "BODY", "x"], False, True, 2),
            (["TEXT", "x"], True, True, 2),
        ]
        for tokens, headers, body, expectedCost in table:
            node = parseSearch(tokens)
            self.assertEqual((needsHeaders(node), needsBody(node), cost(node)), (headers, body, expectedCost), tokens)


class CandidateTests(SynchronousTestCase):
    """
    L{candidates} narrows a search to the messages its sets allow: the
    regression for Twisted's O(n**2) SEARCH, which looked at every message
    even for C{SEARCH 1:10}.
    """

    uids = list(range(1, 200001, 2))  # 100,000 messages, UIDs 1, 3, 5...

    table = [
        (["ALL"], [(1, 100000)]),
        (["1:10"], [(1, 10)]),
        (["1:10", "FROM", "x"], [(1, 10)]),
        (["5:*"], [(5, 100000)]),
        (["*"], [(100000, 100000)]),
        (["1,3,5:7,6:9"], [(1, 1), (3, 3), (5, 9)]),
        (["1:100", "50:500"], [(50, 100)]),
        (["UID", "1:19"], [(1, 10)]),
        (["UID", "2"], []),
        (["UID", "199990:*"], [(99996, 100000)]),
        (["OR", "1:2", "UID", "199999"], [(1, 2), (100000, 100000)]),
        (["OR", "1:2", "SEEN"], [(1, 100000)]),
        (["NOT", "1:2"], [(1, 100000)]),
        ([["1:5", "SEEN"], "3:8"], [(3, 5)]),
        (["200000:300000"], []),
    ]

    def test_table(self) -> None:
        for tokens, expected in self.table:
            self.assertEqual(candidates(parseSearch(tokens), self.uids), expected, tokens)

    def test_searchLooksAtTenMessages(self) -> None:
        """SEARCH 1:10 SUBJECT x on 100,000 messages makes ten views."""
        made = []

        def view(seq: int) -> LazyMessage:
            made.append(seq)
            return makeMessage(seq, self.uids[seq - 1], (), "Subject: x\r\n")

        found = search(parseSearch(["1:10", "SUBJECT", "x"]), self.uids, view)
        self.assertEqual(found, list(range(1, 11)))
        self.assertEqual(made, list(range(1, 11)))

    def test_within(self) -> None:
        """
        C{within} limits the messages looked at to those sequence numbers,
        inside the candidates of the sets.
        """
        made = []

        def view(seq: int) -> LazyMessage:
            made.append(seq)
            return makeMessage(seq, self.uids[seq - 1], (), "Subject: x\r\n")

        found = search(parseSearch(["5:20", "SUBJECT", "x"]), self.uids, view, within=[1, 6, 7, 30, 99999])
        self.assertEqual(found, [6, 7])
        self.assertEqual(made, [6, 7])
        self.assertEqual(search(parseSearch(["SUBJECT", "x"]), self.uids, view, within=[]), [])


class RequiredHeadersTests(SynchronousTestCase):
    def test_table(self) -> None:
        """
        L{requiredHeaders} gives the header keys every match must satisfy:
        the key itself, or those of a top-level AND; none under OR or NOT.
        """
        table = [
            (["SUBJECT", "x"], [("subject", "x")]),
            (["SUBJECT", "x", "FROM", "y", "SEEN"], [("subject", "x"), ("from", "y")]),
            ([["SUBJECT", "x", ["TO", "z"]], "1:5"], [("subject", "x"), ("to", "z")]),
            (["HEADER", "X-Spam", "yes"], [("x-spam", "yes")]),
            (["OR", "SUBJECT", "x", "FROM", "y"], []),
            (["NOT", "SUBJECT", "x"], []),
            (["BODY", "x"], []),
            (["ALL"], []),
        ]
        for tokens, expected in table:
            self.assertEqual([(k.name, k.value) for k in requiredHeaders(parseSearch(tokens))], expected, tokens)
