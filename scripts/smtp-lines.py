#!/usr/bin/python3
"""A raw SMTP server for Coupond's hardening tests: logs every line a client sends, before any parsing.

Prints "listening on HOST:PORT" when ready. Each line received (commands and message data alike) becomes a JSON line
in --out: {"session": N, "line": "..."}, so a test can prove that no customer value turned into a command of its own.
It answers like a permissive relay (AUTH PLAIN and LOGIN accepted, every recipient taken), which is the worst case for
an injection: whatever reached it as a command would have been obeyed.
"""
import argparse
import asyncio
import itertools
import json

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--out", required=True)
args = parser.parse_args()

sessions = itertools.count(1)


def log(session, line):
    with open(args.out, "a", encoding="utf-8") as out:
        out.write(json.dumps({"session": session, "line": line.decode("utf-8", "replace")}) + "\n")


async def serve(reader, writer):
    session = next(sessions)

    async def reply(text):
        writer.write(text.encode() + b"\r\n")
        await writer.drain()

    await reply("220 lines.test ESMTP")
    in_data = False
    auth_login_steps = 0
    while True:
        raw = await reader.readline()
        if not raw:
            break
        line = raw.rstrip(b"\r\n")
        log(session, line)
        if in_data:
            if line == b".":
                in_data = False
                await reply("250 2.0.0 queued")
            continue
        if auth_login_steps:
            auth_login_steps -= 1
            await reply("334 UGFzc3dvcmQ6" if auth_login_steps else "235 2.7.0 accepted")
            continue
        verb = line.split(b" ", 1)[0].split(b":", 1)[0].upper()
        if verb in (b"EHLO", b"HELO"):
            await reply("250-lines.test\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME")
        elif verb == b"AUTH":
            parts = line.split()
            if len(parts) >= 2 and parts[1].upper() == b"LOGIN":
                auth_login_steps = 2
                await reply("334 VXNlcm5hbWU6")
            elif len(parts) == 2:
                auth_login_steps = 1
                await reply("334 ")
            else:
                await reply("235 2.7.0 accepted")
        elif verb == b"DATA":
            in_data = True
            await reply("354 go ahead")
        elif verb == b"QUIT":
            await reply("221 bye")
            break
        elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
            await reply("250 OK")
        else:
            await reply("500 5.5.1 unknown command")
    writer.close()


async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", args.port)
    host, port = server.sockets[0].getsockname()[:2]
    print(f"listening on {host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


asyncio.run(main())
