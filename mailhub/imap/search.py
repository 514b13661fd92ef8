# -*- test-case-name: tests.imap.test_search -*-
"""
IMAP SEARCH (RFC 3501 §6.4.4): parsing the search keys into a tree of
nodes, telling the caller what each tree needs loaded, narrowing the
messages to look at from sequence and UID sets, and matching.

Token format accepted by L{parseSearch}: a list whose items are C{str} or
C{bytes} (an atom, a quoted string with its quotes and escapes already
removed, or a literal's octets -- the tokeniser need not say which) or a
nested C{list} of the same for a parenthesised group.  Keys are
case-insensitive.  A leading C{CHARSET name} is accepted for
L{SUPPORTED_CHARSETS}; string arguments given as C{bytes} are decoded with
it (UTF-8 when none is given, US-ASCII being a subset).

Matching rules:
  - Strings match as case-insensitive substrings (C{str.casefold}), after
    RFC 2047 decoding of header values and transfer-encoding and charset
    decoding of C{text/*} body parts (L{mailhub.imap.message.bodyText});
    non-text parts are not searched.
  - C{BEFORE}/C{ON}/C{SINCE} compare the calendar day of the internal
    date, in the zone of the C{datetime} the caller gives; C{SENT*}
    compare the day written in the C{Date:} field, disregarding time and
    zone (RFC 3501 §6.4.4).  A message without a usable C{Date:} matches
    no C{SENT*} key.
  - C{KEYWORD} and flag keys compare flag names case-insensitively.
  - C{MODSEQ} (RFC 7162 §3.1.5) matches a mod-sequence at least the value
    given; the optional entry name and type are checked and ignored (a
    message has one mod-sequence, not one per flag).
"""

from __future__ import annotations

import bisect
import datetime
import email.utils
import re
from typing import Callable, List, Optional, Protocol, Sequence, Tuple, Union

from attrs import define, field, frozen

from mailhub.errors import MailhubError
from mailhub.imap.message import bodyText, decodeHeader, headerText, headerValues, splitHeader

#: Charsets accepted after C{CHARSET} (RFC 3501 §6.4.4 requires these two).
SUPPORTED_CHARSETS = ("US-ASCII", "UTF-8")

#: Deepest nesting of parentheses, NOT and OR accepted.
MAX_DEPTH = 64

#: The largest RFC 3501 number (32 bits).
MAX_NUMBER = 2**32 - 1

#: The largest mod-sequence (RFC 7162 §7: 63 bits).
MAX_MODSEQ = 2**63 - 1

#: RFC 7162 §3.1.5 entry-type-req.
_ENTRY_TYPES = ("priv", "shared", "all")

Token = Union[str, bytes, list]


class SearchError(MailhubError):
    """
    The search keys are malformed (the protocol answers C{BAD}) or name an
    unsupported charset (C{code} is C{"BADCHARSET"}: the protocol answers
    C{NO [BADCHARSET (...)]}).

    @ivar reason: what is wrong, for the client.
    @ivar code: a response code, or C{None}.
    """

    def __init__(self, reason: str, code: Optional[str] = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.code = code


class MessageView(Protocol):
    """
    What SEARCH needs to know of one message.  Flags, UID, sequence number,
    size and internal date come from the index; header values and text are
    only asked for when L{needsHeaders} or L{needsBody} say so.

    @ivar seq: the message sequence number.
    @ivar uid: the UID.
    @ivar flags: system flags (C{"\\\\Seen"}, C{"\\\\Recent"}...) and keywords
        together, as a FETCH FLAGS response lists them.
    @ivar internalDate: the internal date, in the zone whose days count.
    @ivar size: the RFC822.SIZE.
    @ivar modseq: the mod-sequence (RFC 7162; only asked for by C{MODSEQ}).
    """

    seq: int
    uid: int
    flags: frozenset
    internalDate: datetime.datetime
    size: int
    modseq: int

    def headerValues(self, name: str) -> Sequence[bytes]:
        """
        The raw, unfolded values of a header field, in order.
        """

    def headerText(self) -> str:
        """
        The whole header block, decoded (L{mailhub.imap.message.headerText}).
        """

    def bodyText(self) -> str:
        """
        The decoded text of the body (L{mailhub.imap.message.bodyText}).
        """


@define
class LazyMessage:
    """
    A L{MessageView} that reads the message only when a header or body key
    asks, and then once.

    @ivar load: returns the whole message.
    @ivar loadHeader: returns the header block only (a cheaper read);
        defaults to splitting what C{load} returns.
    @ivar modseq: the mod-sequence, C{0} if none.
    """

    seq: int
    uid: int
    flags: frozenset
    internalDate: datetime.datetime
    size: int
    load: Callable[[], bytes]
    loadHeader: Optional[Callable[[], bytes]] = None
    modseq: int = 0
    _header: Optional[bytes] = field(default=None, init=False)
    _body: Optional[str] = field(default=None, init=False)

    def _headerBlock(self) -> bytes:
        if self._header is None:
            self._header = self.loadHeader() if self.loadHeader else splitHeader(self.load())[0]
        return self._header

    def headerValues(self, name: str) -> Sequence[bytes]:
        return headerValues(self._headerBlock(), name)

    def headerText(self) -> str:
        return headerText(self._headerBlock())

    def bodyText(self) -> str:
        if self._body is None:
            self._body = bodyText(self.load())
        return self._body


# -- nodes --------------------------------------------------------------------------------


@frozen
class Context:
    """
    The mailbox a search runs in: what C{*} means.

    @ivar lastSeq: the number of messages.
    @ivar lastUid: the highest UID in use (0 if the mailbox is empty).
    """

    lastSeq: int
    lastUid: int


class Node:
    """
    A search key.  Subclasses are frozen attrs classes.
    """

    def matches(self, message: MessageView, context: Context) -> bool:
        raise NotImplementedError()

    def children(self) -> Sequence["Node"]:
        return ()


@frozen
class All(Node):
    """ALL."""

    def matches(self, message: MessageView, context: Context) -> bool:
        return True


@frozen
class HasFlag(Node):
    """
    A system flag or keyword set (C{present}) or not set.
    """

    flag: str
    present: bool = True

    def matches(self, message: MessageView, context: Context) -> bool:
        wanted = self.flag.casefold()
        return any(f.casefold() == wanted for f in message.flags) == self.present


@frozen
class HeaderContains(Node):
    """
    A header field contains a string; with an empty string, the field is
    present (RFC 3501 §6.4.4, HEADER).
    """

    name: str
    value: str

    def matches(self, message: MessageView, context: Context) -> bool:
        values = message.headerValues(self.name)
        if not self.value:
            return bool(values)
        wanted = self.value.casefold()
        return any(wanted in decodeHeader(v).casefold() for v in values)


@frozen
class BodyContains(Node):
    """BODY string."""

    value: str

    def matches(self, message: MessageView, context: Context) -> bool:
        return self.value.casefold() in message.bodyText().casefold()


@frozen
class TextContains(Node):
    """TEXT string: in the header or the body."""

    value: str

    def matches(self, message: MessageView, context: Context) -> bool:
        wanted = self.value.casefold()
        return wanted in message.headerText().casefold() or wanted in message.bodyText().casefold()


@frozen
class DateCompare(Node):
    """
    BEFORE, ON, SINCE (internal date) and SENTBEFORE, SENTON, SENTSINCE
    (the Date: field), by calendar day.

    @ivar sent: C{True} for the SENT* keys.
    @ivar op: C{"before"}, C{"on"} or C{"since"}.
    """

    sent: bool
    op: str
    day: datetime.date

    def matches(self, message: MessageView, context: Context) -> bool:
        if self.sent:
            day = _sentDay(message)
            if day is None:
                return False
        else:
            day = message.internalDate.date()
        if self.op == "before":
            return day < self.day
        if self.op == "on":
            return day == self.day
        return day >= self.day


def _sentDay(message: MessageView) -> Optional[datetime.date]:
    values = message.headerValues("date")
    if not values:
        return None
    try:
        parsed = email.utils.parsedate_tz(values[0].decode("latin-1"))
        return datetime.date(*parsed[:3]) if parsed else None
    except (ValueError, TypeError, OverflowError, IndexError):
        return None


@frozen
class SizeCompare(Node):
    """LARGER n (C{larger}) or SMALLER n."""

    larger: bool
    size: int

    def matches(self, message: MessageView, context: Context) -> bool:
        return message.size > self.size if self.larger else message.size < self.size


@frozen
class ModSeqAtLeast(Node):
    """
    MODSEQ n (RFC 7162 §3.1.5): the message's mod-sequence is C{n} or
    more.
    """

    modseq: int

    def matches(self, message: MessageView, context: Context) -> bool:
        return message.modseq >= self.modseq


@frozen
class SequenceSet(Node):
    """
    A sequence set of message numbers, or of UIDs (C{UID set}).

    @ivar ranges: C{(first, last)} pairs, C{None} standing for C{*}; in
        either order (RFC 3501 §9: C{7:2} is C{2:7}).
    """

    ranges: Tuple[Tuple[Optional[int], Optional[int]], ...]
    uid: bool = False

    def bounds(self, context: Context) -> List[Tuple[int, int]]:
        """
        The ranges with C{*} resolved, low end first.
        """
        last = context.lastUid if self.uid else context.lastSeq
        out = []
        for first, end in self.ranges:
            a = last if first is None else first
            b = last if end is None else end
            out.append((min(a, b), max(a, b)))
        return out

    def matches(self, message: MessageView, context: Context) -> bool:
        number = message.uid if self.uid else message.seq
        return any(low <= number <= high for low, high in self.bounds(context))


@frozen
class Not(Node):
    """NOT key."""

    node: Node

    def matches(self, message: MessageView, context: Context) -> bool:
        return not self.node.matches(message, context)

    def children(self) -> Sequence[Node]:
        return (self.node,)


@frozen
class Or(Node):
    """OR key1 key2."""

    left: Node
    right: Node

    def matches(self, message: MessageView, context: Context) -> bool:
        return self.left.matches(message, context) or self.right.matches(message, context)

    def children(self) -> Sequence[Node]:
        return (self.left, self.right)


@frozen
class And(Node):
    """
    Keys side by side, or a parenthesised list (the parser puts the cheap
    keys first, see L{cost}).
    """

    nodes: Tuple[Node, ...]

    def matches(self, message: MessageView, context: Context) -> bool:
        return all(node.matches(message, context) for node in self.nodes)

    def children(self) -> Sequence[Node]:
        return self.nodes


# -- what a tree needs ---------------------------------------------------------------------


def needsHeaders(node: Node) -> bool:
    """
    Whether matching C{node} may ask for header values or text
    (C{FROM}, C{HEADER}, C{SENTON}, C{TEXT}...).
    """
    if isinstance(node, (HeaderContains, TextContains)) or (isinstance(node, DateCompare) and node.sent):
        return True
    return any(needsHeaders(child) for child in node.children())


def usesModSeq(node: Node) -> bool:
    """
    Whether C{node} has a C{MODSEQ} key: the SEARCH response then ends
    with the highest mod-sequence of the messages found (RFC 7162 §3.1.6),
    and the command enables CONDSTORE.
    """
    if isinstance(node, ModSeqAtLeast):
        return True
    return any(usesModSeq(child) for child in node.children())


def needsBody(node: Node) -> bool:
    """
    Whether matching C{node} may read the body (C{BODY}, C{TEXT}).
    """
    if isinstance(node, (BodyContains, TextContains)):
        return True
    return any(needsBody(child) for child in node.children())


def cost(node: Node) -> int:
    """
    A rough cost of matching C{node} on one message: 0 for index data only
    (flags, UID, dates, sizes), 1 if the header is read, 2 if the body is.
    """
    return 2 if needsBody(node) else 1 if needsHeaders(node) else 0


# -- narrowing: the O(n**2) trap --------------------------------------------------------------

Intervals = List[Tuple[int, int]]


def _merge(intervals: Intervals) -> Intervals:
    out: Intervals = []
    for low, high in sorted(intervals):
        if out and low <= out[-1][1] + 1:
            out[-1] = (out[-1][0], max(out[-1][1], high))
        else:
            out.append((low, high))
    return out


def _intersect(a: Intervals, b: Intervals) -> Intervals:
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        low, high = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if low <= high:
            out.append((low, high))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return out


def _constraint(node: Node, uids: Sequence[int]) -> Optional[Intervals]:
    """
    Sequence-number intervals outside which C{node} cannot match, or
    C{None} if it could match anywhere.
    """
    context = Context(len(uids), uids[-1] if uids else 0)
    if isinstance(node, SequenceSet):
        out = []
        for low, high in node.bounds(context):
            if node.uid:
                low, high = bisect.bisect_left(uids, low) + 1, bisect.bisect_right(uids, high)
            else:
                low, high = max(low, 1), min(high, context.lastSeq)
            if low <= high:
                out.append((low, high))
        return _merge(out)
    if isinstance(node, And):
        result = None
        for child in node.nodes:
            narrowed = _constraint(child, uids)
            if narrowed is not None:
                result = narrowed if result is None else _intersect(result, narrowed)
        return result
    if isinstance(node, Or):
        left, right = _constraint(node.left, uids), _constraint(node.right, uids)
        return None if left is None or right is None else _merge(left + right)
    return None


def candidates(node: Node, uids: Sequence[int]) -> Intervals:
    """
    The message sequence numbers worth matching: C{SEARCH 1:10} or
    C{UID SEARCH 4000:4010 FROM x} look at those messages only, found by
    bisection in the UID list, instead of at the whole mailbox.

    @param uids: the mailbox's UIDs in ascending order (sequence number
        C{n} has C{uids[n - 1]}).
    @return: inclusive C{(first, last)} sequence-number intervals, sorted
        and disjoint.
    """
    narrowed = _constraint(node, uids)
    if narrowed is None:
        return [(1, len(uids))] if uids else []
    return narrowed


def requiredHeaders(node: Node) -> List[HeaderContains]:
    """
    The header keys every match of C{node} must satisfy: C{node} itself,
    or those among the keys of a top-level AND (nested ANDs included).  A
    backend that can tell from its cache which messages may satisfy one
    narrows the search to those (L{search}'s C{within}).
    """
    if isinstance(node, HeaderContains):
        return [node]
    if isinstance(node, And):
        return [key for child in node.nodes for key in requiredHeaders(child)]
    return []


def search(
    node: Node,
    uids: Sequence[int],
    view: Callable[[int], MessageView],
    within: Optional[Sequence[int]] = None,
) -> List[int]:
    """
    Run a search over a mailbox.

    @param uids: the mailbox's UIDs in ascending order.
    @param view: makes the L{MessageView} of a sequence number.
    @param within: if given, the only sequence numbers (ascending) that
        may match: the others are not looked at.
    @return: the matching sequence numbers, ascending.
    """
    context = Context(len(uids), uids[-1] if uids else 0)
    found = []
    for low, high in candidates(node, uids):
        if within is None:
            numbers: Sequence[int] = range(low, high + 1)
        else:
            numbers = within[bisect.bisect_left(within, low) : bisect.bisect_right(within, high)]
        for seq in numbers:
            if node.matches(view(seq), context):
                found.append(seq)
    return found


def matches(node: Node, message: MessageView, context: Context) -> bool:
    """
    Whether one message matches.
    """
    return node.matches(message, context)


# -- parsing -------------------------------------------------------------------------------

_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True),
    "DELETED": ("\\Deleted", True),
    "DRAFT": ("\\Draft", True),
    "FLAGGED": ("\\Flagged", True),
    "RECENT": ("\\Recent", True),
    "SEEN": ("\\Seen", True),
    "OLD": ("\\Recent", False),
    "UNANSWERED": ("\\Answered", False),
    "UNDELETED": ("\\Deleted", False),
    "UNDRAFT": ("\\Draft", False),
    "UNFLAGGED": ("\\Flagged", False),
    "UNSEEN": ("\\Seen", False),
}
_HEADER_KEYS = {"BCC": "bcc", "CC": "cc", "FROM": "from", "SUBJECT": "subject", "TO": "to"}
_DATE_KEYS = {
    "BEFORE": (False, "before"),
    "ON": (False, "on"),
    "SINCE": (False, "since"),
    "SENTBEFORE": (True, "before"),
    "SENTON": (True, "on"),
    "SENTSINCE": (True, "since"),
}
_MONTHS = {m: i + 1 for i, m in enumerate("JAN FEB MAR APR MAY JUN JUL AUG SEP OCT NOV DEC".split())}
_DATE = re.compile(r"(\d{1,2})-([A-Za-z]{3})-(\d{4})\Z")
_SEQ_NUMBER = r"(?:[1-9][0-9]{0,9}|\*)"
_SEQUENCE_SET = re.compile(rf"{_SEQ_NUMBER}(?::{_SEQ_NUMBER})?(?:,{_SEQ_NUMBER}(?::{_SEQ_NUMBER})?)*\Z")
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+\Z")
_ATOM = re.compile(r"[\x21-\x7e]+\Z")


def _sequenceNumber(text: str) -> Optional[int]:
    if text == "*":
        return None
    number = int(text)
    if number > MAX_NUMBER:
        raise SearchError(f"sequence number too large: {text}")
    return number


def parseSequenceSet(text: str, uid: bool = False) -> SequenceSet:
    """
    Parse an RFC 3501 sequence set (C{1:10}, C{5:*}, C{1,3,7:9}).

    @raise SearchError: if it is malformed.
    """
    if not _SEQUENCE_SET.match(text):
        raise SearchError(f"bad sequence set {text[:40]!r}")
    ranges = []
    for item in text.split(","):
        first, _, last = item.partition(":")
        start = _sequenceNumber(first)
        ranges.append((start, _sequenceNumber(last) if last else start))
    return SequenceSet(tuple(ranges), uid)


class _Parser:
    def __init__(self, tokens: list, charset: str, depth: int) -> None:
        self.tokens = tokens
        self.position = 0
        self.charset = charset
        self.depth = depth

    def atEnd(self) -> bool:
        return self.position >= len(self.tokens)

    def next(self, what: str) -> Token:
        if self.atEnd():
            raise SearchError(f"missing {what}")
        token = self.tokens[self.position]
        self.position += 1
        if not isinstance(token, (str, bytes, list)):
            raise SearchError(f"bad token for {what}")
        return token

    def atom(self, what: str) -> str:
        token = self.next(what)
        if isinstance(token, list):
            raise SearchError(f"expected {what}, got a parenthesised list")
        if isinstance(token, bytes):
            try:
                token = token.decode("ascii")
            except UnicodeDecodeError:
                raise SearchError(f"non-ASCII {what}") from None
        if not _ATOM.match(token):
            raise SearchError(f"bad {what} {token[:40]!r}")
        return token

    def string(self, what: str) -> str:
        token = self.next(what)
        if isinstance(token, list):
            raise SearchError(f"expected {what}, got a parenthesised list")
        if isinstance(token, bytes):
            try:
                return token.decode(self.charset)
            except UnicodeDecodeError:
                raise SearchError(f"{what} is not valid {self.charset}") from None
        return token

    def number(self, what: str) -> int:
        text = self.atom(what)
        if not text.isdigit() or not text.isascii() or len(text) > 10 or int(text) > MAX_NUMBER:
            raise SearchError(f"bad {what} {text[:40]!r}")
        return int(text)

    def modseq(self, what: str) -> int:
        """
        A mod-sequence-valzer (RFC 7162 §7: 0 to 2**63 - 1).
        """
        text = self.atom(what)
        if not text.isdigit() or not text.isascii() or len(text) > 19 or int(text) > MAX_MODSEQ:
            raise SearchError(f"bad {what} {text[:40]!r}")
        return int(text)

    def date(self, what: str) -> datetime.date:
        text = self.string(what)
        match = _DATE.match(text)
        month = _MONTHS.get(match.group(2).upper()) if match else None
        if not match or month is None:
            raise SearchError(f"bad date {text[:40]!r}")
        try:
            return datetime.date(int(match.group(3)), month, int(match.group(1)))
        except ValueError:
            raise SearchError(f"bad date {text[:40]!r}") from None

    def keys(self) -> Node:
        nodes = []
        while not self.atEnd():
            nodes.append(self.key())
        if not nodes:
            raise SearchError("no search key")
        # Cheap keys first, so that a flag or date test spares the file.
        return nodes[0] if len(nodes) == 1 else And(tuple(sorted(nodes, key=cost)))

    def nested(self, parse: Callable[[], Node]) -> Node:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise SearchError("search keys nested too deeply")
        try:
            return parse()
        finally:
            self.depth -= 1

    def key(self) -> Node:
        token = self.next("search key")
        if isinstance(token, list):
            return self.nested(lambda: _Parser(token, self.charset, self.depth).keys())
        self.position -= 1
        word = self.atom("search key")
        name = word.upper()
        if name == "ALL":
            return All()
        if name in _FLAG_KEYS:
            return HasFlag(*_FLAG_KEYS[name])
        if name == "NEW":
            return And((HasFlag("\\Recent"), HasFlag("\\Seen", False)))
        if name in ("KEYWORD", "UNKEYWORD"):
            return HasFlag(self.atom("keyword"), name == "KEYWORD")
        if name in _HEADER_KEYS:
            return HeaderContains(_HEADER_KEYS[name], self.string("string"))
        if name == "HEADER":
            fieldName = self.string("header field name")
            if not _FIELD_NAME.match(fieldName):
                raise SearchError(f"bad header field name {fieldName[:40]!r}")
            return HeaderContains(fieldName.lower(), self.string("string"))
        if name == "BODY":
            return BodyContains(self.string("string"))
        if name == "TEXT":
            return TextContains(self.string("string"))
        if name in _DATE_KEYS:
            sent, op = _DATE_KEYS[name]
            return DateCompare(sent, op, self.date("date"))
        if name in ("LARGER", "SMALLER"):
            return SizeCompare(name == "LARGER", self.number("size"))
        if name == "UID":
            return parseSequenceSet(self.atom("UID set"), uid=True)
        if name == "MODSEQ":
            # RFC 7162 §3.1.5: MODSEQ [entry-name entry-type-req] valzer.
            following = self.tokens[self.position] if not self.atEnd() else None
            if not (isinstance(following, str) and following.isdigit()):
                entry = self.string("entry name")
                if not entry.lower().startswith("/flags/") or len(entry) == len("/flags/"):
                    raise SearchError(f"bad entry name {entry[:40]!r}")
                if self.atom("entry type").lower() not in _ENTRY_TYPES:
                    raise SearchError("bad entry type")
            return ModSeqAtLeast(self.modseq("mod-sequence"))
        if name == "NOT":
            return Not(self.nested(self.key))
        if name == "OR":
            return self.nested(lambda: Or(self.key(), self.key()))
        if word[0].isdigit() or word[0] == "*":
            return parseSequenceSet(word)
        raise SearchError(f"unknown search key {word[:40]!r}")


def parseSearch(tokens: Sequence[Token]) -> Node:
    """
    Parse the arguments of SEARCH (RFC 3501 §6.4.4), C{CHARSET} included.

    @param tokens: see the module docstring for the token format.
    @return: the tree of keys (an L{And} of several, or a single node).
    @raise SearchError: if the keys are malformed or the charset is not
        supported; nothing else.
    """
    if not isinstance(tokens, (list, tuple)):
        raise SearchError("search keys must be a list")
    tokens = list(tokens)
    charset = "utf-8"
    first = tokens[0] if tokens else None
    if isinstance(first, bytes):
        first = first.decode("latin-1")
    if isinstance(first, str) and first.upper() == "CHARSET":
        parser = _Parser(tokens[1:2], "ascii", 0)
        name = parser.atom("charset name").upper()
        if name not in SUPPORTED_CHARSETS:
            raise SearchError(f"unsupported charset {name[:40]}", code="BADCHARSET")
        charset = "ascii" if name == "US-ASCII" else "utf-8"
        tokens = tokens[2:]
    return _Parser(tokens, charset, 0).keys()
