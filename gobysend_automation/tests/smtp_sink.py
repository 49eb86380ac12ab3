"""A minimal SMTP server on 127.0.0.1 that keeps what it receives: the outside mail server,
replaced at the network boundary."""

import socketserver
import threading
from email import message_from_bytes, policy


class _SmtpHandler(socketserver.StreamRequestHandler):
    def reply(self, line):
        self.wfile.write(line.encode() + b"\r\n")

    def handle(self):
        self.reply("220 sink ESMTP ready")
        envelope = {"from": None, "to": []}
        while True:
            line = self.rfile.readline(65536)
            if not line:
                return
            command = line.decode(errors="replace").strip()
            verb = command[:4].upper()
            if verb in ("EHLO", "HELO"):
                self.reply("250-sink greets you")
                self.reply("250 8BITMIME")
            elif verb == "MAIL":
                envelope = {"from": command[10:].strip("<> "), "to": []}
                self.reply("250 OK")
            elif verb == "RCPT":
                envelope["to"].append(command[8:].strip("<> "))
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                lines = []
                while True:
                    data_line = self.rfile.readline(1 << 20)
                    if data_line in (b".\r\n", b".\n", b""):
                        break
                    lines.append(data_line[1:] if data_line.startswith(b"..") else data_line)
                self.server.received.append(
                    dict(envelope, message=message_from_bytes(b"".join(lines), policy=policy.default))
                )
                if self.server.hold_at == len(self.server.received):
                    # Keep the client waiting for the answer, as a server that hangs would.
                    self.server.holding.set()
                    self.server.release.wait(timeout=60)
                    try:
                        self.reply("250 OK: queued")
                    except OSError:
                        return  # the client is gone
                    continue
                self.reply("250 OK: queued")
            elif verb == "QUIT":
                self.reply("221 Bye")
                return
            else:  # RSET, NOOP and anything else
                self.reply("250 OK")


class SmtpSink(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, hold_at=None):
        """``hold_at=N``: the N-th message is received but its acknowledgement waits for
        ``release`` (``holding`` is set meanwhile)."""
        super().__init__(("127.0.0.1", 0), _SmtpHandler)
        self.received = []
        self.hold_at = hold_at
        self.holding = threading.Event()
        self.release = threading.Event()
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def port(self):
        return self.server_address[1]

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info):
        self.release.set()
        self.shutdown()
        self.server_close()
