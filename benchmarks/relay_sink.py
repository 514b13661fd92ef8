#!/usr/bin/env python3
"""
A loopback SMTP sink for benchmarks/relay.py: answers 250 to everything,
throws the message away and counts the DATA transactions it completed.

    python benchmarks/relay_sink.py --port 2525 --control 2526

It listens on 127.0.0.1 only.  The control port answers one line per
request: send C{COUNT} and read back the number of messages received since
the sink started (take differences between two readings).  Plain asyncio,
one coroutine per connection; handles pipelined commands (it advertises
PIPELINING) by answering each line in order.  No TLS, no AUTH.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

HOST = "127.0.0.1"

COUNT = 0
RECIPIENTS = 0


async def session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    global COUNT, RECIPIENTS
    try:
        writer.write(b"220 sink.test ESMTP relay benchmark sink\r\n")
        while True:
            line = await reader.readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb == b"EHLO":
                writer.write(b"250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n"
                             b"250-SIZE 104857600\r\n250 ENHANCEDSTATUSCODES\r\n")
            elif verb == b"DATA":
                writer.write(b"354 go ahead\r\n")
                while True:
                    data = await reader.readline()
                    if not data:
                        return
                    if data == b".\r\n" or data == b".\n":
                        break
                COUNT += 1
                writer.write(b"250 2.0.0 Ok: queued\r\n")
            elif verb == b"QUIT":
                writer.write(b"221 2.0.0 Bye\r\n")
                await writer.drain()
                return
            elif verb == b"RCPT":
                RECIPIENTS += 1
                writer.write(b"250 2.1.5 Ok\r\n")
            else:
                # HELO, MAIL, RSET, NOOP and anything else.
                writer.write(b"250 2.0.0 Ok\r\n")
            # Only wait for the socket when it is backed up.
            if writer.transport.get_write_buffer_size() > 65536:
                await writer.drain()
    except (ConnectionError, asyncio.LimitOverrunError, ValueError):
        pass
    finally:
        writer.close()


async def control(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            line = await reader.readline()
            if not line:
                return
            if line.strip().upper() == b"COUNT":
                writer.write(f"{COUNT} {RECIPIENTS}\n".encode())
            else:
                writer.write(b"? COUNT\n")
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main(port: int, controlPort: int) -> None:
    smtp = await asyncio.start_server(session, HOST, port, limit=1 << 20, backlog=512)
    ctl = await asyncio.start_server(control, HOST, controlPort)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"sink listening on {HOST}:{port}, control {HOST}:{controlPort}", flush=True)
    await stop.wait()
    smtp.close()
    ctl.close()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--control", type=int, required=True)
    a = p.parse_args()
    asyncio.run(main(a.port, a.control))
    sys.exit(0)
