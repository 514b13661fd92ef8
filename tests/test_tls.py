# -*- test-case-name: tests.test_tls -*-
"""
Tests for L{mailhub.tls}.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import stat

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL, crypto
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    TLSVersion,
    optionsForClientTLS,
)
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test.iosim import FakeAddress, connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase

from mailhub.errors import ConfigError
from mailhub.tls import describeTLS, ensureCertificate, serverContextFactory

NOW = datetime.datetime(2025, 3, 1, 12, 30, 15, tzinfo=datetime.timezone.utc)

HOSTNAME = "mail.example.com"


def _realNow() -> datetime.datetime:
    """
    The real time, for certificates that a client verifies in a handshake
    (OpenSSL checks validity against the system clock).
    """
    return datetime.datetime.now(datetime.timezone.utc)


def _loadCertificate(path: str) -> x509.Certificate:
    with open(path, "rb") as f:
        return x509.load_pem_x509_certificate(f.read())


def _loadKey(path: str) -> ec.EllipticCurvePrivateKey:
    with open(path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return key


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)


def _asCryptography(certificate: object) -> x509.Certificate:
    """
    A certificate as C{cryptography} has it, whether it is one already or
    pyOpenSSL's.
    """
    if isinstance(certificate, crypto.X509):
        return certificate.to_cryptography()
    assert isinstance(certificate, x509.Certificate)
    return certificate


def _publicDER(key: object) -> bytes:
    return key.public_bytes(  # type: ignore[attr-defined,no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _makeChain(
    directory: str, hostname: str, now: datetime.datetime = NOW
) -> tuple[str, str, x509.Certificate, x509.Certificate]:
    """
    Make a CA, and a leaf certificate for C{hostname} signed by it; write
    the leaf followed by the CA to C{directory/chain.pem} and the leaf's
    key to C{directory/leaf.key}.  Both are valid around C{now}.

    @return: the certificate path, the key path, the leaf and the CA.
    """
    os.makedirs(directory)
    caKey = ec.generate_private_key(ec.SECP256R1())
    caName = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(caName)
        .issuer_name(caName)
        .public_key(caKey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(caKey.public_key()),
            critical=False,
        )
        .sign(caKey, hashes.SHA256())
    )
    leafKey = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(caName)
        .public_key(leafKey.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=90))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(caKey.public_key()),
            critical=False,
        )
        .sign(caKey, hashes.SHA256())
    )
    certPath = os.path.join(directory, "chain.pem")
    keyPath = os.path.join(directory, "leaf.key")
    _write(
        certPath,
        leaf.public_bytes(serialization.Encoding.PEM)
        + ca.public_bytes(serialization.Encoding.PEM),
    )
    _write(
        keyPath,
        leafKey.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
    )
    return certPath, keyPath, leaf, ca


class _Recorder(Protocol):
    """
    A protocol that remembers its data and whether it lost its connection.
    """

    def __init__(self) -> None:
        self.received = b""
        self.lost = False

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: object = None) -> None:
        self.lost = True


class EnsureCertificateTests(SynchronousTestCase):
    """
    Tests for L{ensureCertificate}.
    """

    def test_paths(self) -> None:
        """
        The pair lives in C{DATA/tls/cert.pem} and C{DATA/tls/key.pem}, and
        the missing directories are made.
        """
        dataDir = os.path.join(self.mktemp(), "deeper", "data")
        certPath, keyPath = ensureCertificate(dataDir, HOSTNAME, NOW)
        self.assertEqual(certPath, os.path.join(dataDir, "tls", "cert.pem"))
        self.assertEqual(keyPath, os.path.join(dataDir, "tls", "key.pem"))
        self.assertTrue(os.path.isfile(certPath))
        self.assertTrue(os.path.isfile(keyPath))

    def test_certificate(self) -> None:
        """
        The certificate is a self-signed, non-CA server certificate for the
        host name, C{localhost} and the loopback addresses, valid from a
        day before C{now} for 825 days, for an EC P-256 key.
        """
        certPath, keyPath = ensureCertificate(self.mktemp(), HOSTNAME, NOW)
        cert = _loadCertificate(certPath)
        key = _loadKey(keyPath)

        self.assertEqual(
            cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value, HOSTNAME
        )
        self.assertEqual(cert.issuer, cert.subject)
        cert.verify_directly_issued_by(cert)

        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        self.assertEqual(
            san.value.get_values_for_type(x509.DNSName), [HOSTNAME, "localhost"]
        )
        self.assertEqual(
            san.value.get_values_for_type(x509.IPAddress),
            [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")],
        )

        self.assertEqual(cert.not_valid_before_utc, NOW - datetime.timedelta(days=1))
        self.assertEqual(cert.not_valid_after_utc, NOW + datetime.timedelta(days=825))

        publicKey = cert.public_key()
        self.assertIsInstance(publicKey, ec.EllipticCurvePublicKey)
        assert isinstance(publicKey, ec.EllipticCurvePublicKey)
        self.assertEqual(publicKey.curve.name, "secp256r1")
        self.assertEqual(_publicDER(publicKey), _publicDER(key.public_key()))

        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        self.assertTrue(basic.critical)
        self.assertFalse(basic.value.ca)
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        self.assertTrue(usage.digital_signature)
        # RFC 8813: never keyEncipherment for an EC key.
        self.assertFalse(usage.key_encipherment)
        self.assertFalse(usage.key_cert_sign)
        extended = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage)
        self.assertEqual(list(extended.value), [ExtendedKeyUsageOID.SERVER_AUTH])

    def test_modes(self) -> None:
        """
        The key is readable by its owner alone, and so is the C{tls}
        directory; no temporary file is left behind.
        """
        certPath, keyPath = ensureCertificate(self.mktemp(), HOSTNAME, NOW)
        self.assertEqual(stat.S_IMODE(os.stat(keyPath).st_mode), 0o600)
        tlsDir = os.path.dirname(keyPath)
        self.assertEqual(stat.S_IMODE(os.stat(tlsDir).st_mode), 0o700)
        self.assertEqual(sorted(os.listdir(tlsDir)), ["cert.pem", "key.pem"])

    def test_localhostOnce(self) -> None:
        """
        When the host name is C{localhost} it is in the certificate once.
        """
        certPath, _ = ensureCertificate(self.mktemp(), "LocalHost.", NOW)
        san = _loadCertificate(certPath).extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
        self.assertEqual(san.value.get_values_for_type(x509.DNSName), ["localhost"])
        self.assertEqual(len(san.value.get_values_for_type(x509.IPAddress)), 2)

    def test_addressOnce(self) -> None:
        """
        A host name that is a loopback address is an IP entry, once.
        """
        certPath, _ = ensureCertificate(self.mktemp(), "::1", NOW)
        san = _loadCertificate(certPath).extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        )
        self.assertEqual(san.value.get_values_for_type(x509.DNSName), ["localhost"])
        self.assertEqual(
            san.value.get_values_for_type(x509.IPAddress),
            [ipaddress.ip_address("::1"), ipaddress.ip_address("127.0.0.1")],
        )

    def test_naiveNow(self) -> None:
        """
        A naive C{now} is taken as UTC.
        """
        certPath, _ = ensureCertificate(
            self.mktemp(), HOSTNAME, NOW.replace(tzinfo=None)
        )
        cert = _loadCertificate(certPath)
        self.assertEqual(cert.not_valid_before_utc, NOW - datetime.timedelta(days=1))

    def test_longHostname(self) -> None:
        """
        A host name too long for a commonName is in the (then critical)
        subjectAltName alone.
        """
        hostname = "a" * 60 + ".example.com"
        certPath, _ = ensureCertificate(self.mktemp(), hostname, NOW)
        cert = _loadCertificate(certPath)
        self.assertEqual(list(cert.subject), [])
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        self.assertTrue(san.critical)
        self.assertEqual(san.value.get_values_for_type(x509.DNSName)[0], hostname)

    def test_badHostname(self) -> None:
        """
        A host name that cannot be put in a certificate is a L{ConfigError}
        about C{hostname}.
        """
        error = self.assertRaises(
            ConfigError, ensureCertificate, self.mktemp(), "", NOW, source="m.toml"
        )
        self.assertEqual(error.key, "hostname")
        self.assertEqual(error.source, "m.toml")

    def test_reuse(self) -> None:
        """
        A second call returns the same files, untouched.
        """
        dataDir = self.mktemp()
        certPath, keyPath = ensureCertificate(dataDir, HOSTNAME, NOW)
        before = {p: (_read(p), os.stat(p)) for p in (certPath, keyPath)}
        again = ensureCertificate(
            dataDir, "other.example.com", NOW + datetime.timedelta(days=2)
        )
        self.assertEqual(again, (certPath, keyPath))
        for path, (data, status) in before.items():
            self.assertEqual(_read(path), data)
            after = os.stat(path)
            self.assertEqual(
                (after.st_ino, after.st_mtime_ns), (status.st_ino, status.st_mtime_ns)
            )

    def test_regenerateWithoutKey(self) -> None:
        """
        If only the certificate is there, a new pair replaces it.
        """
        dataDir = self.mktemp()
        certPath, keyPath = ensureCertificate(dataDir, HOSTNAME, NOW)
        oldCert = _read(certPath)
        os.unlink(keyPath)
        self.assertEqual(ensureCertificate(dataDir, HOSTNAME, NOW), (certPath, keyPath))
        self.assertNotEqual(_read(certPath), oldCert)
        self.assertEqual(
            _publicDER(_loadCertificate(certPath).public_key()),
            _publicDER(_loadKey(keyPath).public_key()),
        )

    def test_regenerateWithoutCertificate(self) -> None:
        """
        If only the key is there, a new pair replaces it, with the key still
        private.
        """
        dataDir = self.mktemp()
        certPath, keyPath = ensureCertificate(dataDir, HOSTNAME, NOW)
        oldKey = _read(keyPath)
        os.unlink(certPath)
        ensureCertificate(dataDir, HOSTNAME, NOW)
        self.assertNotEqual(_read(keyPath), oldKey)
        self.assertEqual(stat.S_IMODE(os.stat(keyPath).st_mode), 0o600)
        serverContextFactory(certPath, keyPath)

    def test_randomSerial(self) -> None:
        """
        Two certificates made at the same time have different serial
        numbers.
        """
        first, _ = ensureCertificate(self.mktemp(), HOSTNAME, NOW)
        second, _ = ensureCertificate(self.mktemp(), HOSTNAME, NOW)
        self.assertNotEqual(
            _loadCertificate(first).serial_number,
            _loadCertificate(second).serial_number,
        )

    def test_tlsIsAFile(self) -> None:
        """
        A file where the C{tls} directory should be is a L{ConfigError}
        about C{data}, and the file is left alone.
        """
        dataDir = self.mktemp()
        os.mkdir(dataDir)
        blocker = os.path.join(dataDir, "tls")
        _write(blocker, b"not a directory")
        os.chmod(blocker, 0o644)
        error = self.assertRaises(
            ConfigError, ensureCertificate, dataDir, HOSTNAME, NOW
        )
        self.assertEqual(error.key, "data")
        self.assertEqual(stat.S_IMODE(os.stat(blocker).st_mode), 0o644)

    def test_unwritable(self) -> None:
        """
        A data directory that cannot be made is a L{ConfigError} about
        C{data}, on one line.
        """
        blocker = self.mktemp()
        _write(blocker, b"a file, not a directory")
        error = self.assertRaises(
            ConfigError,
            ensureCertificate,
            os.path.join(blocker, "data"),
            HOSTNAME,
            NOW,
            source="m.toml",
        )
        self.assertEqual(error.key, "data")
        self.assertNotIn("\n", str(error))
        self.assertTrue(str(error).startswith("m.toml: data: "))


class ServerContextFactoryTests(SynchronousTestCase):
    """
    Tests for L{serverContextFactory}.
    """

    def setUp(self) -> None:
        self.certPath, self.keyPath = ensureCertificate(self.mktemp(), HOSTNAME, NOW)

    def assertConfigError(self, certPath: str, keyPath: str, key: str) -> ConfigError:
        """
        L{serverContextFactory} refuses the pair with a one-line
        L{ConfigError} about C{key}.
        """
        error = self.assertRaises(
            ConfigError, serverContextFactory, certPath, keyPath, "mailhub.toml"
        )
        self.assertEqual(error.source, "mailhub.toml")
        self.assertEqual(error.key, key)
        self.assertNotIn("\n", str(error))
        self.assertTrue(str(error).startswith(f"mailhub.toml: {key}: "))
        return error

    def test_loads(self) -> None:
        """
        A matching certificate and key give L{CertificateOptions} holding
        them, with no extra chain.
        """
        options = serverContextFactory(self.certPath, self.keyPath)
        self.assertIsInstance(options, CertificateOptions)
        self.assertEqual(
            _asCryptography(options.certificate), _loadCertificate(self.certPath)
        )
        self.assertEqual(options.extraCertChain, [])

    def test_minimumTLS12(self) -> None:
        """
        The context refuses SSL 3, TLS 1.0 and TLS 1.1 and allows TLS 1.2
        and TLS 1.3.
        """
        context = serverContextFactory(self.certPath, self.keyPath).getContext()
        # SSL_CTX_set_options returns the options in force after the call.
        options = context.set_options(0)
        for flag in (SSL.OP_NO_SSLv3, SSL.OP_NO_TLSv1, SSL.OP_NO_TLSv1_1):
            self.assertTrue(options & flag, hex(flag))
        for flag in (SSL.OP_NO_TLSv1_2, getattr(SSL, "OP_NO_TLSv1_3", 0)):
            self.assertFalse(options & flag, hex(flag))

    def test_chain(self) -> None:
        """
        The certificates after the first in the file are the extra chain.
        """
        certPath, keyPath, leaf, ca = _makeChain(self.mktemp(), HOSTNAME)
        options = serverContextFactory(certPath, keyPath)
        self.assertEqual(_asCryptography(options.certificate), leaf)
        self.assertEqual(
            [_asCryptography(c) for c in options.extraCertChain], [ca]
        )

    def test_chainSent(self) -> None:
        """
        The server sends the extra chain in the handshake, so that a client
        that trusts the CA verifies the server.
        """
        certPath, keyPath, leaf, ca = _makeChain(self.mktemp(), HOSTNAME, _realNow())
        serverOptions = serverContextFactory(certPath, keyPath)
        clientOptions = optionsForClientTLS(
            HOSTNAME,
            trustRoot=Certificate.loadPEM(ca.public_bytes(serialization.Encoding.PEM)),
        )
        client, server, pump = _connect(serverOptions, clientOptions)
        self.assertIsNotNone(describeTLS(server.transport))
        peerChain = client.transport.getHandle().get_peer_cert_chain(
            as_cryptography=True
        )
        self.assertEqual(peerChain, [leaf, ca])

    def test_mismatchedKey(self) -> None:
        """
        A key that is not the certificate's is a L{ConfigError} about
        C{tls.key}.
        """
        _, otherKey = ensureCertificate(self.mktemp(), HOSTNAME, NOW)
        self.assertConfigError(self.certPath, otherKey, "tls.key")

    def test_keyOfChainCertificate(self) -> None:
        """
        The key must be the first certificate's, not another's in the file.
        """
        _, _, _, ca = _makeChain(self.mktemp(), HOSTNAME)
        wrongOrder = self.mktemp()
        _write(
            wrongOrder,
            ca.public_bytes(serialization.Encoding.PEM) + _read(self.certPath),
        )
        error = self.assertConfigError(wrongOrder, self.keyPath, "tls.key")
        self.assertIn("first", error.problem)

    def test_missingCertificate(self) -> None:
        """
        A certificate file that is not there is a L{ConfigError} about
        C{tls.certificate}.
        """
        error = self.assertConfigError(self.mktemp(), self.keyPath, "tls.certificate")
        self.assertIn("no such file", error.problem)

    def test_missingKey(self) -> None:
        """
        A key file that is not there is a L{ConfigError} about C{tls.key}.
        """
        self.assertConfigError(self.certPath, self.mktemp(), "tls.key")

    def test_unreadableCertificate(self) -> None:
        """
        A certificate path that is a directory is a L{ConfigError} about
        C{tls.certificate}.
        """
        directory = self.mktemp()
        os.mkdir(directory)
        self.assertConfigError(directory, self.keyPath, "tls.certificate")

    def test_garbageCertificate(self) -> None:
        """
        A certificate file that is not PEM is a L{ConfigError} about
        C{tls.certificate}.
        """
        garbage = self.mktemp()
        _write(garbage, b"\x00\xffnot a certificate\n")
        self.assertConfigError(garbage, self.keyPath, "tls.certificate")

    def test_brokenPEMCertificate(self) -> None:
        """
        A certificate file with PEM armour around a bad body is a
        L{ConfigError} about C{tls.certificate}.
        """
        broken = self.mktemp()
        _write(
            broken, b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
        )
        self.assertConfigError(broken, self.keyPath, "tls.certificate")

    def test_keyAsCertificate(self) -> None:
        """
        The key file given as the certificate is a L{ConfigError} about
        C{tls.certificate}.
        """
        self.assertConfigError(self.keyPath, self.keyPath, "tls.certificate")

    def test_garbageKey(self) -> None:
        """
        A key file that is not PEM is a L{ConfigError} about C{tls.key}.
        """
        garbage = self.mktemp()
        _write(garbage, b"not a key at all")
        self.assertConfigError(self.certPath, garbage, "tls.key")

    def test_certificateAsKey(self) -> None:
        """
        The certificate given as the key is a L{ConfigError} about
        C{tls.key}.
        """
        self.assertConfigError(self.certPath, self.certPath, "tls.key")

    def test_encryptedKey(self) -> None:
        """
        An encrypted key is a L{ConfigError} about C{tls.key} that says so.
        """
        encrypted = self.mktemp()
        _write(
            encrypted,
            _loadKey(self.keyPath).private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"secret"),
            ),
        )
        error = self.assertConfigError(self.certPath, encrypted, "tls.key")
        self.assertIn("encrypted", error.problem)

    def test_combinedFile(self) -> None:
        """
        One file holding both the key and the certificate serves as both.
        """
        combined = self.mktemp()
        _write(combined, _read(self.keyPath) + _read(self.certPath))
        options = serverContextFactory(combined, combined)
        self.assertEqual(options.extraCertChain, [])


def _connect(
    serverOptions: CertificateOptions, clientOptions: object, greet: bool = True
) -> tuple[_Recorder, _Recorder, object]:
    """
    Connect a client and a server over TLS in memory.  The TLS layers
    schedule their writes on a L{Clock} that the pump advances.

    @return: the client's and the server's application protocols (under
        TLS) and the L{twisted.test.iosim.IOPump} between them.
    """
    clock = Clock()
    serverFactory = TLSMemoryBIOFactory(
        serverOptions, False, Factory.forProtocol(_Recorder), clock=clock
    )
    clientFactory = TLSMemoryBIOFactory(
        clientOptions, True, Factory.forProtocol(_Recorder), clock=clock
    )
    clientTLS, serverTLS, pump = connectedServerAndClient(
        lambda: serverFactory.buildProtocol(FakeAddress()),
        lambda: clientFactory.buildProtocol(FakeAddress()),
        greet=greet,
        clock=clock,
    )
    return clientTLS.wrappedProtocol, serverTLS.wrappedProtocol, pump


class DescribeTLSTests(SynchronousTestCase):
    """
    Tests for L{describeTLS}.
    """

    def setUp(self) -> None:
        certPath, keyPath = ensureCertificate(self.mktemp(), HOSTNAME, _realNow())
        self.serverOptions = serverContextFactory(certPath, keyPath)
        self.trustRoot = Certificate.loadPEM(_read(certPath))

    def test_plain(self) -> None:
        """
        A transport without TLS has no description.
        """
        self.assertIsNone(describeTLS(StringTransport()))
        self.assertIsNone(describeTLS(object()))

    def test_socketHandle(self) -> None:
        """
        A transport whose handle is not a TLS connection (a TCP transport
        before STARTTLS gives its socket) has no description.
        """
        transport = StringTransport()
        transport.getHandle = lambda: object()  # type: ignore[attr-defined]
        self.assertIsNone(describeTLS(transport))

    def assertDescription(self, transport: object, version: str) -> None:
        """
        C{transport} is described as using TLS C{version}, with the cipher
        its connection uses.
        """
        description = describeTLS(transport)
        assert description is not None
        match = re.fullmatch(
            r"using (\S+) with cipher (\S+) \((\d+)/(\d+) bits\)", description
        )
        self.assertIsNotNone(match, description)
        assert match is not None
        connection = transport.getHandle()  # type: ignore[attr-defined]
        self.assertEqual(match.group(1), version)
        self.assertEqual(match.group(2), connection.get_cipher_name())
        self.assertEqual(int(match.group(3)), connection.get_cipher_bits())
        self.assertEqual(match.group(3), match.group(4))
        self.assertIn(int(match.group(3)), (128, 256))

    def test_tls13(self) -> None:
        """
        After a TLS 1.3 handshake both ends describe the session the same
        way, e.g. C{"using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384
        (256/256 bits)"}.
        """
        client, server, pump = _connect(
            self.serverOptions, optionsForClientTLS(HOSTNAME, trustRoot=self.trustRoot)
        )
        self.assertDescription(server.transport, "TLSv1.3")
        self.assertRegex(describeTLS(server.transport), r" cipher TLS_")
        self.assertEqual(describeTLS(client.transport), describeTLS(server.transport))
        client.transport.write(b"hello")
        pump.flush()
        self.assertEqual(server.received, b"hello")

    def test_tls12(self) -> None:
        """
        A TLS 1.2 session is described with its OpenSSL cipher name.
        """
        client, server, pump = _connect(
            self.serverOptions,
            CertificateOptions(
                verify=False, lowerMaximumSecurityTo=TLSVersion.TLSv1_2
            ),
        )
        self.assertDescription(server.transport, "TLSv1.2")
        self.assertEqual(
            describeTLS(server.transport),
            "using TLSv1.2 with cipher ECDHE-ECDSA-AES256-GCM-SHA384 (256/256 bits)",
        )

    def test_duringHandshake(self) -> None:
        """
        Until the handshake has finished there is no description, on either
        side.
        """
        client, server, pump = _connect(
            self.serverOptions, CertificateOptions(verify=False), greet=False
        )
        self.assertIsNone(describeTLS(server.transport))
        self.assertIsNone(describeTLS(client.transport))
        # The ClientHello reaches the server, which answers up to its own
        # Finished: it knows its cipher, but has not seen the client's
        # Finished yet.
        pump.pump()
        self.assertIsNotNone(server.transport.getHandle().get_cipher_name())
        self.assertIsNone(describeTLS(server.transport))
        self.assertIsNone(describeTLS(client.transport))
        # The client gets that answer and finishes; the server has not yet.
        pump.pump()
        self.assertIsNotNone(describeTLS(client.transport))
        self.assertIsNone(describeTLS(server.transport))
        pump.flush()
        self.assertIsNotNone(describeTLS(server.transport))
        self.assertIsNotNone(describeTLS(client.transport))

    def test_afterClose(self) -> None:
        """
        Once the connection is gone there is nothing to describe, and no
        error.
        """
        client, server, pump = _connect(
            self.serverOptions, CertificateOptions(verify=False)
        )
        transport = server.transport
        client.transport.loseConnection()
        pump.flush()
        self.assertTrue(server.lost)
        self.assertIsNone(describeTLS(transport))
