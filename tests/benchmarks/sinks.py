"""Local stand-ins for the outside services a dispatch benchmark sends to, each in a process of
its own so that it does not share the benchmark's interpreter:

- an HTTP sink that answers every request after a fixed delay (a provider API's latency), with
  keep-alive connections, counting requests per ``X-Gobysend-Message-Id``;
- an SMTP sink that accepts every email, counting them per ``X-Gobysend-Message-Id`` header.

Both are small asyncio servers: their own cost per message must stay far below Odoo's.
"""

import asyncio
import collections
import multiprocessing
import re
import socket

MESSAGE_ID_HEADER = b"x-gobysend-message-id"
HTTP_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
SMTP_MESSAGE_ID = re.compile(rb"^X-Gobysend-Message-Id:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


class _Counts:
    def __init__(self):
        self.received = 0
        self.per_message = collections.Counter()

    def record(self, message_id):
        self.received += 1
        if message_id:
            self.per_message[message_id] += 1

    def summary(self):
        return {
            "received": self.received,
            "distinct": len(self.per_message),
            "duplicates": sum(count - 1 for count in self.per_message.values() if count > 1),
        }

    def reset(self):
        self.received = 0
        self.per_message.clear()


class _HttpSink(asyncio.Protocol):
    def __init__(self, counts, delay):
        self.counts = counts
        self.delay = delay
        self.buffer = b""
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            length, message_id = 0, None
            for line in self.buffer[:head_end].split(b"\r\n")[1:]:
                name, _sep, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == MESSAGE_ID_HEADER:
                    message_id = value.strip()
            end = head_end + 4 + length
            if len(self.buffer) < end:
                return
            self.buffer = self.buffer[end:]
            self.counts.record(message_id)
            asyncio.get_running_loop().call_later(self.delay, self.answer)

    def answer(self):
        if not self.transport.is_closing():
            self.transport.write(HTTP_ANSWER)


class _SmtpSink(asyncio.Protocol):
    def __init__(self, counts):
        self.counts = counts
        self.buffer = b""
        self.in_data = False
        self.data = []
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        transport.write(b"220 sink ESMTP ready\r\n")

    def data_received(self, data):
        self.buffer += data
        while True:
            line_end = self.buffer.find(b"\r\n")
            if line_end < 0:
                return
            line, self.buffer = self.buffer[:line_end], self.buffer[line_end + 2 :]
            if self.in_data:
                if line == b".":
                    self.in_data = False
                    body = b"\r\n".join(self.data)
                    found = SMTP_MESSAGE_ID.search(body)
                    self.counts.record(found.group(1) if found else None)
                    self.data = []
                    self.transport.write(b"250 OK queued\r\n")
                else:
                    self.data.append(line)
                continue
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                self.transport.write(b"250-sink greets you\r\n250 8BITMIME\r\n")
            elif verb == b"DATA":
                self.in_data = True
                self.transport.write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
            elif verb == b"QUIT":
                self.transport.write(b"221 Bye\r\n")
                self.transport.close()
                return
            else:  # MAIL, RCPT, RSET, NOOP
                self.transport.write(b"250 OK\r\n")


def _serve(kind, sock, delay, control):
    counts = _Counts()

    async def main():
        loop = asyncio.get_running_loop()
        factory = (lambda: _HttpSink(counts, delay)) if kind == "http" else (lambda: _SmtpSink(counts))
        server = await loop.create_server(factory, sock=sock, backlog=1024)
        stopped = loop.create_future()

        def on_command():
            command = control.recv()
            if command == "stop":
                stopped.set_result(None)
            elif command == "reset":
                counts.reset()
                control.send(None)
            else:
                control.send(counts.summary())

        loop.add_reader(control.fileno(), on_command)
        async with server:
            await stopped

    asyncio.run(main())


class Sink:
    """A sink server in a child process: ``port``, ``summary()``, ``reset()``, ``stop()``."""

    def __init__(self, kind, delay=0.0):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        self._control, child_control = multiprocessing.Pipe()
        context = multiprocessing.get_context("fork")
        self._process = context.Process(target=_serve, args=(kind, sock, delay, child_control), daemon=True)
        self._process.start()
        sock.close()

    def summary(self):
        self._control.send("summary")
        return self._control.recv()

    def reset(self):
        self._control.send("reset")
        self._control.recv()

    def stop(self):
        if self._process.is_alive():
            self._control.send("stop")
            self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
