#!/usr/bin/env python3
"""A real SMTP server for the notification tests (aiosmtpd): every message it accepts is
appended to OUT as one JSON line {mail_from, rcpt_tos, data, tls, auth_user}.

    smtp_sink.py --port P --out FILE [--auth USER:PASS] [--tls-cert C --tls-key K]

With --tls-cert/--tls-key it offers STARTTLS and requires it; with --auth it requires
authentication (PLAIN/LOGIN). Exits when its parent dies (stdin closes).
"""
import argparse
import json
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Sink:
    def __init__(self, out):
        self.out = out
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "data": envelope.content.decode("utf8", errors="replace"),
            "tls": session.ssl is not None,
            "auth_user": session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None,
        }
        with self.lock, open(self.out, "a") as f:
            f.write(json.dumps(record) + "\n")
        return "250 OK"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--auth")
    p.add_argument("--tls-cert")
    p.add_argument("--tls-key")
    a = p.parse_args()
    kwargs = {}
    if a.tls_cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.tls_cert, a.tls_key)
        kwargs.update(tls_context=ctx, require_starttls=True)
    if a.auth:
        user, password = a.auth.split(":", 1)

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login.decode() == user
                and auth_data.password.decode() == password
            )
            if ok:
                return AuthResult(success=True, auth_data=auth_data)
            return AuthResult(success=False, handled=False)

        kwargs.update(authenticator=authenticator, auth_required=True, auth_require_tls=bool(a.tls_cert))
    controller = Controller(Sink(a.out), hostname="127.0.0.1", port=a.port, **kwargs)
    controller.start()
    print("ready", flush=True)
    sys.stdin.read()  # until the test process goes away
    controller.stop()


if __name__ == "__main__":
    main()
