# -*- test-case-name: tests.test_tls -*-
"""
TLS for every listener: the server's certificate and key, the context
factory made from them, and the text the C{Received:} header gives for a
TLS session.

When the configuration names no certificate, L{ensureCertificate} makes a
self-signed one under the data directory on first start and reuses it
afterwards.  L{serverContextFactory} turns a certificate and key into
L{CertificateOptions} with TLS 1.2 as the minimum (RFC 8996); anything wrong
with the files is a L{ConfigError}, so start-up stops before any port is
bound.  L{describeTLS} says which protocol and cipher a connection uses, in
the words Postfix puts in its C{Received:} header (RFC 5321 section 4.4).
"""

from __future__ import annotations

import datetime
import errno
import ipaddress
import os
import tempfile
from typing import Any

import OpenSSL
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL, crypto
from twisted.internet.ssl import CertificateOptions, TLSVersion

from mailhub.errors import ConfigError

#: How long a generated certificate is valid: the longest that Apple's TLS
#: stack accepts even from an issuer the user has chosen to trust.
VALIDITY = datetime.timedelta(days=825)

#: How far before C{now} a generated certificate becomes valid, so that a
#: peer whose clock is a little behind does not reject it.
BACKDATE = datetime.timedelta(days=1)

#: The largest certificate or key file read; anything bigger is not one.
_MAX_PEM_SIZE = 1024 * 1024


def _takesCryptography(version: str) -> bool:
    """
    Whether a pyOpenSSL version takes C{cryptography} certificates and keys
    in L{SSL.Context.use_certificate} and its kin (24.3 and later).

    @param version: C{OpenSSL.__version__}.

    @return: C{True} from 24.3 on, and for a version it cannot read.
    """
    try:
        major, minor = (int(part) for part in version.split(".")[:2])
    except ValueError:
        return True
    return (major, minor) >= (24, 3)


_PYOPENSSL_TAKES_CRYPTOGRAPHY = _takesCryptography(OpenSSL.__version__)

_CERTIFICATE_KEY = "tls.certificate"
_KEY_KEY = "tls.key"


def ensureCertificate(
    dataDir: str,
    hostname: str,
    now: datetime.datetime,
    *,
    source: str | None = None,
) -> tuple[str, str]:
    """
    Find, or make, the self-signed certificate and key under C{dataDir}.

    The pair lives in C{DATA/tls/cert.pem} and C{DATA/tls/key.pem}.  If both
    files exist they are reused untouched, whatever they hold (a broken pair
    is reported later by L{serverContextFactory}).  Otherwise a new pair is
    made: an EC P-256 key and a self-signed certificate for C{hostname},
    C{localhost}, C{127.0.0.1} and C{::1}, valid from a day before C{now} for
    825 days.  Key usage is I{digitalSignature} alone: RFC 8813 forbids
    I{keyEncipherment} for an EC key.

    Each file is written atomically (a temporary file in the same directory,
    fsync, rename, fsync of the directory); the key is mode C{0600} and the
    C{tls} directory C{0700}.  A stale certificate is removed before the new
    key is written, so two files that both exist are always one pair.

    @param dataDir: the data directory; created if missing.
    @param hostname: this server's name, for the subject and the
        subjectAltName; a domain name (or an IP address literal).
    @param now: the current time, from the reactor clock; a naive value is
        taken as UTC.
    @param source: the configuration file, for the text of a L{ConfigError}.

    @return: C{(certPath, keyPath)}.

    @raise ConfigError: (key C{data}) if the files cannot be written, or
        (key C{hostname}) if C{hostname} cannot be put in a certificate.
    """
    tlsDir = os.path.join(dataDir, "tls")
    certPath = os.path.join(tlsDir, "cert.pem")
    keyPath = os.path.join(tlsDir, "key.pem")
    if os.path.exists(certPath) and os.path.exists(keyPath):
        return certPath, keyPath

    try:
        name = _asciiHostname(hostname)
    except ValueError:
        raise ConfigError(
            source, "hostname", f"cannot make a certificate for {hostname!r}"
        ) from None
    keyPEM, certPEM = _selfSigned(name, now)
    try:
        _makePrivateDirectory(dataDir, tlsDir)
        if os.path.lexists(certPath):
            os.unlink(certPath)
            _syncDirectory(tlsDir)
        _writeAtomically(keyPath, keyPEM, 0o600)
        _writeAtomically(certPath, certPEM, 0o644)
    except OSError as e:
        where = e.filename if e.filename is not None else tlsDir
        raise ConfigError(
            source,
            "data",
            f"cannot write the self-signed certificate: {where}: "
            f"{e.strerror or e.__class__.__name__}",
        ) from None
    return certPath, keyPath


def _asciiHostname(hostname: str) -> str:
    """
    Put a host name in the form a certificate holds it.

    @param hostname: a domain name (maybe with a trailing dot, maybe in
        Unicode) or an IP address literal (maybe in brackets).

    @return: the lower-case A-label form of a domain name, without a
        trailing dot, or the compressed form of an address.

    @raise ValueError: if it is neither.
    """
    text = hostname.strip()
    try:
        return str(ipaddress.ip_address(text.removeprefix("[").removesuffix("]")))
    except ValueError:
        pass
    text = text.rstrip(".")
    if not text or any(c.isspace() for c in text):
        raise ValueError(hostname)
    try:
        return text.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise ValueError(hostname) from None


def _subjectAltNames(hostname: str) -> list[x509.GeneralName]:
    """
    The names a generated certificate is for: C{hostname}, C{localhost} and
    the loopback addresses, each once.

    @param hostname: this server's name, as L{_asciiHostname} gives it.

    @return: the C{subjectAltName} entries, DNS names first.
    """
    dnsNames: list[str] = []
    addresses: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    try:
        addresses.append(ipaddress.ip_address(hostname))
    except ValueError:
        dnsNames.append(hostname)
    if "localhost" not in dnsNames:
        dnsNames.append("localhost")
    for address in (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")):
        if address not in addresses:
            addresses.append(address)
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in dnsNames]
    names.extend(x509.IPAddress(address) for address in addresses)
    return names


def _selfSigned(hostname: str, now: datetime.datetime) -> tuple[bytes, bytes]:
    """
    Make a new EC P-256 key and a self-signed server certificate for it.

    @param hostname: this server's name, as L{_asciiHostname} gives it.
    @param now: the current time; a naive value is taken as UTC.

    @return: C{(keyPEM, certificatePEM)}: the key as unencrypted PKCS#8.
    """
    if now.tzinfo is None:
        now = now.replace(tzinfo=datetime.timezone.utc)
    now = now.astimezone(datetime.timezone.utc).replace(microsecond=0)
    key = ec.generate_private_key(ec.SECP256R1())
    altNames = _subjectAltNames(hostname)
    # RFC 5280 caps commonName at 64 characters; a longer name lives in the
    # subjectAltName alone, which must then be critical (section 4.2.1.6).
    if len(hostname) <= 64:
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    else:
        subject = x509.Name([])
    publicKey = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(publicKey)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY)
        .add_extension(
            x509.SubjectAlternativeName(altNames), critical=not subject
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(publicKey), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(publicKey),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    keyPEM = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return keyPEM, certificate.public_bytes(serialization.Encoding.PEM)


def _makePrivateDirectory(dataDir: str, tlsDir: str) -> None:
    """
    Create C{dataDir} if needed, and C{tlsDir} inside it with mode C{0700}.

    @param dataDir: the data directory.
    @param tlsDir: C{dataDir/tls}.
    """
    os.makedirs(dataDir, exist_ok=True)
    try:
        os.mkdir(tlsDir, 0o700)
    except FileExistsError:
        if not os.path.isdir(tlsDir):
            raise NotADirectoryError(
                errno.ENOTDIR, os.strerror(errno.ENOTDIR), tlsDir
            ) from None
    else:
        _syncDirectory(dataDir)
    os.chmod(tlsDir, 0o700)


def _writeAtomically(path: str, data: bytes, mode: int) -> None:
    """
    Replace C{path} with C{data} so that a crash leaves the old file or the
    new one, never a part.

    @param path: the file to write.
    @param data: its new content.
    @param mode: its permission bits.
    """
    directory = os.path.dirname(path) or "."
    fd, temporary = tempfile.mkstemp(
        dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise
    _syncDirectory(directory)


def _syncDirectory(directory: str) -> None:
    """
    Make the creation, renaming or removal of entries in C{directory}
    durable.

    @param directory: the directory to fsync.
    """
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _readPEM(path: str, source: str | None, key: str, what: str) -> bytes:
    """
    Read a certificate or key file for L{serverContextFactory}.

    @param path: the file.
    @param source: the configuration file, for the L{ConfigError}.
    @param key: the configuration key that names C{path}.
    @param what: what the file should hold, for the message.

    @return: the content.

    @raise ConfigError: if the file cannot be read or is too big.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_PEM_SIZE + 1)
    except FileNotFoundError:
        raise ConfigError(source, key, f"no such file: {path}") from None
    except OSError as e:
        raise ConfigError(
            source,
            key,
            f"cannot read the {what}: {path}: {e.strerror or e.__class__.__name__}",
        ) from None
    if len(data) > _MAX_PEM_SIZE:
        raise ConfigError(
            source, key, f"larger than {_MAX_PEM_SIZE} bytes, not a PEM {what}: {path}"
        )
    return data


def serverContextFactory(
    certPath: str, keyPath: str, source: str | None = None
) -> CertificateOptions:
    """
    Make the TLS options every server listener uses.

    The certificate file holds the server's certificate in PEM, optionally
    followed by the intermediate certificates that complete its chain (the
    order of Let's Encrypt's C{fullchain.pem}); the key file holds its
    unencrypted private key in PEM.  The minimum protocol version is
    TLS 1.2 (RFC 8996); the cipher list is Twisted's default.

    @param certPath: the certificate file (C{tls.certificate}).
    @param keyPath: the private key file (C{tls.key}).
    @param source: the configuration file, for the text of a L{ConfigError}.

    @return: options ready for L{twisted.protocols.tls.TLSMemoryBIOFactory}
        or C{startTLS}, their context already made.  Their C{certificate},
        C{privateKey} and C{extraCertChain} are C{cryptography} objects
        where pyOpenSSL takes them (24.3 and later, which deprecate its
        C{X509} and C{PKey} there), else pyOpenSSL's.

    @raise ConfigError: with key C{tls.certificate} or C{tls.key} if a file
        is missing, unreadable or not PEM, if the key is encrypted or not the
        first certificate's, or if OpenSSL refuses them.
    """
    certData = _readPEM(certPath, source, _CERTIFICATE_KEY, "certificate")
    keyData = _readPEM(keyPath, source, _KEY_KEY, "private key")

    try:
        chain = x509.load_pem_x509_certificates(certData)
    except ValueError:
        raise ConfigError(
            source, _CERTIFICATE_KEY, f"not a PEM certificate (or chain): {certPath}"
        ) from None

    try:
        privateKey = serialization.load_pem_private_key(keyData, password=None)
    except TypeError:
        raise ConfigError(
            source,
            _KEY_KEY,
            f"the private key is encrypted; give an unencrypted one: {keyPath}",
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigError(
            source,
            _KEY_KEY,
            f"not a PEM private key (or of an unknown type): {keyPath}",
        ) from None

    leaf = chain[0]
    if _publicBytes(leaf.public_key()) != _publicBytes(privateKey.public_key()):
        raise ConfigError(
            source,
            _KEY_KEY,
            f"{keyPath} is not the key of the certificate in {certPath}"
            + (" (the first one in the file)" if len(chain) > 1 else ""),
        )

    try:
        pkey = crypto.PKey.from_cryptography_key(privateKey)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigError(
            source, _KEY_KEY, f"a private key of a type TLS cannot use: {keyPath}"
        ) from None

    certificates: list[Any]
    keyObject: Any
    if _PYOPENSSL_TAKES_CRYPTOGRAPHY:
        # pyOpenSSL 24.3 and later deprecate its own X509 and PKey here.
        certificates, keyObject = list(chain), privateKey
    else:
        certificates = [crypto.X509.from_cryptography(c) for c in chain]
        keyObject = pkey
    options = CertificateOptions(
        privateKey=keyObject,
        certificate=certificates[0],
        extraCertChain=certificates[1:],
        raiseMinimumTo=TLSVersion.TLSv1_2,
    )
    try:
        # Build the context now, so that whatever else OpenSSL refuses is
        # reported at start-up and not on the first connection.
        options.getContext()
    except (SSL.Error, TypeError, ValueError) as e:
        reason = _describeSSLError(e) if isinstance(e, SSL.Error) else str(e)
        raise ConfigError(
            source,
            _CERTIFICATE_KEY,
            f"OpenSSL refuses the certificate and key ({' '.join(reason.split())}): "
            f"{certPath}",
        ) from None
    return options


def _publicBytes(publicKey: Any) -> bytes:
    """
    A canonical encoding of a public key, to compare two.

    @param publicKey: a C{cryptography} public key.

    @return: its DER C{SubjectPublicKeyInfo}.
    """
    return publicKey.public_bytes(  # type: ignore[no-any-return]
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _describeSSLError(error: SSL.Error) -> str:
    """
    The reason strings of an OpenSSL error, on one line.

    @param error: what pyOpenSSL raised.

    @return: e.g. C{"ee key too small"}.
    """
    reasons: list[str] = []
    entries = error.args[0] if error.args and isinstance(error.args[0], list) else []
    for entry in entries:
        if isinstance(entry, tuple) and entry and isinstance(entry[-1], str):
            reasons.append(entry[-1])
    text = "; ".join(reasons) or str(error)
    return " ".join(text.split())


def describeTLS(transport: object) -> str | None:
    """
    Describe a connection's TLS session for the C{Received:} header, the
    way Postfix does: C{"using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384
    (256/256 bits)"}.

    Works with the transport a protocol is given under
    L{twisted.protocols.tls.TLSMemoryBIOProtocol} (a listener wrapped in
    TLS) and with a TCP transport after C{startTLS} (STARTTLS): both give
    the L{OpenSSL.SSL.Connection} through C{getHandle()}.  The two numbers
    are the cipher's secret bits and its algorithm bits; OpenSSL differs
    between them only for export ciphers, which are never offered, so both
    are the secret bits.

    @param transport: a protocol's transport.

    @return: the description, or C{None} if the transport does not use TLS
        or the handshake has not finished (or the connection is gone).
    """
    getHandle = getattr(transport, "getHandle", None)
    if getHandle is None:
        return None
    try:
        connection = getHandle()
    except Exception:
        return None
    if not isinstance(connection, SSL.Connection):
        return None
    try:
        # Both Finished messages have been seen only once the handshake is
        # over, on either side.
        if connection.get_finished() is None or connection.get_peer_finished() is None:
            return None
        version = connection.get_protocol_version_name()
        cipher = connection.get_cipher_name()
        bits = connection.get_cipher_bits()
    except (SSL.Error, AttributeError, TypeError, ValueError):
        return None
    if not cipher or not bits or not _isToken(version) or not _isToken(cipher):
        return None
    return f"using {version} with cipher {cipher} ({bits}/{bits} bits)"


def _isToken(text: object) -> bool:
    """
    Whether C{text} is safe to put in a header comment as one word.

    @param text: a name OpenSSL gave.

    @return: C{True} for a non-empty run of printable ASCII without spaces,
        parentheses or backslashes.
    """
    return (
        isinstance(text, str)
        and text != ""
        and text.lower() != "unknown"
        and all(33 <= ord(c) <= 126 and c not in "()\\" for c in text)
    )
