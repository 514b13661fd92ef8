"""
A minimal aiosmtpd server that stores every accepted message in a Maildir.

This is the aiosmtpd peer of C{benchmarks/smtp_receive.py}, run by it as a
subprocess so that its CPU time and memory are measured apart from the load
generator's.  It is not part of mailhub.

    python benchmarks/aiosmtpd_maildir.py --port 2526 --maildir DIR \\
        --domain bench.test

It accepts recipients in C{--domain} only (550 otherwise) and delivers with
C{mailbox.Maildir(path).add(envelope.content)}: the standard library writes
C{tmp/NAME} and renames it into C{new/}, with no fsync of the file or the
directory.  Its numbers are therefore not durable deliveries; say so beside
them.

Requires C{pip install aiosmtpd} in the interpreter that runs it.
"""

from __future__ import annotations

import argparse
import asyncio
import mailbox
import signal


class MaildirHandler:
    """
    aiosmtpd handler: accept recipients of one domain, store in one Maildir.
    """

    def __init__(self, path: str, domain: str) -> None:
        self.maildir = mailbox.Maildir(path, factory=None, create=True)
        self.domain = domain.lower()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address.rpartition("@")[2].lower() != self.domain:
            return "550 5.1.1 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope):
        # No fsync: mailbox.Maildir.add writes tmp/ and renames into new/.
        self.maildir.add(envelope.content)
        return "250 2.0.0 OK: queued"


async def serve(host: str, port: int, path: str, domain: str) -> None:
    from aiosmtpd.smtp import SMTP

    handler = MaildirHandler(path, domain)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="aiosmtpd.bench.test"),
        host=host,
        port=port,
        backlog=1024,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"aiosmtpd listening on {host}:{port}, Maildir {path}", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--maildir", required=True)
    parser.add_argument("--domain", default="bench.test")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.maildir, args.domain))


if __name__ == "__main__":
    main()
