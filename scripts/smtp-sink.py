#!/usr/bin/python3
"""A local SMTP server for Coupond's tests and demos: accepts mail on loopback and records it, with no delivery.

Prints "listening on HOST:PORT" when ready. Each message becomes a JSON line in --out: the envelope sender and
recipients, the session it came in on, and the raw message. --refuse ADDRESS (repeatable) answers RCPT TO for that
address with 550; --user/--password require AUTH PLAIN or LOGIN with those credentials. Debian's python3-aiosmtpd.
"""
import argparse
import asyncio
import itertools
import json
import socket

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

parser = argparse.ArgumentParser()
parser.add_argument("--port", type=int, default=0)
parser.add_argument("--out", required=True)
parser.add_argument("--refuse", action="append", default=[])
parser.add_argument("--user")
parser.add_argument("--password")
args = parser.parse_args()

sessions = itertools.count(1)


class Recorder:
    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        # One EHLO per connection: the session number says which connection a message came in on.
        session.number = next(sessions)
        session.host_name = hostname
        return responses

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in args.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with open(args.out, "a", encoding="utf-8") as out:
            out.write(json.dumps({
                "session": getattr(session, "number", 0),
                "from": envelope.mail_from,
                "to": envelope.rcpt_tos,
                "data": envelope.content.decode("utf-8", "replace"),
            }) + "\n")
        return "250 2.0.0 queued"


def authenticate(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login.decode() == args.user \
        and auth_data.password.decode() == args.password
    return AuthResult(success=ok, handled=False)


port = args.port
if port == 0:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
options = {}
if args.user:
    # Credentials over plain TCP on loopback: tests only.
    options = {"authenticator": authenticate, "auth_require_tls": False, "auth_required": True}
controller = Controller(Recorder(), hostname="127.0.0.1", port=port, **options)
controller.start()
print(f"listening on 127.0.0.1:{port}", flush=True)
try:
    asyncio.get_event_loop().run_until_complete(asyncio.Event().wait())
except KeyboardInterrupt:
    pass
finally:
    controller.stop()
