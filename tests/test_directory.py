"""
Tests for L{mailhub.directory}: who is local, aliases, subaddresses.
"""

from __future__ import annotations

import os
from typing import Mapping

from twisted.trial.unittest import SynchronousTestCase

from mailhub.address import Address, parsePath
from mailhub.directory import (
    MAX_ALIAS_DEPTH,
    Directory,
    Mailbox,
    MaildirMailboxes,
    Resolution,
)
from mailhub.errors import DeliveryError, MailhubError

#: The local mailboxes of every test: DATA/mail/DOMAIN/LOCAL/.
MAILBOXES = (
    ("example.com", "alice"),
    ("example.com", "bob"),
    ("example.com", "carol"),
    ("example.org", "dave"),
)


class DirectoryTestCase(SynchronousTestCase):
    """
    A data directory with the L{MAILBOXES}, and a L{Directory} over it.
    """

    def setUp(self) -> None:
        self.data = self.mktemp()
        for domain, local in MAILBOXES:
            os.makedirs(os.path.join(self.data, "mail", domain, local))
        self.mailboxes = MaildirMailboxes(self.data)

    def directory(
        self,
        aliases: Mapping[str, tuple[str, ...]] | None = None,
        delimiter: str = "+",
    ) -> Directory:
        return Directory(("example.com", "example.org"), aliases or {}, delimiter, self.mailboxes)

    def mailbox(self, local: str, domain: str = "example.com") -> Mailbox:
        return Mailbox(f"{local}@{domain}", os.path.join(self.data, "mail", domain, local))

    def resolve(
        self, path: str, directory: Directory | None = None, mayRelay: bool = False
    ) -> Resolution:
        return (directory or self.directory()).resolve(parsePath(path), mayRelay=mayRelay)

    def assertDelivers(self, path: str, directory: Directory | None, *locals: str) -> None:
        """
        C{path} resolves to the mailboxes C{locals} of example.com, in order.
        """
        expected = Resolution(tuple(self.mailbox(local) for local in locals))
        self.assertEqual(self.resolve(path, directory), expected, path)

    def assertRefused(
        self,
        path: str,
        code: int,
        enhanced: str,
        directory: Directory | None = None,
        mayRelay: bool = False,
    ) -> DeliveryError:
        error = self.assertRaises(DeliveryError, self.resolve, path, directory, mayRelay)
        self.assertEqual(
            (error.permanent, error.code, error.enhanced), (True, code, enhanced), path
        )
        self.assertIsInstance(error, MailhubError)
        return error

    def assertUnknown(self, path: str, directory: Directory | None = None) -> None:
        self.assertRefused(path, 550, "5.1.1", directory)


class ResolveTests(DirectoryTestCase):
    """
    Local mailboxes, unknown users, remote domains.
    """

    def test_localMailbox(self) -> None:
        """
        A local user resolves to its Maildir under DATA/mail/DOMAIN/LOCAL.
        """
        self.assertEqual(self.resolve("<alice@example.com>"), Resolution((self.mailbox("alice"),)))
        self.assertEqual(
            self.resolve("<dave@example.org>"), Resolution((self.mailbox("dave", "example.org"),))
        )

    def test_mailboxIsPerDomain(self) -> None:
        """
        A user of one local domain is unknown in another.
        """
        self.assertUnknown("<dave@example.com>")

    def test_unknownUser(self) -> None:
        """An unknown local user is refused with 550 5.1.1, with no path in the text."""
        error = self.assertRefused("<nobody@example.com>", 550, "5.1.1")
        self.assertNotIn(self.data, str(error))

    def test_remoteWithoutRelay(self) -> None:
        """A remote recipient is refused with 550 5.7.1 when the client may not relay."""
        self.assertRefused("<someone@remote.example>", 550, "5.7.1")

    def test_remoteWithRelay(self) -> None:
        """A remote recipient resolves as remote, local part untouched, if the client may relay."""
        self.assertEqual(
            self.resolve("<Some.One@Remote.Example>", mayRelay=True),
            Resolution(remote=("Some.One@remote.example",)),
        )

    def test_domainLiteralIsRemote(self) -> None:
        """
        A domain literal is not a local domain.
        """
        self.assertRefused("<u@[192.0.2.1]>", 550, "5.7.1")

    def test_uppercaseNormalised(self) -> None:
        """Local part and domain resolve case-insensitively to the lower-case mailbox."""
        for path in ("<ALICE@EXAMPLE.COM>", "<Alice@Example.Com>", "<aLiCe+TaG@example.COM>"):
            self.assertEqual(self.resolve(path), Resolution((self.mailbox("alice"),)), path)

    def test_quotedLocalPartNeverLocal(self) -> None:
        """
        A quoted local part is unknown even when its content names a user.
        """
        self.assertUnknown('<"alice"@example.com>')

    def test_isLocal(self) -> None:
        """
        isLocal knows the local domains in any case.
        """
        directory = self.directory()
        self.assertTrue(directory.isLocal("EXAMPLE.org"))
        self.assertFalse(directory.isLocal("example.net"))


class PostmasterTests(DirectoryTestCase):
    """
    RFC 5321 §4.5.1: postmaster exists at every local domain.
    """

    def test_postmasterAlwaysExists(self) -> None:
        """postmaster@ every local domain resolves in any case, without a directory."""
        for path, domain in (
            ("<postmaster@example.com>", "example.com"),
            ("<PostMaster@EXAMPLE.ORG>", "example.org"),
        ):
            self.assertEqual(
                self.resolve(path), Resolution((self.mailbox("postmaster", domain),)), path
            )

    def test_barePostmaster(self) -> None:
        """
        <postmaster> with no domain is postmaster of the primary domain.
        """
        for path in ("<postmaster>", "<POSTMASTER>"):
            self.assertEqual(self.resolve(path), Resolution((self.mailbox("postmaster"),)), path)

    def test_postmasterAlias(self) -> None:
        """
        An alias for postmaster sends it elsewhere, bare or qualified.
        """
        directory = self.directory({"postmaster@example.com": ("alice@example.com",)})
        for path in ("<postmaster>", "<postmaster@example.com>"):
            self.assertEqual(
                self.resolve(path, directory), Resolution((self.mailbox("alice"),)), path
            )

    def test_postmasterSubaddress(self) -> None:
        """
        postmaster+tag reaches postmaster.
        """
        self.assertEqual(
            self.resolve("<postmaster+abuse@example.com>"),
            Resolution((self.mailbox("postmaster"),)),
        )


class AliasTests(DirectoryTestCase):
    """
    Aliases: chains, lists, loops, remote targets.
    """

    def test_alias(self) -> None:
        """
        An alias delivers to its target's mailbox.
        """
        directory = self.directory({"info@example.com": ("bob@example.com",)})
        self.assertDelivers("<Info@example.com>", directory, "bob")

    def test_chain(self) -> None:
        """
        An alias of an alias of an alias reaches the mailbox at the end.
        """
        directory = self.directory(
            {
                "a@example.com": ("b@example.org",),
                "b@example.org": ("c@example.com",),
                "c@example.com": ("carol@example.com",),
            }
        )
        self.assertDelivers("<a@example.com>", directory, "carol")

    def test_list(self) -> None:
        """A list reaches every member once, in order, despite repeats through other aliases."""
        directory = self.directory(
            {
                "team@example.com": ("alice@example.com", "bob@example.com", "leads@example.com"),
                "leads@example.com": ("alice@example.com", "carol@example.com"),
            }
        )
        self.assertEqual(
            self.resolve("<team@example.com>", directory),
            Resolution((self.mailbox("alice"), self.mailbox("bob"), self.mailbox("carol"))),
        )

    def test_loopTerminates(self) -> None:
        """
        An alias loop that also reaches a mailbox ends, with that mailbox.
        """
        directory = self.directory(
            {
                "a@example.com": ("b@example.com",),
                "b@example.com": ("a@example.com", "alice@example.com"),
            }
        )
        self.assertDelivers("<a@example.com>", directory, "alice")
        self.assertDelivers("<b@example.com>", directory, "alice")

    def test_selfLoopTerminates(self) -> None:
        """
        An alias that names itself among its targets ends.
        """
        directory = self.directory({"a@example.com": ("a@example.com", "bob@example.com")})
        self.assertDelivers("<a@example.com>", directory, "bob")

    def test_pureLoopRefused(self) -> None:
        """An alias loop reaching no mailbox is refused with 550 5.4.6, not accepted."""
        directory = self.directory(
            {"a@example.com": ("b@example.com",), "b@example.com": ("a@example.com",)}
        )
        self.assertRefused("<a@example.com>", 550, "5.4.6", directory)
        self.assertRefused("<b+tag@example.com>", 550, "5.4.6", directory)

    def chain(self, length: int) -> Directory:
        """
        C{length} aliases a0 -> a1 -> ... -> alice.
        """
        aliases = {f"a{i}@example.com": (f"a{i + 1}@example.com",) for i in range(length - 1)}
        aliases[f"a{length - 1}@example.com"] = ("alice@example.com",)
        return self.directory(aliases)

    def test_chainAtMaxDepth(self) -> None:
        """
        A chain of MAX_ALIAS_DEPTH aliases still reaches its mailbox.
        """
        self.assertEqual(
            self.resolve("<a0@example.com>", self.chain(MAX_ALIAS_DEPTH)),
            Resolution((self.mailbox("alice"),)),
        )

    def test_tooDeepChainRefused(self) -> None:
        """A chain one alias past MAX_ALIAS_DEPTH is refused with 550 5.4.6."""
        self.assertRefused("<a0@example.com>", 550, "5.4.6", self.chain(MAX_ALIAS_DEPTH + 1))

    def test_remoteTarget(self) -> None:
        """An alias to a remote address gives remote, beside local targets, even without relay."""
        directory = self.directory(
            {"fwd@example.com": ("friend@remote.example", "bob@example.com")}
        )
        self.assertEqual(
            self.resolve("<fwd@example.com>", directory),
            Resolution((self.mailbox("bob"),), ("friend@remote.example",)),
        )

    def test_unknownTargetsOnly(self) -> None:
        """
        An alias whose targets are all unknown local users is unknown.
        """
        directory = self.directory({"x@example.com": ("ghost@example.com",)})
        self.assertUnknown("<x@example.com>", directory)

    def test_someUnknownTargets(self) -> None:
        """
        An alias delivers to its known targets and skips unknown ones.
        """
        directory = self.directory({"x@example.com": ("ghost@example.com", "bob@example.com")})
        self.assertDelivers("<x@example.com>", directory, "bob")

    def test_aliasShadowsMailbox(self) -> None:
        """
        An alias named like a mailbox wins over the mailbox.
        """
        directory = self.directory({"alice@example.com": ("bob@example.com",)})
        self.assertDelivers("<alice@example.com>", directory, "bob")


class SubaddressTests(DirectoryTestCase):
    """
    RFC 5233 subaddresses: user+tag@ delivers to user@.
    """

    def test_subaddress(self) -> None:
        """
        user+tag and user+tag+more reach user.
        """
        for path in ("<alice+lists@example.com>", "<alice+a+b@example.com>"):
            self.assertEqual(self.resolve(path), Resolution((self.mailbox("alice"),)), path)

    def test_otherDelimiter(self) -> None:
        """
        The delimiter is configurable.
        """
        directory = self.directory(delimiter="-")
        self.assertDelivers("<alice-lists@example.com>", directory, "alice")
        self.assertUnknown("<alice+lists@example.com>", directory)

    def test_emptyDelimiterDisables(self) -> None:
        """
        With the delimiter "", user+tag is just an unknown user.
        """
        self.assertUnknown("<alice+lists@example.com>", self.directory(delimiter=""))

    def test_delimiterAtEdges(self) -> None:
        """
        An empty tag ("alice+") delivers to the base user, as in Postfix and
        Dovecot; an empty base ("+alice") is unknown.
        """
        self.assertDelivers("<alice+@example.com>", self.directory(), "alice")
        self.assertUnknown("<+alice@example.com>")

    def test_fullAddressAliasFirst(self) -> None:
        """An alias for the full user+tag address wins over the base user's mailbox."""
        directory = self.directory({"alice+sales@example.com": ("bob@example.com",)})
        self.assertDelivers("<alice+sales@example.com>", directory, "bob")
        self.assertDelivers("<alice+other@example.com>", directory, "alice")

    def test_baseAlias(self) -> None:
        """
        A subaddress of an alias follows the alias.
        """
        directory = self.directory({"sales@example.com": ("carol@example.com",)})
        self.assertDelivers("<sales+q3@example.com>", directory, "carol")


class PathTraversalTests(DirectoryTestCase):
    """
    Regression tests for path traversal: no recipient resolves to a path
    other than DATA/mail/DOMAIN/LOCAL/ of a plain local part.
    """

    def setUp(self) -> None:
        super().setUp()
        domain = os.path.join(self.data, "mail", "example.com")
        # Directories an attacker would like to reach.
        os.makedirs(os.path.join(domain, "alice", "tmp"), exist_ok=True)
        os.makedirs(os.path.join(domain, ".hidden"))
        os.makedirs(os.path.join(self.data, "mail", "secret"))

    def test_pathTraversalSlash(self) -> None:
        """Path traversal: a local part with "/" never resolves, even to an existing directory."""
        for path in (
            "<alice/tmp@example.com>",
            "<alice/tmp+x@example.com>",
            "<x+alice/tmp@example.com>",
        ):
            self.assertUnknown(path)

    def test_pathTraversalDotDot(self) -> None:
        """Path traversal: local parts ".." or starting with "." never resolve."""
        directory = self.directory()
        for local in ("..", "../secret", ".hidden", "./alice", "..+x"):
            self.assertRaises(
                DeliveryError, directory.resolve, Address(local, "example.com"), False
            )

    def test_pathTraversalMailboxes(self) -> None:
        """Path traversal: MaildirMailboxes.exists refuses "/", NUL and a leading "."."""
        for local in ("alice/tmp", "../secret", ".hidden", "..", "alice\0"):
            self.assertFalse(self.mailboxes.exists(local, "example.com"), repr(local))
        self.assertTrue(self.mailboxes.exists("alice", "example.com"))

    def test_pathTraversalEmptyBase(self) -> None:
        """Path traversal: "+a+b" (empty base) never resolves to the domain directory."""
        for path, delimiter in (("<+a+b@example.com>", "+"), ("<-a-b@example.com>", "-")):
            self.assertUnknown(path, self.directory(delimiter=delimiter))


    def test_pathTraversalEmptyLocal(self) -> None:
        """Path traversal: exists('') is false, though its path is the domain directory."""
        self.assertFalse(self.mailboxes.exists("", "example.com"))



class MaildirMailboxesTests(SynchronousTestCase):
    """
    L{MaildirMailboxes}: a mailbox exists when its directory does.
    """

    def test_layout(self) -> None:
        """A mailbox is the directory DATA/mail/DOMAIN/LOCAL, existing once it does."""
        data = self.mktemp()
        mailboxes = MaildirMailboxes(data)
        self.assertEqual(
            mailboxes.maildir("u", "example.com"),
            os.path.join(data, "mail", "example.com", "u"),
        )
        self.assertFalse(mailboxes.exists("u", "example.com"))
        os.makedirs(mailboxes.maildir("u", "example.com"))
        self.assertTrue(mailboxes.exists("u", "example.com"))

    def test_fileIsNoMailbox(self) -> None:
        """
        A plain file where a mailbox would be is not a mailbox.
        """
        data = self.mktemp()
        mailboxes = MaildirMailboxes(data)
        os.makedirs(os.path.join(data, "mail", "example.com"))
        open(mailboxes.maildir("u", "example.com"), "wb").close()
        self.assertFalse(mailboxes.exists("u", "example.com"))
