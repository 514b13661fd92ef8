"""
Tests for L{mailhub.config}.
"""

from __future__ import annotations

import ipaddress
import os
from typing import Any, Callable, Sequence

from twisted.trial.unittest import SynchronousTestCase

from mailhub import config
from mailhub.config import Config, Limits, Listeners, TLSFiles
from mailhub.errors import ConfigError, MailhubError

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "etc", "mailhub.toml")


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


class ConfigErrorTestCase(SynchronousTestCase):
    """
    Assertions about L{ConfigError}s, and table-driven checks.
    """

    def assertOneLine(self, error: ConfigError, source: str, key: str | None) -> None:
        """
        C{error} names C{source} and C{key}, and C{str(error)} is one line
        C{"SOURCE: KEY: problem"}.
        """
        self.assertIsInstance(error, MailhubError)
        self.assertEqual((error.source, error.key), (source, key))
        text = str(error)
        self.assertEqual(text.splitlines(), [text])
        prefix = f"{source}: {key}: " if key else f"{source}: "
        self.assertTrue(
            text.startswith(prefix), f"{text!r} does not start with {prefix!r}"
        )
        self.assertTrue(error.problem.strip())

    def checkCases(
        self, cases: Sequence[tuple[Any, ...]], check: Callable[..., None]
    ) -> None:
        """
        Call C{check(*rest)} for each C{(what, *rest)} in C{cases}, and fail
        once at the end listing every case that failed (trial runs
        C{subTest} blocks but stops at the first failure).
        """
        failed = []
        for what, *rest in cases:
            try:
                check(*rest)
            except Exception as e:
                failed.append(f"{what}: {type(e).__name__}: {e}")
        if failed:
            self.fail(f"{len(failed)} of {len(cases)} cases failed:\n" + "\n".join(failed))


class EmbeddedTests(SynchronousTestCase):
    """
    L{config.embedded} is the configuration with no file (DESIGN.md).
    """

    def test_identity(self) -> None:
        """
        The embedded default serves C{localhost} as C{localhost}, with data
        under C{./mailhub-data}.
        """
        c = config.embedded()
        self.assertIsNone(c.source)
        self.assertEqual(c.hostname, "localhost")
        self.assertEqual(c.domains, ("localhost",))
        self.assertEqual(c.primaryDomain, "localhost")
        self.assertEqual(c.dataDir, "mailhub-data")

    def test_listeners(self) -> None:
        """
        SMTP listens on port 2525 of 127.0.0.1 only.
        """
        self.assertEqual(
            config.embedded().listeners.smtp, ("tcp:2525:interface=127.0.0.1",)
        )

    def test_addresses(self) -> None:
        """
        No aliases, C{+} subaddresses, and nobody may relay unauthenticated.
        """
        c = config.embedded()
        self.assertEqual(dict(c.aliases), {})
        self.assertEqual(c.recipientDelimiter, "+")
        self.assertEqual(c.trustedNetworks, ())

    def test_tls(self) -> None:
        """
        No certificate is configured: a self-signed one is made.
        """
        self.assertEqual(config.embedded().tls, TLSFiles(None, None))

    def test_limits(self) -> None:
        """
        The limits are the documented defaults.
        """
        limits = config.embedded().limits
        self.assertEqual(limits.messageSize, 50 * 1024 * 1024)
        self.assertEqual(limits.recipients, 100)
        self.assertEqual(limits.lineLength, 8192)
        self.assertEqual(limits.connectionsPerPeer, 20)
        self.assertEqual(
            limits.peerLimitExempt, (net("127.0.0.0/8"), net("::1/128"))
        )
        self.assertEqual(limits.idleTimeout, 300.0)
        self.assertEqual(limits.errors, 20)
        self.assertEqual(limits.connectionsPerUser, 20)

    def test_emptyFileIsEmbedded(self) -> None:
        """
        An empty file gives the embedded values, with the file as source.
        """
        path = self.mktemp()
        with open(path, "w"):
            pass
        c = config.load(path)
        self.assertEqual(c.source, path)
        from attrs import evolve

        self.assertEqual(evolve(c, source=None), config.embedded())


class ExampleTests(SynchronousTestCase):
    """
    C{etc/mailhub.toml}, the annotated example, loads and says what it says.
    """

    def setUp(self) -> None:
        self.config = config.load(EXAMPLE)
        self.etc = os.path.dirname(os.path.abspath(EXAMPLE))

    def test_identity(self) -> None:
        self.assertEqual(self.config.source, EXAMPLE)
        self.assertEqual(self.config.hostname, "mail.example.org")
        self.assertEqual(self.config.domains, ("example.org", "example.net"))
        self.assertEqual(self.config.primaryDomain, "example.org")
        self.assertEqual(self.config.dataDir, "/var/lib/mailhub")
        self.assertEqual(self.config.recipientDelimiter, "+")

    def test_trustedNetworks(self) -> None:
        self.assertEqual(
            self.config.trustedNetworks,
            (
                net("127.0.0.0/8"),
                net("::1/128"),
                net("192.0.2.0/24"),
                net("2001:db8:1::/48"),
            ),
        )

    def test_listeners(self) -> None:
        """
        The IPv6 listener keeps the backslashes that escape its colons.
        """
        self.assertEqual(
            self.config.listeners,
            Listeners(
                smtp=("tcp:25:interface=0.0.0.0", "tcp6:25:interface=2001\\:db8\\:\\:25"),
                submission=("tcp:587:interface=0.0.0.0",),
                submissions=("tcp:465:interface=0.0.0.0",),
                pop3=("tcp:110:interface=0.0.0.0",),
                pop3s=("tcp:995:interface=0.0.0.0",),
                imap=("tcp:143:interface=0.0.0.0",),
                imaps=("tcp:993:interface=0.0.0.0",),
            ),
        )

    def test_auth(self) -> None:
        """
        The [auth] table and the users file.
        """
        from mailhub.config import Auth

        self.assertEqual(
            self.config.auth,
            Auth(checkers=("mailhub-file:/var/lib/mailhub/users",), mailboxes="users", mx=False),
        )
        self.assertEqual(self.config.users, "/var/lib/mailhub/users")

    def test_listenerStringsParse(self) -> None:
        """
        Twisted reads the IPv6 address out of the escaped endpoint string.
        Building an endpoint binds nothing and needs no running reactor.
        """
        from twisted.internet.endpoints import serverFromString
        from twisted.internet.testing import MemoryReactor

        ipv4, ipv6 = (
            serverFromString(MemoryReactor(), s) for s in self.config.listeners.smtp
        )
        self.assertEqual((ipv4._port, ipv4._interface), (25, "0.0.0.0"))
        self.assertEqual((ipv6._port, ipv6._interface), (25, "2001:db8::25"))

    def test_tls(self) -> None:
        self.assertEqual(
            self.config.tls,
            TLSFiles(
                certificate="/etc/mailhub/tls/fullchain.pem",
                key="/etc/mailhub/tls/privkey.pem",
            ),
        )

    def test_limits(self) -> None:
        self.assertEqual(
            self.config.limits,
            Limits(
                messageSize=52428800,
                recipients=100,
                lineLength=8192,
                connectionsPerPeer=20,
                peerLimitExempt=(
                    net("127.0.0.0/8"),
                    net("::1/128"),
                    net("198.51.100.7/32"),
                ),
                idleTimeout=300.0,
                errors=20,
                connectionsPerUser=20,
            ),
        )

    def test_aliases(self) -> None:
        """
        The C{[aliases]} table and C{etc/aliases} are merged.
        """
        self.assertEqual(
            dict(self.config.aliases),
            {
                # [aliases] in mailhub.toml
                "abuse@example.org": ("postmaster@example.org",),
                "abuse@example.net": ("postmaster@example.net",),
                "hostmaster@example.org": ("postmaster@example.org",),
                "hostmaster@example.net": ("postmaster@example.net",),
                "staff@example.org": (
                    "alice@example.org",
                    "bob@example.org",
                    "carol@example.org",
                ),
                # etc/aliases
                "webmaster@example.org": ("alice@example.org",),
                "webmaster@example.net": ("alice@example.org",),
                "root@example.org": ("postmaster@example.org",),
                "root@example.net": ("postmaster@example.net",),
                "info@example.org": ("alice@example.org", "bob@example.org"),
                "sales@example.org": ("bob@example.org", "carol@example.org"),
                "info@example.net": ("alice@example.org", "bob@example.org"),
            },
        )

    def test_dataOverride(self) -> None:
        """
        C{--data} (L{config.load}'s C{dataDir}) overrides the file's C{data}
        and nothing else.
        """
        overridden = config.load(EXAMPLE, dataDir="/srv/mail")
        self.assertEqual(overridden.dataDir, "/srv/mail")
        from attrs import evolve

        self.assertEqual(overridden, evolve(self.config, dataDir="/srv/mail"))


class PathTests(SynchronousTestCase):
    """
    Paths in the file are relative to the file's directory.
    """

    def write(self, text: str, name: str = "mailhub.toml") -> str:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def test_relativeToFile(self) -> None:
        """
        C{data}, C{alias_file} and the C{[tls]} files resolve against the
        configuration file's directory, not the working directory.
        """
        path = self.write(
            'data = "spool/data"\n'
            'alias_file = "../aliases"\n'
            "[tls]\n"
            'certificate = "tls/cert.pem"\n'
            'key = "./tls/key.pem"\n'
        )
        directory = os.path.dirname(path)
        with open(os.path.join(directory, "..", "aliases"), "w") as f:
            f.write("info@localhost: postmaster\n")
        c = config.load(path)
        self.assertEqual(c.dataDir, os.path.join(directory, "spool", "data"))
        self.assertEqual(c.tls.certificate, os.path.join(directory, "tls", "cert.pem"))
        self.assertEqual(c.tls.key, os.path.join(directory, "tls", "key.pem"))
        self.assertEqual(
            dict(c.aliases), {"info@localhost": ("postmaster@localhost",)}
        )

    def test_relativeSourcePath(self) -> None:
        """
        A relative configuration path still anchors its relative paths at
        its own directory.
        """
        path = self.write('data = "d"\n')
        relative = os.path.relpath(path)
        self.assertEqual(
            config.load(relative).dataDir, os.path.join(os.path.dirname(path), "d")
        )

    def test_absolute(self) -> None:
        """
        Absolute paths are kept.
        """
        path = self.write('data = "/var/lib/mailhub"\n')
        self.assertEqual(config.load(path).dataDir, "/var/lib/mailhub")

    def test_dataOverrideIsVerbatim(self) -> None:
        """
        C{--data} is a command-line path: not anchored at the file.
        """
        path = self.write('data = "d"\n')
        self.assertEqual(config.load(path, dataDir="other").dataDir, "other")

    def test_withDataDir(self) -> None:
        self.assertEqual(
            config.embedded().withDataDir("/srv/mail"), Config(dataDir="/srv/mail")
        )

    def test_fromDocumentWithoutSource(self) -> None:
        """
        With no source file, relative paths are taken from the working
        directory.
        """
        c = config.fromDocument({"data": "d"})
        self.assertIsNone(c.source)
        self.assertEqual(c.dataDir, os.path.join(os.getcwd(), "d"))


class ValuesTests(SynchronousTestCase):
    """
    Accepted values and their normalisation.
    """

    def test_domainsNormalised(self) -> None:
        """
        Domains and the hostname are folded to lower case, without a final
        dot.
        """
        c = config.fromDocument(
            {"hostname": "Mail.Example.ORG.", "domains": ["Example.ORG", "example.net."]}
        )
        self.assertEqual(c.hostname, "mail.example.org")
        self.assertEqual(c.domains, ("example.org", "example.net"))

    def test_singleStringAsList(self) -> None:
        """
        A list key given one string is a list of that string.
        """
        c = config.fromDocument(
            {
                "domains": "example.org",
                "trusted_networks": "192.0.2.0/24",
                "listeners": {"smtp": "tcp:25"},
            }
        )
        self.assertEqual(c.domains, ("example.org",))
        self.assertEqual(c.trustedNetworks, (net("192.0.2.0/24"),))
        self.assertEqual(c.listeners.smtp, ("tcp:25",))

    def test_networkHostBits(self) -> None:
        """
        Host bits in a network are ignored; a bare address is one host.
        """
        c = config.fromDocument({"trusted_networks": ["192.0.2.7/24", "2001:db8::1"]})
        self.assertEqual(c.trustedNetworks, (net("192.0.2.0/24"), net("2001:db8::1/128")))

    def test_noDelimiter(self) -> None:
        """
        An empty C{recipient_delimiter} turns subaddresses off.
        """
        self.assertEqual(
            config.fromDocument({"recipient_delimiter": ""}).recipientDelimiter, ""
        )
        self.assertEqual(
            config.fromDocument({"recipient_delimiter": "-"}).recipientDelimiter, "-"
        )

    def test_limitMinimums(self) -> None:
        """
        Each limit accepts its minimum; the idle timeout may be fractional.
        """
        limits = config.fromDocument(
            {
                "limits": {
                    "message_size": 1024,
                    "recipients": 1,
                    "line_length": 1000,
                    "connections_per_peer": 1,
                    "peer_limit_exempt": [],
                    "idle_timeout": 0.5,
                    "errors": 1,
                    "connections_per_user": 1,
                }
            }
        ).limits
        self.assertEqual(
            limits, Limits(1024, 1, 1000, 1, (), 0.5, 1, 1)
        )

    def test_idleTimeoutInteger(self) -> None:
        """
        An integer idle timeout is a float number of seconds.
        """
        timeout = config.fromDocument({"limits": {"idle_timeout": 60}}).limits.idleTimeout
        self.assertEqual(timeout, 60.0)
        self.assertIsInstance(timeout, float)

    def test_listenersEmptyTable(self) -> None:
        """
        An empty table keeps every default in it.
        """
        c = config.fromDocument({"listeners": {}, "tls": {}, "limits": {}})
        self.assertEqual(c, Config())


class AliasTests(SynchronousTestCase):
    """
    The C{[aliases]} table and the alias file.
    """

    def aliases(self, table: dict[str, Any], domains: list[str] | None = None) -> dict:
        document: dict[str, Any] = {"aliases": table}
        if domains is not None:
            document["domains"] = domains
        return dict(config.fromDocument(document).aliases)

    def test_bareAliasEveryDomain(self) -> None:
        """
        A bare alias applies to every local domain, and a bare target means
        the alias's domain.
        """
        self.assertEqual(
            self.aliases({"abuse": "postmaster"}, ["example.org", "example.net"]),
            {
                "abuse@example.org": ("postmaster@example.org",),
                "abuse@example.net": ("postmaster@example.net",),
            },
        )

    def test_qualifiedAlias(self) -> None:
        """
        A full alias address applies to that domain only; its bare targets
        take that domain; qualified targets, local or not, are kept.
        """
        self.assertEqual(
            self.aliases(
                {"info@example.net": ["alice", "bob@example.org", "carol@elsewhere.example"]},
                ["example.org", "example.net"],
            ),
            {
                "info@example.net": (
                    "alice@example.net",
                    "bob@example.org",
                    "carol@elsewhere.example",
                )
            },
        )

    def test_caseFolded(self) -> None:
        """
        Aliases and targets are folded to lower case.
        """
        self.assertEqual(
            self.aliases({"Info@Example.ORG": ["Alice", "Bob@EXAMPLE.org"]}, ["example.org"]),
            {"info@example.org": ("alice@example.org", "bob@example.org")},
        )

    def test_angleBrackets(self) -> None:
        """
        A target in angle brackets is the address inside them.
        """
        self.assertEqual(
            self.aliases({"info": "<alice@example.org>"}, ["example.org"]),
            {"info@example.org": ("alice@example.org",)},
        )

    def test_listTarget(self) -> None:
        self.assertEqual(
            self.aliases({"staff": ["alice", "bob", "carol"]}),
            {
                "staff@localhost": (
                    "alice@localhost",
                    "bob@localhost",
                    "carol@localhost",
                )
            },
        )

    def test_aliasFile(self) -> None:
        """
        The alias file: comments, blank lines, CRLF, several targets a line;
        its entries merge with the table's.
        """
        path = os.path.abspath(self.mktemp())
        with open(path, "wb") as f:
            f.write(
                b"# header\r\n"
                b"\r\n"
                b"Root: postmaster   # trailing comment\r\n"
                b"  sales@example.org :  bob ,carol@example.net,  \r\n"
            )
        c = config.fromDocument(
            {
                "domains": ["example.org", "example.net"],
                "alias_file": path,
                "aliases": {"abuse@example.org": "postmaster"},
            }
        )
        self.assertEqual(
            dict(c.aliases),
            {
                "abuse@example.org": ("postmaster@example.org",),
                "root@example.org": ("postmaster@example.org",),
                "root@example.net": ("postmaster@example.net",),
                "sales@example.org": ("bob@example.org", "carol@example.net"),
            },
        )


class BadDocumentTests(ConfigErrorTestCase):
    """
    Each wrong configuration is a L{ConfigError} naming the file and the key
    in one line.
    """

    SOURCE = "/etc/mailhub/mailhub.toml"

    # (what is wrong, the document, the key the error names)
    cases: list[tuple[str, dict[str, Any], str]] = [
        ("unknown top-level key", {"hostnme": "x.example"}, "hostnme"),
        ("unknown listener", {"listeners": {"smtps": ["tcp:465"]}}, "listeners.smtps"),
        ("unknown limit", {"limits": {"message_sise": 1024}}, "limits.message_sise"),
        ("unknown tls key", {"tls": {"chain": "c.pem"}}, "tls.chain"),
        ("unknown key with a newline", {"a\nb": 1}, '"a\\nb"'),
        ("table expected", {"limits": 5}, "limits"),
        ("table expected for aliases", {"aliases": ["a"]}, "aliases"),
        # wrong types
        ("string for integer", {"limits": {"message_size": "50M"}}, "limits.message_size"),
        ("bool for integer", {"limits": {"recipients": True}}, "limits.recipients"),
        ("float for integer", {"limits": {"errors": 2.5}}, "limits.errors"),
        ("string for seconds", {"limits": {"idle_timeout": "5m"}}, "limits.idle_timeout"),
        ("bool for seconds", {"limits": {"idle_timeout": True}}, "limits.idle_timeout"),
        ("integer for string", {"hostname": 42}, "hostname"),
        ("integer for path", {"data": 1}, "data"),
        ("bool for delimiter", {"recipient_delimiter": False}, "recipient_delimiter"),
        ("table for list", {"domains": {"a": 1}}, "domains"),
        ("integer in list", {"listeners": {"smtp": ["tcp:25", 25]}}, "listeners.smtp[1]"),
        ("integer for network", {"trusted_networks": [10]}, "trusted_networks[0]"),
        ("empty string", {"data": ""}, "data"),
        ("blank listener", {"listeners": {"smtp": [" "]}}, "listeners.smtp[0]"),
        # minimums
        ("message size below 1024", {"limits": {"message_size": 1023}}, "limits.message_size"),
        ("line length below 1000", {"limits": {"line_length": 998}}, "limits.line_length"),
        ("no recipients", {"limits": {"recipients": 0}}, "limits.recipients"),
        ("no connections", {"limits": {"connections_per_peer": 0}}, "limits.connections_per_peer"),
        ("no sessions per user", {"limits": {"connections_per_user": 0}}, "limits.connections_per_user"),
        ("string sessions per user", {"limits": {"connections_per_user": "5"}}, "limits.connections_per_user"),
        ("negative errors", {"limits": {"errors": -1}}, "limits.errors"),
        ("zero idle timeout", {"limits": {"idle_timeout": 0}}, "limits.idle_timeout"),
        ("infinite idle timeout", {"limits": {"idle_timeout": float("inf")}}, "limits.idle_timeout"),
        ("nan idle timeout", {"limits": {"idle_timeout": float("nan")}}, "limits.idle_timeout"),
        # domains
        ("bad domain", {"domains": ["example.org", "exa mple.org"]}, "domains[1]"),
        ("domain with a leading hyphen", {"domains": ["-example.org"]}, "domains[0]"),
        ("domain with an empty label", {"domains": ["example..org"]}, "domains[0]"),
        ("domain label too long", {"domains": ["a" * 64 + ".org"]}, "domains[0]"),
        ("non-ASCII domain", {"domains": ["bücher.example"]}, "domains[0]"),
        ("bad hostname", {"hostname": "mail_server"}, "hostname"),
        ("empty domains", {"domains": []}, "domains"),
        ("duplicate domain", {"domains": ["example.org", "Example.ORG."]}, "domains[1]"),
        # networks
        ("bad network", {"trusted_networks": ["192.0.2.0/33"]}, "trusted_networks[0]"),
        ("network name", {"trusted_networks": ["10.0.0.0/8", "lan"]}, "trusted_networks[1]"),
        ("bad exempt network", {"limits": {"peer_limit_exempt": ["::1/129"]}}, "limits.peer_limit_exempt[0]"),
        # tls
        ("certificate without key", {"tls": {"certificate": "c.pem"}}, "tls.key"),
        ("key without certificate", {"tls": {"key": "k.pem"}}, "tls.certificate"),
        # recipient_delimiter
        ("long delimiter", {"recipient_delimiter": "+-"}, "recipient_delimiter"),
        ("@ delimiter", {"recipient_delimiter": "@"}, "recipient_delimiter"),
        ("dot delimiter", {"recipient_delimiter": "."}, "recipient_delimiter"),
        ("space delimiter", {"recipient_delimiter": " "}, "recipient_delimiter"),
        ("tab delimiter", {"recipient_delimiter": "\t"}, "recipient_delimiter"),
        ("control delimiter", {"recipient_delimiter": "\x00"}, "recipient_delimiter"),
        ("special delimiter", {"recipient_delimiter": "<"}, "recipient_delimiter"),
        # aliases
        (
            "alias in another domain",
            {"domains": ["example.org"], "aliases": {"info@example.net": "alice@example.org"}},
            'aliases."info@example.net"',
        ),
        ("target with a space", {"aliases": {"info": "alice smith"}}, "aliases.info"),
        ("target with two @", {"aliases": {"info": "a@b@example.org"}}, "aliases.info"),
        ("target without local part", {"aliases": {"info": "@example.org"}}, "aliases.info"),
        ("target with empty domain", {"aliases": {"info": "alice@"}}, "aliases.info"),
        ("target with bad domain", {"aliases": {"info": "alice@exa_mple.org"}}, "aliases.info"),
        ("target with a newline", {"aliases": {"info": "alice\nbcc@evil.example"}}, "aliases.info"),
        ("empty target", {"aliases": {"info": ""}}, "aliases.info[0]"),
        ("no targets", {"aliases": {"info": []}}, "aliases.info"),
        ("integer target", {"aliases": {"info": 5}}, "aliases.info"),
        ("bad alias name", {"aliases": {"in fo": "alice"}}, 'aliases."in fo"'),
        (
            "alias defined twice",
            {"aliases": {"info": "alice", "INFO": "bob"}},
            "aliases.INFO",
        ),
        (
            "bare and qualified alias for one address",
            {"aliases": {"info": "alice", "info@localhost": "bob"}},
            'aliases."info@localhost"',
        ),
    ]

    def test_badDocuments(self) -> None:
        def check(document: dict[str, Any], key: str) -> None:
            error = self.assertRaises(
                ConfigError, config.fromDocument, document, source=self.SOURCE
            )
            self.assertOneLine(error, self.SOURCE, key)

        self.checkCases(self.cases, check)

    def test_internationalisedDomain(self) -> None:
        """
        A U-label domain is refused with a pointer to its A-label form;
        peers send the A-label, so the U-label would never match.
        """
        error = self.assertRaises(
            ConfigError, config.fromDocument, {"domains": ["bücher.example"]}
        )
        self.assertIn("xn--", error.problem)
        self.assertEqual(
            config.fromDocument({"domains": ["xn--bcher-kva.example"]}).domains,
            ("xn--bcher-kva.example",),
        )

    def test_noSource(self) -> None:
        """
        Without a source file the error says "configuration".
        """
        error = self.assertRaises(ConfigError, config.fromDocument, {"x": 1})
        self.assertEqual(str(error), "configuration: x: unknown key")

    def test_firstProblem(self) -> None:
        """
        The error names the first wrong key and says what is wrong with it.
        """
        error = self.assertRaises(
            ConfigError,
            config.fromDocument,
            {"limits": {"message_size": "50M"}},
            source="m.toml",
        )
        self.assertEqual(
            str(error), "m.toml: limits.message_size: must be an integer, not a string"
        )


class BadFileTests(ConfigErrorTestCase):
    """
    Files that cannot be read or parsed, and bad alias files.
    """

    def write(self, data: bytes | str, name: str = "mailhub.toml") -> str:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, name)
        with open(path, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        return path

    def test_missing(self) -> None:
        path = os.path.abspath(self.mktemp())
        error = self.assertRaises(ConfigError, config.load, path)
        self.assertOneLine(error, path, None)
        self.assertIn("cannot read", error.problem)

    def test_directory(self) -> None:
        path = os.path.abspath(self.mktemp())
        os.makedirs(path)
        error = self.assertRaises(ConfigError, config.load, path)
        self.assertOneLine(error, path, None)

    def test_invalidTOML(self) -> None:
        """
        A syntax error names the file and says where.
        """
        path = self.write('hostname = "mail.example.org"\ndomains = [,]\n')
        error = self.assertRaises(ConfigError, config.load, path)
        self.assertOneLine(error, path, None)
        self.assertIn("not valid TOML", error.problem)
        self.assertIn("line 2", error.problem)

    def test_truncatedTOML(self) -> None:
        path = self.write('hostname = "mail.example.org"\ndomains = [\n')
        error = self.assertRaises(ConfigError, config.load, path)
        self.assertOneLine(error, path, None)
        self.assertIn("not valid TOML", error.problem)

    def test_multiLineStringError(self) -> None:
        """
        A newline inside a basic string (a common slip) still gives one line.
        """
        path = self.write('hostname = "mail.\nexample.org"\n')
        self.assertOneLine(self.assertRaises(ConfigError, config.load, path), path, None)

    def test_unescapedIPv6Listener(self) -> None:
        """
        C{\\:} in a TOML basic string is not a valid escape: the file is
        wrong, and says so.
        """
        path = self.write('[listeners]\nsmtp = ["tcp6:25:interface=\\:\\:"]\n')
        error = self.assertRaises(ConfigError, config.load, path)
        self.assertOneLine(error, path, None)
        self.assertIn("not valid TOML", error.problem)

    def test_notUTF8(self) -> None:
        """
        A file that is not UTF-8 is a L{ConfigError}, not a
        L{UnicodeDecodeError}, and the error says which line.
        """
        path = self.write(b'hostname = "mail.example.org"\n# caf\xe9\n')
        error = self.assertRaises(ConfigError, config.load, path)
        self.assertOneLine(error, path, None)
        self.assertIn("UTF-8", error.problem)
        self.assertIn("line 2", error.problem)

    def test_badValueFromFile(self) -> None:
        """
        A bad value in a loaded file names the file as given.
        """
        path = self.write("[limits]\nrecipients = 0\n")
        error = self.assertRaises(ConfigError, config.load, path)
        self.assertOneLine(error, path, "limits.recipients")

    def test_unreadableAliasFile(self) -> None:
        """
        An alias file that cannot be read is the fault of C{alias_file}.
        """
        path = self.write('alias_file = "no-such-aliases"\n')
        error = self.assertRaises(ConfigError, config.load, path)
        self.assertOneLine(error, path, "alias_file")
        self.assertIn(os.path.join(os.path.dirname(path), "no-such-aliases"), error.problem)

    def aliasFileError(self, aliases: bytes, domains: str = '["example.org"]') -> tuple[ConfigError, str]:
        aliasPath = self.write(aliases, "aliases")
        path = os.path.join(os.path.dirname(aliasPath), "mailhub.toml")
        with open(path, "w") as f:
            f.write(f'domains = {domains}\nalias_file = "aliases"\n')
        return self.assertRaises(ConfigError, config.load, path), aliasPath

    def test_aliasFileProblems(self) -> None:
        """
        Anything wrong inside the alias file names the alias file and the
        line.
        """
        cases = [
            ("no colon", b"# aliases\n\nabuse postmaster\n", "line 3"),
            ("no alias", b": postmaster\n", "line 1"),
            ("no targets", b"abuse:\n", "line 1"),
            ("commented-out targets", b"abuse: # postmaster\n", "line 1"),
            ("bad target", b"abuse: postmaster\nwebmaster: alice smith\n", "line 2"),
            ("bad alias", b"web master: alice\n", "line 1"),
            ("alias in another domain", b"\ninfo@example.net: alice\n", "line 2"),
            ("twice", b"info: alice\nINFO@example.org: bob\n", "line 2"),
            ("not UTF-8", b"info: alice\nsales: b\xf6b\n", "line 2"),
            ("form feed is not a line break", b"info: alice\x0c\nsales bob\n", "line 2"),
        ]

        def check(data: bytes, key: str) -> None:
            error, aliasPath = self.aliasFileError(data)
            self.assertOneLine(error, aliasPath, key)

        self.checkCases(cases, check)

    def test_aliasFileClashesWithTable(self) -> None:
        """
        An alias in both the table and the file is an error against the
        file, naming where the first definition is.
        """
        aliasPath = self.write(b"abuse: alice\n", "aliases")
        path = os.path.join(os.path.dirname(aliasPath), "mailhub.toml")
        with open(path, "w") as f:
            f.write('alias_file = "aliases"\n[aliases]\nabuse = "postmaster"\n')
        error = self.assertRaises(ConfigError, config.load, path)
        self.assertOneLine(error, aliasPath, "line 1")
        self.assertIn("aliases.abuse", error.problem)
        self.assertIn(path, error.problem)


class RelayConfigTests(SynchronousTestCase):
    """
    The [relay] table.
    """

    def test_example(self) -> None:
        """
        The example file's [relay] values load.
        """
        from mailhub.config import load

        config = load(os.path.join(os.path.dirname(__file__), "..", "etc", "mailhub.toml"))
        self.assertEqual(config.relay.firstRetry, 300.0)
        self.assertEqual(config.relay.retryFactor, 2.0)
        self.assertEqual(config.relay.delayWarning, 14400.0)
        self.assertEqual(config.relay.verifyDomains, ("example.com",))
        self.assertEqual(config.relay.transport, {"partner.example": "smtp:[192.0.2.25]:2525"})

    def test_smarthostTLS(self) -> None:
        """
        C{smarthost_tls} takes C{opportunistic}, C{require} and C{verify};
        not given, it is C{None} (the service decides, from the other keys).
        """
        from mailhub.config import fromDocument

        self.assertIsNone(fromDocument({"relay": {"smarthost": "[smtp.example.net]:587"}}).relay.smarthostTLS)
        for value in ("opportunistic", "require", "verify"):
            self.assertEqual(fromDocument({"relay": {"smarthost_tls": value}}).relay.smarthostTLS, value)

    def test_values(self) -> None:
        """
        Warning off with 0; DNS servers with ports; bad values name the key.
        """
        from mailhub.config import fromDocument
        from mailhub.errors import ConfigError

        relay = fromDocument(
            {"relay": {"delay_warning": 0, "dns_servers": ["192.0.2.53", "127.0.0.1:5353", "[::1]:53"]}}
        ).relay
        self.assertIsNone(relay.delayWarning)
        self.assertEqual(relay.dnsServers, (("192.0.2.53", 53), ("127.0.0.1", 5353), ("::1", 53)))
        for document, key in (
            ({"relay": {"tls": "sometimes"}}, "relay.tls"),
            ({"relay": {"smarthost_tls": "encrypt"}}, "relay.smarthost_tls"),
            ({"relay": {"dns_servers": ["dns.example"]}}, "relay.dns_servers[0]"),
            ({"relay": {"first_retry": -1}}, "relay.first_retry"),
            ({"relay": {"transport": {"bad domain": "[x]"}}}, 'relay.transport."bad domain"'),
            ({"relay": {"frob": 1}}, "relay.frob"),
        ):
            error = self.assertRaises(ConfigError, fromDocument, document)
            self.assertEqual(error.key, key)

    def test_retryFactor(self) -> None:
        """
        C{retry_factor} is a number of at least 1 (an integer or not), 2 by
        default; anything else names the key and says what it must be.
        """
        from mailhub.config import Relay, fromDocument
        from mailhub.errors import ConfigError

        self.assertEqual(Relay().retryFactor, 2.0)
        self.assertEqual(fromDocument({}).relay.retryFactor, 2.0)
        for value, expected in ((1, 1.0), (1.0, 1.0), (1.5, 1.5), (3, 3.0)):
            factor = fromDocument({"relay": {"retry_factor": value}}).relay.retryFactor
            self.assertEqual((factor, type(factor)), (expected, float), value)
        for value, problem in (
            (0.5, "must be a finite number of at least 1, not 0.5"),
            (0, "must be a finite number of at least 1, not 0"),
            (-2, "must be a finite number of at least 1, not -2"),
            (float("inf"), "must be a finite number of at least 1, not inf"),
            (float("nan"), "must be a finite number of at least 1, not nan"),
            (True, "must be a number, not a boolean"),
            ("2", "must be a number, not a string"),
        ):
            error = self.assertRaises(ConfigError, fromDocument, {"relay": {"retry_factor": value}})
            self.assertEqual((error.key, error.problem), ("relay.retry_factor", problem), value)
