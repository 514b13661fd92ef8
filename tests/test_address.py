"""
Tests for L{mailhub.address}: envelope paths (RFC 5321 §4.1.2) as values.
"""

from __future__ import annotations

from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mailhub.address import NULL_SENDER, Address, AddressError, parseMailbox, parsePath
from mailhub.errors import MailhubError

LOCAL_64 = "l" * 64
#: 63 + 1 + 63 + 1 + 61 = 189 characters: with a 64-character local part
#: and the "@", a 254-character mailbox (RFC 5321 §4.5.3.1.3, 256 with <>).
DOMAIN_189 = "a" * 63 + "." + "b" * 63 + "." + "c" * 61

#: (what, text, allowNull, result: an Address or AddressError)
PATH_CASES: list[tuple[str, str, bool, Address | type[AddressError]]] = [
    ("plain", "<user@example.com>", False, Address("user", "example.com")),
    ("domain lower-cased, local kept", "<User.Name@Example.COM>", False,
     Address("User.Name", "example.com")),
    ("atext specials", "<a!#$%&'*+-/=?^_`{|}~b@example.com>", False,
     Address("a!#$%&'*+-/=?^_`{|}~b", "example.com")),
    ("subaddress", "<user+tag@example.com>", False, Address("user+tag", "example.com")),
    ("null path refused by default", "<>", False, AddressError),
    ("null path with allowNull", "<>", True, NULL_SENDER),
    ("allowNull still parses mailboxes", "<u@example.com>", True, Address("u", "example.com")),
    ("source route ignored", "<@a,@b:u@c>", False, Address("u", "c")),
    ("source route, dotted hosts", "<@relay.example,@hop.example:user@example.com>", False,
     Address("user", "example.com")),
    ("source route without colon", "<@a.example>", False, AddressError),
    ("source route to nothing", "<@a:>", False, AddressError),
    ("quoted local part", '<"john doe"@example.com>', False, Address('"john doe"', "example.com")),
    ("quoted local part with @", '<"a@b"@example.com>', False, Address('"a@b"', "example.com")),
    ("quoted pair", '<"a\\"b"@example.com>', False, Address('"a\\"b"', "example.com")),
    ("quoted empty", '<""@example.com>', False, Address('""', "example.com")),
    ("unterminated quote", '<"john@example.com>', False, AddressError),
    ("bare quote in quoted string", '<"a"b"@example.com>', False, AddressError),
    ("postmaster without domain", "<postmaster>", False, Address("postmaster", "")),
    ("Postmaster without domain, any case", "<PostMaster>", False, Address("PostMaster", "")),
    ("other name without domain", "<root>", False, AddressError),
    ("missing brackets", "user@example.com", False, AddressError),
    ("missing closing bracket", "<user@example.com", False, AddressError),
    ("missing opening bracket", "user@example.com>", False, AddressError),
    ("space outside brackets", "<user@example.com> ", False, AddressError),
    ("empty text", "", False, AddressError),
    ("lone bracket", "<", False, AddressError),
    ("empty local part", "<@example.com>", False, AddressError),
    ("empty domain", "<user@>", False, AddressError),
    ("leading dot", "<.user@example.com>", False, AddressError),
    ("trailing dot", "<user.@example.com>", False, AddressError),
    ("double dot", "<us..er@example.com>", False, AddressError),
    ("space in local part", "<us er@example.com>", False, AddressError),
    ("bare LF in local part", "<us\ner@example.com>", False, AddressError),
    ("CRLF before bracket", "<user@example.com\r\n>", False, AddressError),
    ("non-ASCII local part", "<usér@example.com>", False, AddressError),
    ("local part of 64", f"<{LOCAL_64}@example.com>", False, Address(LOCAL_64, "example.com")),
    ("local part of 65", f"<{LOCAL_64}x@example.com>", False, AddressError),
    ("mailbox of 254", f"<{LOCAL_64}@{DOMAIN_189}>", False, Address(LOCAL_64, DOMAIN_189)),
    ("mailbox of 255", f"<{LOCAL_64}@d{DOMAIN_189}>", False, AddressError),
    ("label of 64", f"<u@{'a' * 64}.example>", False, AddressError),
    ("domain starts with hyphen", "<u@-example.com>", False, AddressError),
    ("label ends with hyphen", "<u@example-.com>", False, AddressError),
    ("hyphen inside label", "<u@ex-ample.com>", False, Address("u", "ex-ample.com")),
    ("empty label", "<u@example..com>", False, AddressError),
    ("leading dot in domain", "<u@.example.com>", False, AddressError),
    ("trailing dot in domain", "<u@example.com.>", False, AddressError),
    ("underscore in domain", "<u@ex_ample.com>", False, AddressError),
    ("space in domain", "<u@exa mple.com>", False, AddressError),
    ("single-label domain", "<u@localhost>", False, Address("u", "localhost")),
    ("IPv4 domain literal", "<u@[192.0.2.1]>", False, Address("u", "[192.0.2.1]")),
    ("IPv6 domain literal", "<u@[IPv6:2001:db8::1]>", False, Address("u", "[ipv6:2001:db8::1]")),
    ("unclosed domain literal", "<u@[192.0.2.1>", False, AddressError),
    ("empty domain literal", "<u@[]>", False, AddressError),
    ("bracket inside literal", "<u@[1[2]>", False, AddressError),
]

#: (what, text, result) for parseMailbox on its own.
MAILBOX_CASES: list[tuple[str, str, Address | type[AddressError]]] = [
    ("plain", "user@example.com", Address("user", "example.com")),
    ("last @ splits", '"a@b"@example.com', Address('"a@b"', "example.com")),
    ("bare postmaster", "POSTMASTER", Address("POSTMASTER", "")),
    ("brackets not allowed here", "<user@example.com>", AddressError),
    ("empty", "", AddressError),
    ("too long", "u@" + "a" * 253, AddressError),
]


class ParsePathTests(SynchronousTestCase):
    """
    L{parsePath} accepts RFC 5321 paths and refuses everything else with
    L{AddressError}.
    """

    def checkTable(self, cases: list[tuple[str, Any, ...]], parse: Any) -> None:
        """
        Run every case; fail once, listing each case that went wrong.
        """
        failed = []
        for what, *arguments, expected in cases:
            try:
                result: Any = parse(*arguments)
            except AddressError:
                result = AddressError
            except Exception as e:
                result = e
            if result != expected:
                failed.append(f"{what}: {arguments!r} gave {result!r}, expected {expected!r}")
        if failed:
            self.fail(f"{len(failed)} of {len(cases)} cases failed:\n" + "\n".join(failed))

    def test_pathTable(self) -> None:
        """
        Each path of the table parses to its Address or raises AddressError.
        """
        self.checkTable(PATH_CASES, parsePath)

    def test_mailboxTable(self) -> None:
        """
        parseMailbox, without brackets, parses or refuses as in its table.
        """
        self.checkTable(MAILBOX_CASES, parseMailbox)

    def test_addressErrorIsMailhubError(self) -> None:
        """
        AddressError is a MailhubError, under the one root.
        """
        self.assertTrue(issubclass(AddressError, MailhubError))

    @settings(database=None, deadline=None, max_examples=500)
    @given(st.text(max_size=300), st.booleans())
    @example("<@>", False)
    @example("<@:>", False)
    @example("<\x00>", False)
    @example("<" + "@" * 300 + ">", True)
    def test_onlyAddressError(self, text: str, allowNull: bool) -> None:
        """On arbitrary text parsePath returns an Address or raises AddressError, nothing else."""
        try:
            result = parsePath(text, allowNull=allowNull)
        except AddressError:
            return
        self.assertIsInstance(result, Address)

    @settings(database=None, deadline=None, max_examples=500)
    @given(
        st.text(
            alphabet=st.sampled_from(list("<>@:,.\"\\[] abcXYZ019+-_/\r\n\x7f")),
            max_size=60,
        ),
        st.booleans(),
    )
    def test_onlyAddressErrorOnPunctuation(self, inner: str, allowNull: bool) -> None:
        """Brackets around grammar-heavy punctuation never raise anything but AddressError."""
        try:
            result = parsePath(f"<{inner}>", allowNull=allowNull)
        except AddressError:
            return
        self.assertIsInstance(result, Address)

    @settings(database=None, deadline=None, max_examples=300)
    @given(
        st.from_regex(r"[A-Za-z0-9+_-]{1,20}(\.[A-Za-z0-9+_-]{1,20}){0,2}", fullmatch=True),
        st.from_regex(r"[A-Za-z0-9]{1,20}(\.[A-Za-z0-9]{1,20}){0,3}", fullmatch=True),
    )
    def test_roundTrip(self, local: str, domain: str) -> None:
        """
        A valid address parses, and its text parses back to the same value.
        """
        address = parsePath(f"<{local}@{domain}>")
        self.assertEqual(address, Address(local, domain.lower()))
        self.assertEqual(parsePath(f"<{address}>"), address)


class AddressTests(SynchronousTestCase):
    """
    L{Address} values: text, lookup key, dot-atom test.
    """

    def test_str(self) -> None:
        """
        str() is local@domain, or the local part alone without a domain.
        """
        self.assertEqual(str(Address("User", "example.com")), "User@example.com")
        self.assertEqual(str(Address("postmaster", "")), "postmaster")
        self.assertEqual(str(NULL_SENDER), "")

    def test_key(self) -> None:
        """
        The lookup key is the whole address in lower case.
        """
        self.assertEqual(parsePath("<Alice.Smith@Example.COM>").key, "alice.smith@example.com")
        self.assertEqual(parsePath("<PostMaster>").key, "postmaster")

    def test_isDotAtom(self) -> None:
        """
        Only plain dot-strings are dot-atoms; quoted strings are not.
        """
        self.assertTrue(Address("a.b+c", "x").isDotAtom)
        self.assertFalse(Address('"a.b"', "x").isDotAtom)
        self.assertFalse(Address("", "").isDotAtom)

    def test_frozen(self) -> None:
        """
        Addresses are immutable values, equal by content and hashable.
        """
        address = Address("u", "example.com")
        self.assertEqual(address, Address("u", "example.com"))
        self.assertEqual(len({address, Address("u", "example.com")}), 1)
        self.assertRaises(Exception, setattr, address, "local", "v")
