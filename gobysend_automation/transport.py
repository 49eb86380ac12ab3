"""A lean HTTP/1.1 transport for the providers' requests.

``requests`` spends about a millisecond of CPU per request on what a provider call never needs
(cookie jars, hooks, redirect handling, adapters, urllib3's retry machinery), which is more than
everything else the dispatcher does for a message. The requests made most often (a JSON or form
body, headers, basic auth, a timeout, no redirects followed, no proxy) are therefore sent with
the standard library's ``http.client`` over kept-alive connections, one set per thread, and
answered with a ``requests.Response``, so providers read the answer as they always did. Errors are
raised as the ``requests`` exceptions of the same failures. Every other request (query
parameters, redirects to follow, a proxy, anything unusual) goes through ``requests``.

Both paths are guarded the same way, because the URLs come from channel settings that workspace
managers write: a connection is opened only to an address that is public or inside a network an
Odoo administrator allowed (``ALLOWED_NETWORKS_PARAMETER``). The check runs when the connection is
opened, on the addresses the host name resolved to, and the socket connects to the address that
was checked: a name resolving to 127.0.0.1 is refused, and no second lookup can answer otherwise
(DNS rebinding). Every hop of a redirect opens its connection the same way. An answer is read up
to ``MAX_ANSWER_BYTES`` (after decompression) and refused past it.
"""

import functools
import http.client
import ipaddress
import logging
import select
import socket
import ssl
import threading
import zlib
from urllib.parse import urlsplit

import requests
import urllib3
from requests.auth import _basic_auth_str
from requests.models import RequestEncodingMixin
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers

_logger = logging.getLogger(__name__)

# The system parameter listing the networks (CIDRs, comma separated) that requests may reach
# although they are not public: a provider or a test server on the local network.
ALLOWED_NETWORKS_PARAMETER = "gobysend.outbound_allowed_networks"
# The largest answer read from a provider; a larger one is refused, not truncated.
MAX_ANSWER_BYTES = 1024 * 1024

# The arguments of ``requests.request`` this transport serves itself.
DIRECT_ARGUMENTS = frozenset({"headers", "data", "json", "auth", "timeout", "allow_redirects"})
DEFAULT_HEADERS = {"Accept": "*/*", "Connection": "keep-alive"}

_local = threading.local()
_contexts = {}
_contexts_lock = threading.Lock()


class DestinationRefused(requests.exceptions.InvalidURL):
    """The host of a URL resolves to an address of the server's own networks (loopback, private,
    link-local...) that no administrator allowed. An ``InvalidURL``: retrying cannot help."""

    def __init__(self, host, address, kind):
        self.host = host
        self.address = address
        self.kind = kind
        super().__init__(f"{host} ({address}) is a {kind} address, which outgoing requests may not reach.")


class AnswerTooLarge(requests.exceptions.RequestException):
    """The answer is larger than ``MAX_ANSWER_BYTES``; it was not read to its end."""

    def __init__(self, limit=MAX_ANSWER_BYTES):
        self.limit = limit
        super().__init__(f"The answer is larger than {limit} bytes.")


# ----------------------------------------------------------------------
# Where requests may connect
# ----------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def parse_allowed_networks(value, strict=False):
    """The networks of the comma-separated ``value`` (CIDRs or single addresses) as a tuple.
    An entry that is not a network raises ``ValueError`` with ``strict``, else is logged and left out."""
    networks = []
    for entry in (value or "").replace("\n", ",").split(","):
        entry = entry.strip()
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            if strict:
                raise ValueError(entry) from None
            _logger.warning("%s: %r is not a network (CIDR), left out.", ALLOWED_NETWORKS_PARAMETER, entry)
    return tuple(networks)


def _refusal_kind(address):
    """Why ``address`` is not a public destination ("loopback", "private"...), or None."""
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_unspecified:
        return "unspecified"
    if address.is_reserved:
        return "reserved"
    if address.is_private:
        return "private"
    if not address.is_global:  # shared address space (carrier-grade NAT) and the like
        return "reserved"
    return None


def destination_refusal(ip, allowed_networks=()):
    """Why ``ip`` (a string or an address) may not be connected to, or None when it may: it is
    public, or inside one of ``allowed_networks``. An IPv6 address that carries an IPv4 address
    (IPv4-mapped ``::ffff:a.b.c.d``, 6to4 ``2002::/16``) is judged by that address too."""
    address = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    candidates = [address]
    if address.version == 6:
        # The carried IPv4 address first: it names the kind ("loopback" for ::ffff:127.0.0.1).
        candidates[:0] = [embedded for embedded in (address.ipv4_mapped, address.sixtofour) if embedded]
    if any(candidate in network for candidate in candidates for network in allowed_networks):
        return None
    for candidate in candidates:
        kind = _refusal_kind(candidate)
        if kind:
            return kind
    return None


def check_host(host, port, allowed_networks):
    """Resolve ``host`` and raise ``DestinationRefused`` unless every address it resolves to is
    allowed. For requests through a proxy, which connects (and resolves the name again) itself."""
    for *_socket_args, sockaddr in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
        kind = destination_refusal(sockaddr[0], allowed_networks)
        if kind:
            raise DestinationRefused(host, sockaddr[0], kind)


def open_connection(address, timeout, source_address=None, socket_options=None, *, allowed_networks):
    """``socket.create_connection`` to an allowed address only: the name is resolved once and the
    socket connects to the very address that was checked. Raises ``DestinationRefused`` when no
    address of the name is allowed, else the error of the last address tried."""
    host, port = address
    refused = error = None
    for family, kind, protocol, _name, sockaddr in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM):
        refusal = destination_refusal(sockaddr[0], allowed_networks)
        if refusal:
            refused = refused or DestinationRefused(host, sockaddr[0], refusal)
            continue
        sock = None
        try:
            sock = socket.socket(family, kind, protocol)
            for option in socket_options or ():
                sock.setsockopt(*option)
            if timeout is None or isinstance(timeout, int | float):  # else the sockets' default
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as connect_error:
            error = connect_error
            if sock is not None:
                sock.close()
    if error is not None:
        raise error
    raise refused or OSError(f"{host} resolves to no address.")


def can_send(url, kwargs, settings):
    """Whether this transport serves the request; ``settings`` are the proxies and CA bundle the
    environment sets for the URL."""
    if not DIRECT_ARGUMENTS.issuperset(kwargs):
        return False
    if settings["proxies"] and requests.utils.select_proxy(url, settings["proxies"]):
        return False
    if kwargs.get("allow_redirects", True) is not False:
        return False
    timeout = kwargs.get("timeout")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        return False
    auth = kwargs.get("auth")
    if auth is not None and not (isinstance(auth, tuple) and len(auth) == 2):
        return False
    data = kwargs.get("data")
    if data is not None and not isinstance(data, bytes | dict):
        return False
    if not isinstance(url, str) or not url.isascii():
        return False
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and "@" not in parts.netloc


def _encode(method, kwargs):
    """Headers and body as ``requests`` would send them."""
    headers = dict(DEFAULT_HEADERS)
    body = None
    content_type = None
    if kwargs.get("json") is not None and kwargs.get("data") is None:
        body = requests.compat.json.dumps(kwargs["json"], allow_nan=False).encode()
        content_type = "application/json"
    elif isinstance(kwargs.get("data"), dict):
        body = RequestEncodingMixin._encode_params(kwargs["data"]).encode()
        content_type = "application/x-www-form-urlencoded"
    elif kwargs.get("data") is not None:
        body = kwargs["data"]
    given = CaseInsensitiveDict(kwargs.get("headers") or {})
    if content_type and "Content-Type" not in given:
        headers["Content-Type"] = content_type
    if kwargs.get("auth") is not None:
        headers["Authorization"] = _basic_auth_str(*kwargs["auth"])
    headers.update(given)
    for name, value in headers.items():
        requests.utils.check_header_validity((name, value))
    if body is not None or method.upper() in ("POST", "PUT", "PATCH"):
        headers["Content-Length"] = str(len(body or b""))
    return headers, body


def _ssl_context(verify):
    """A verifying TLS context for the CA bundle ``verify`` (True: the one ``requests`` uses)."""
    cafile = verify if isinstance(verify, str) else requests.certs.where()
    with _contexts_lock:
        context = _contexts.get(cafile)
        if context is None:
            context = _contexts[cafile] = ssl.create_default_context(cafile=cafile)
        return context


def _is_dropped(connection):
    """Whether a kept-alive connection was closed by the other side (or has stray data)."""
    sock = connection.sock
    if sock is None:
        return True
    try:
        if hasattr(select, "poll"):  # select() cannot watch descriptors above 1024
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            return bool(poller.poll(0))
        readable, _writable, _errors = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


class _GuardedHTTPConnection(http.client.HTTPConnection):
    """Opens its socket with ``open_connection``: to an allowed address only."""

    def __init__(self, *args, allowed_networks, **kwargs):
        super().__init__(*args, **kwargs)
        self._create_connection = functools.partial(open_connection, allowed_networks=allowed_networks)


class _GuardedHTTPSConnection(http.client.HTTPSConnection):
    """Opens its socket with ``open_connection``; TLS then checks the certificate of the host name."""

    def __init__(self, *args, allowed_networks, **kwargs):
        super().__init__(*args, **kwargs)
        self._create_connection = functools.partial(open_connection, allowed_networks=allowed_networks)


def _connection(scheme, host, port, timeout, settings, allowed_networks):
    """A kept-alive connection of this thread to ``scheme://host:port``, opened when needed.
    (A connection opened where other networks were allowed is not used for this request.)"""
    connections = getattr(_local, "connections", None)
    if connections is None:
        connections = _local.connections = {}
    key = (scheme, host, port, allowed_networks)
    connection = connections.get(key)
    if connection is not None and _is_dropped(connection):
        connection.close()
        connection = None
    if connection is None:
        if scheme == "https":
            connection = _GuardedHTTPSConnection(
                host,
                port,
                timeout=timeout,
                context=_ssl_context(settings["verify"]),
                allowed_networks=allowed_networks,
            )
        else:
            connection = _GuardedHTTPConnection(host, port, timeout=timeout, allowed_networks=allowed_networks)
        connections[key] = connection
    connection.timeout = timeout
    if connection.sock is not None:
        connection.sock.settimeout(timeout)
    return key, connection


def close_connections():
    """Close this thread's kept-alive connections (of both paths)."""
    connections = getattr(_local, "connections", {})
    while connections:
        _key, connection = connections.popitem()
        connection.close()
    sessions = getattr(_local, "sessions", {})
    while sessions:
        _key, session = sessions.popitem()
        session.close()


def _forget(key, connection):
    connection.close()
    connections = getattr(_local, "connections", {})
    if connections.get(key) is connection:
        del connections[key]


def _decode(body, encoding):
    """The decompressed ``body``; raise ``AnswerTooLarge`` when it would pass the cap."""
    if encoding == "gzip":
        decompressors = [zlib.decompressobj(16 + zlib.MAX_WBITS)]
    elif encoding == "deflate":
        decompressors = [zlib.decompressobj(), zlib.decompressobj(-zlib.MAX_WBITS)]
    else:
        return body
    for number, decompressor in enumerate(decompressors, 1):
        try:
            # At most one byte past the cap: a small compressed bomb never expands in memory.
            content = decompressor.decompress(body, MAX_ANSWER_BYTES + 1)
        except zlib.error:
            if number == len(decompressors):
                raise
            continue
        if len(content) > MAX_ANSWER_BYTES:
            raise AnswerTooLarge()
        return content


def _read_body(answer):
    """The body of an ``http.client`` answer, at most ``MAX_ANSWER_BYTES``; ``AnswerTooLarge`` past it."""
    length = answer.getheader("Content-Length") or ""
    length = int(length) if length.strip().isdigit() else None
    if length is not None and length > MAX_ANSWER_BYTES:
        raise AnswerTooLarge()
    chunks = []
    size = 0
    while size <= MAX_ANSWER_BYTES:
        chunk = answer.read(MAX_ANSWER_BYTES + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    if size > MAX_ANSWER_BYTES:
        raise AnswerTooLarge()
    body = b"".join(chunks)
    if length is not None and size < length:  # cut short: as an unbounded read() would say
        raise http.client.IncompleteRead(body, length - size)
    return body


def send(method, url, kwargs, settings, allowed_networks=()):
    """Make the request (see ``can_send``) and return its ``requests.Response``; raise the
    ``requests`` exception of a failure. Only public addresses and ``allowed_networks`` are reached."""
    parts = urlsplit(url)
    scheme = parts.scheme
    port = parts.port or (443 if scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    headers, body = _encode(method, kwargs)
    timeout = kwargs["timeout"]
    key, connection = _connection(scheme, parts.hostname, port, timeout, settings, allowed_networks)
    connected = connection.sock is not None
    try:
        if not connected:
            connection.connect()
            connected = True
        connection.request(method.upper(), path, body=body, headers=headers)
        answer = connection.getresponse()
        content = _decode(_read_body(answer), (answer.getheader("Content-Encoding") or "").strip().lower())
    except requests.RequestException:  # refused destination, answer too large: the connection is done
        _forget(key, connection)
        raise
    except TimeoutError as error:
        _forget(key, connection)
        if not connected:
            raise requests.exceptions.ConnectTimeout(f"Connection to {parts.hostname} timed out.") from error
        raise requests.exceptions.ReadTimeout(f"Read timed out (timeout={timeout}).") from error
    except ssl.SSLError as error:
        _forget(key, connection)
        raise requests.exceptions.SSLError(str(error)) from error
    except (OSError, http.client.HTTPException, zlib.error) as error:
        _forget(key, connection)
        if not connected:
            raise requests.exceptions.ConnectionError(f"Failed to establish a new connection: {error}") from error
        raise requests.exceptions.ConnectionError(f"Connection aborted: {error!r}") from error
    if answer.will_close:
        _forget(key, connection)
    response = requests.Response()
    response.status_code = answer.status
    response.reason = answer.reason
    response.headers = CaseInsensitiveDict(answer.getheaders())
    response._content = content
    response.encoding = get_encoding_from_headers(response.headers)
    response.url = url
    return response


# ----------------------------------------------------------------------
# The other requests: through ``requests``, guarded the same way
# ----------------------------------------------------------------------


class _Refused(Exception):
    """A ``DestinationRefused`` on its way out of urllib3, which would wrap any ``OSError`` (as
    every ``requests`` exception is) into a retryable connection error."""

    def __init__(self, refused):
        self.refused = refused
        super().__init__(str(refused))


class _GuardedConnectionMixin:
    """urllib3 connections opened with ``open_connection``: to an allowed address only."""

    allowed_networks = ()

    def _new_conn(self):
        try:
            sock = open_connection(
                (self._dns_host, self.port),
                self.timeout,
                source_address=self.source_address,
                socket_options=self.socket_options,
                allowed_networks=self.allowed_networks,
            )
        except DestinationRefused as refused:
            raise _Refused(refused) from None
        # The rest as urllib3 itself maps the failures of a new connection.
        except socket.gaierror as error:
            raise urllib3.exceptions.NameResolutionError(self.host, self, error) from error
        except TimeoutError as error:
            raise urllib3.exceptions.ConnectTimeoutError(
                self, f"Connection to {self.host} timed out. (connect timeout={self.timeout})"
            ) from error
        except OSError as error:
            raise urllib3.exceptions.NewConnectionError(
                self, f"Failed to establish a new connection: {error}"
            ) from error
        return sock


class _GuardedUrllib3HTTPConnection(_GuardedConnectionMixin, urllib3.connection.HTTPConnection):
    pass


class _GuardedUrllib3HTTPSConnection(_GuardedConnectionMixin, urllib3.connection.HTTPSConnection):
    pass


class _GuardedPoolMixin:
    def __init__(self, *args, allowed_networks, **kwargs):
        super().__init__(*args, **kwargs)
        self.allowed_networks = allowed_networks

    def _new_conn(self):
        connection = super()._new_conn()
        connection.allowed_networks = self.allowed_networks
        return connection


class _GuardedHTTPConnectionPool(_GuardedPoolMixin, urllib3.HTTPConnectionPool):
    ConnectionCls = _GuardedUrllib3HTTPConnection


class _GuardedHTTPSConnectionPool(_GuardedPoolMixin, urllib3.HTTPSConnectionPool):
    ConnectionCls = _GuardedUrllib3HTTPSConnection


class GuardedAdapter(requests.adapters.HTTPAdapter):
    """A ``requests`` adapter whose connections reach public addresses and ``allowed_networks``
    only, checked when each connection (each redirect's too) is opened. Through a proxy, which
    opens the connection itself, the host is resolved and checked before the request instead."""

    def __init__(self, allowed_networks, **kwargs):
        self.allowed_networks = allowed_networks
        super().__init__(**kwargs)

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            "http": functools.partial(_GuardedHTTPConnectionPool, allowed_networks=self.allowed_networks),
            "https": functools.partial(_GuardedHTTPSConnectionPool, allowed_networks=self.allowed_networks),
        }

    def send(self, request, **kwargs):
        if requests.utils.select_proxy(request.url, kwargs.get("proxies")):
            parts = urlsplit(request.url)
            try:
                check_host(
                    parts.hostname, parts.port or (443 if parts.scheme == "https" else 80), self.allowed_networks
                )
            except socket.gaierror as error:
                raise requests.exceptions.ConnectionError(f"Failed to resolve {parts.hostname}: {error}") from error
        try:
            return super().send(request, **kwargs)
        except _Refused as refusal:
            raise refusal.refused from None


def _read_capped(response, **_kwargs):
    """Response hook: read the body now, at most ``MAX_ANSWER_BYTES`` (decompressed), so that no
    answer, not even a redirect's that ``requests`` reads before following it, is read whole."""
    length = response.headers.get("Content-Length") or ""
    chunks = []
    size = 0
    try:
        if length.strip().isdigit() and int(length) > MAX_ANSWER_BYTES:
            raise AnswerTooLarge()
        for chunk in response.iter_content(64 * 1024):
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_ANSWER_BYTES:
                raise AnswerTooLarge()
    except AnswerTooLarge:
        response.close()  # the rest of the answer is never read: the connection is not reused
        raise
    response._content = b"".join(chunks)
    response._content_consumed = True


def _session(allowed_networks):
    """This thread's ``requests`` session for ``allowed_networks``: it keeps connections alive
    between requests, and none opened under other allowed networks."""
    sessions = getattr(_local, "sessions", None)
    if sessions is None:
        sessions = _local.sessions = {}
    session = sessions.get(allowed_networks)
    if session is None:
        session = sessions[allowed_networks] = requests.Session()
        # Reading the proxy settings and CA bundle from the environment on every request costs
        # as much as the rest of the request; the caller reads them once per host instead.
        session.trust_env = False
        adapter = GuardedAdapter(allowed_networks)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        session.hooks["response"].append(_read_capped)
    return session


def request(method, url, kwargs, settings, allowed_networks=()):
    """Make one request with the arguments of ``requests.request`` (a timeout among them) and
    return its ``requests.Response``: through this module's own transport when it serves it
    (see ``can_send``), else through ``requests``. Either way only public addresses and
    ``allowed_networks`` (a tuple of ``ipaddress`` networks) are reached and the answer is capped."""
    if can_send(url, kwargs, settings):
        return send(method, url, kwargs, settings, allowed_networks)
    return _session(allowed_networks).request(method, url, **{**settings, **kwargs, "stream": True})
