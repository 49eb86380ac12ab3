"""Sending a batch of messages with their HTTP requests side by side.

A provider's ``_<provider>_send(message)`` may be a generator: instead of calling the network
itself, it *yields* an :class:`OutgoingRequest` and receives the ``requests`` response (or has the
``requests`` exception thrown into it). The dispatcher advances the generators of a whole batch
together: everything that touches the database runs in the dispatcher's own thread, and only the
network calls run in a pool of threads. A message's provider may yield several requests in turn
(a token refresh, one push per device); each waits for the answer to the previous one.
"""

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import requests

# The most requests one server process has in flight at once, whatever the channels ask for.
MAX_PARALLEL_REQUESTS = 64

_local = threading.local()
_ENVIRONMENT = {}
_executor_lock = threading.Lock()
_executor = None
_executor_pid = None


class OutgoingRequest:
    """One HTTP request a provider wants made: the arguments of ``requests.request``."""

    __slots__ = ("kwargs", "method", "url")

    def __init__(self, method, url, **kwargs):
        if "timeout" not in kwargs:
            raise ValueError("An outgoing request needs a timeout.")
        self.method = method
        self.url = url
        self.kwargs = kwargs


def _session():
    # One session per pool thread: it keeps connections to the provider alive between requests.
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
        # Reading the proxy settings and CA bundle from the environment on every request costs
        # as much as the rest of the request; they are read once per host instead (_environment).
        session.trust_env = False
    return session


def _environment(url):
    """The proxies and CA bundle the process environment sets for ``url``, read once per host."""
    key = urlsplit(url)[:2]
    settings = _ENVIRONMENT.get(key)
    if settings is None:
        settings = _ENVIRONMENT[key] = {
            "proxies": requests.utils.get_environ_proxies(url),
            "verify": os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True,
        }
    return settings


def _perform(request):
    """Make one request; return ``(response, None)`` or ``(None, exception)``. Runs in a pool
    thread, so it touches nothing but the network."""
    try:
        kwargs = dict(_environment(request.url), **request.kwargs)
        return _session().request(request.method, request.url, **kwargs), None
    except requests.RequestException as error:
        return None, error


def _get_executor():
    global _executor, _executor_pid  # one pool per process, made on first use
    with _executor_lock:
        # A pool made before a fork has no threads in the child: make a new one there.
        if _executor is None or _executor_pid != os.getpid():
            _executor = ThreadPoolExecutor(MAX_PARALLEL_REQUESTS, thread_name_prefix="gobysend-send")
            _executor_pid = os.getpid()
        return _executor


def perform_all(outgoing, max_parallel):
    """Make every request of ``outgoing``, at most ``max_parallel`` at a time; return their
    ``(response, exception)`` pairs in the same order."""
    if len(outgoing) <= 1 or max_parallel <= 1:
        return [_perform(request) for request in outgoing]
    executor = _get_executor()
    slots = threading.BoundedSemaphore(min(max_parallel, MAX_PARALLEL_REQUESTS))

    def perform_in_slot(request):
        try:
            return _perform(request)
        finally:
            slots.release()

    futures = []
    for request in outgoing:
        slots.acquire()
        futures.append(executor.submit(perform_in_slot, request))
    return [future.result() for future in futures]
