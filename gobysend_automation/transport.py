"""A lean HTTP/1.1 transport for the providers' requests.

``requests`` spends about a millisecond of CPU per request on what a provider call never needs
(cookie jars, hooks, redirect handling, adapters, urllib3's retry machinery), which is more than
everything else the dispatcher does for a message. The requests made most often (a JSON or form
body, headers, basic auth, a timeout, no redirects followed, no proxy) are therefore sent with
the standard library's ``http.client`` over kept-alive connections, one set per thread, and
answered with a ``requests.Response``, so providers read the answer as they always did. Errors are
raised as the ``requests`` exceptions of the same failures. Every other request (query
parameters, redirects to follow, a proxy, anything unusual) goes through ``requests``.
"""

import http.client
import select
import ssl
import threading
import zlib
from urllib.parse import urlsplit

import requests
from requests.auth import _basic_auth_str
from requests.models import RequestEncodingMixin
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers

# The arguments of ``requests.request`` this transport serves itself.
DIRECT_ARGUMENTS = frozenset({"headers", "data", "json", "auth", "timeout", "allow_redirects"})
DEFAULT_HEADERS = {"Accept": "*/*", "Connection": "keep-alive"}

_local = threading.local()
_contexts = {}
_contexts_lock = threading.Lock()


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


def _connection(scheme, host, port, timeout, settings):
    """A kept-alive connection of this thread to ``scheme://host:port``, opened when needed."""
    connections = getattr(_local, "connections", None)
    if connections is None:
        connections = _local.connections = {}
    key = (scheme, host, port)
    connection = connections.get(key)
    if connection is not None and _is_dropped(connection):
        connection.close()
        connection = None
    if connection is None:
        if scheme == "https":
            connection = http.client.HTTPSConnection(
                host, port, timeout=timeout, context=_ssl_context(settings["verify"])
            )
        else:
            connection = http.client.HTTPConnection(host, port, timeout=timeout)
        connections[key] = connection
    connection.timeout = timeout
    if connection.sock is not None:
        connection.sock.settimeout(timeout)
    return key, connection


def close_connections():
    """Close this thread's kept-alive connections."""
    connections = getattr(_local, "connections", {})
    while connections:
        _key, connection = connections.popitem()
        connection.close()


def _forget(key, connection):
    connection.close()
    connections = getattr(_local, "connections", {})
    if connections.get(key) is connection:
        del connections[key]


def _decode(body, encoding):
    if encoding == "gzip":
        return zlib.decompress(body, 16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        try:
            return zlib.decompress(body)
        except zlib.error:
            return zlib.decompress(body, -zlib.MAX_WBITS)
    return body


def send(method, url, kwargs, settings):
    """Make the request (see ``can_send``) and return its ``requests.Response``; raise the
    ``requests`` exception of a failure."""
    parts = urlsplit(url)
    scheme = parts.scheme
    port = parts.port or (443 if scheme == "https" else 80)
    path = parts.path or "/"
    if parts.query:
        path = f"{path}?{parts.query}"
    headers, body = _encode(method, kwargs)
    timeout = kwargs["timeout"]
    key, connection = _connection(scheme, parts.hostname, port, timeout, settings)
    connected = connection.sock is not None
    try:
        if not connected:
            connection.connect()
            connected = True
        connection.request(method.upper(), path, body=body, headers=headers)
        answer = connection.getresponse()
        content = _decode(answer.read(), (answer.getheader("Content-Encoding") or "").strip().lower())
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
