"""Sending a batch of messages with their HTTP requests side by side.

A provider's ``_<provider>_send(message)`` may be a generator: instead of calling the network
itself, it *yields* an :class:`OutgoingRequest` and receives the ``requests`` response (or has the
``requests`` exception thrown into it). The dispatcher advances the generators of a whole batch
together: everything that touches the database runs in the dispatcher's own thread, and only the
network calls run in a pool of threads. A message's provider may yield several requests in turn
(a token refresh, one push per device); each waits for the answer to the previous one.
"""

import collections
import inspect
import itertools
import os
import queue
import threading
from urllib.parse import urlsplit

import requests

from . import transport
from .exceptions import SendError

# The most requests one server process has in flight at once, whatever the channels ask for.
MAX_PARALLEL_REQUESTS = 64

_ENVIRONMENT = {}
_pool_lock = threading.Lock()
_pool = None


class OutgoingRequest:
    """One HTTP request a provider wants made: the arguments of ``requests.request``."""

    __slots__ = ("kwargs", "method", "url")

    def __init__(self, method, url, **kwargs):
        if "timeout" not in kwargs:
            raise ValueError("An outgoing request needs a timeout.")
        self.method = method
        self.url = url
        self.kwargs = kwargs


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


def perform(request, allowed_networks=()):
    """Make one request; return ``(response, None)`` or ``(None, exception)``. Runs in a pool
    thread, so it touches nothing but the network. Only public addresses and ``allowed_networks``
    (the administrator's, see ``transport.ALLOWED_NETWORKS_PARAMETER``) are reached."""
    try:
        settings = _environment(request.url)
        return transport.request(request.method, request.url, request.kwargs, settings, allowed_networks), None
    except Exception as error:  # handed to the provider's generator, whatever it is
        return None, error


class _Pool:
    """The threads of one process that make requests: each takes ``(request, answers, token,
    allowed_networks)`` from the inbox, makes the request and puts ``(token, response, error)``
    into ``answers``.
    (A queue of answers per flight costs one put and one get per request, where waiting on
    futures costs a lock per request in flight at every wait.)"""

    def __init__(self, size):
        self.inbox = queue.SimpleQueue()
        self.pid = os.getpid()
        for number in range(size):
            threading.Thread(target=self._work, name=f"gobysend-send-{number}", daemon=True).start()

    def _work(self):
        while True:
            request, answers, token, allowed_networks = self.inbox.get()
            response, error = perform(request, allowed_networks)
            answers.put((token, response, error))
            del request, response, error  # keep no answer alive while waiting for the next request


def _get_pool():
    global _pool  # one pool per process, made on first use
    with _pool_lock:
        # A pool made before a fork has no threads in the child: make a new one there.
        if _pool is None or _pool.pid != os.getpid():
            _pool = _Pool(MAX_PARALLEL_REQUESTS)
        return _pool


def submit(request, answers, token, allowed_networks=()):
    """Start one request in the pool; ``(token, response, exception)`` arrives in ``answers``."""
    _get_pool().inbox.put((request, answers, token, allowed_networks))


class SendFlight:
    """The messages of one channel on their way to its provider, added a slice at a time.

    Each message's ``_<provider>_send`` generator runs in the caller's thread; the requests it
    yields go out through the pool, at most ``limit`` at once, while the caller goes on preparing
    the next slice. ``completed()`` hands back the slices whose every message has its outcome,
    oldest first; ``finish()`` waits for the rest. Providers without generators (or with a
    ``_<provider>_send_batch``) are served at once, slice by slice.

    ``send`` and ``send_batch`` are the provider's hooks; ``failure``, when given, is the
    ``SendError`` of a provider that could not start, given to every message; ``on_unexpected(key,
    error)`` turns an error that is not a ``SendError`` into one (see the channel);
    ``allowed_networks`` are the networks besides public addresses that the requests may reach.
    """

    def __init__(self, send, limit, on_unexpected, send_batch=None, failure=None, allowed_networks=()):
        self.send = send
        self.allowed_networks = allowed_networks
        self.send_batch = send_batch
        self.limit = max(1, min(limit, MAX_PARALLEL_REQUESTS))
        self.on_unexpected = on_unexpected
        self.failure = failure  # a SendError that stops every message (the provider could not start)
        self.results = {}
        self.parts = collections.deque()
        self.waiting = collections.deque()  # (key, steps, request) not yet in flight
        self.in_flight = {}  # token -> (key, steps)
        self.answers = queue.SimpleQueue()
        self.tokens = itertools.count()

    def add(self, messages):
        """Start sending ``messages`` (already handed over)."""
        self.parts.append(messages)
        if self.failure is not None:
            self.results.update(dict.fromkeys(messages.ids, self.failure))
            return
        if self.send_batch is not None:
            self.results.update(self.send_batch(messages))
            return
        for message in messages:
            try:
                outcome = self.send(message)
            except SendError as error:
                self.results[message.id] = error
                continue
            except Exception as error:  # one message's failure must not lose the others'
                self.results[message.id] = self.on_unexpected(message.id, error)
                continue
            if inspect.isgenerator(outcome):
                self._advance(message.id, outcome)
            else:
                self.results[message.id] = outcome
        self._pump()

    def _advance(self, key, steps, response=None, error=None):
        try:
            request = steps.throw(error) if error is not None else steps.send(response)
        except StopIteration as stop:
            self.results[key] = stop.value
        except SendError as send_error:
            self.results[key] = send_error
        except Exception as unexpected:  # see on_unexpected
            self.results[key] = self.on_unexpected(key, unexpected)
        else:
            if isinstance(request, OutgoingRequest):
                self.waiting.append((key, steps, request))
            else:
                steps.close()
                self.results[key] = self.on_unexpected(key, TypeError(f"{request!r} is not a request"))

    def _pump(self):
        while self.waiting and len(self.in_flight) < self.limit:
            key, steps, request = self.waiting.popleft()
            token = next(self.tokens)
            self.in_flight[token] = (key, steps)
            submit(request, self.answers, token, self.allowed_networks)

    def _collect(self, block):
        """Advance the messages whose requests were answered; with ``block``, wait for one."""
        if not self.in_flight:
            return
        while True:
            try:
                token, response, error = self.answers.get(block=block)
            except queue.Empty:
                break
            key, steps = self.in_flight.pop(token)
            self._advance(key, steps, response, error)
            block = False
        self._pump()

    def drain_waiting(self):
        """Wait until every request asked for so far is in flight (the caller's backpressure)."""
        self._collect(block=False)
        while self.waiting:
            self._collect(block=True)

    def completed(self):
        """``[(messages, {id: result})]`` of the slices done since the last call, oldest first."""
        self._collect(block=False)
        done = []
        while self.parts and all(key in self.results for key in self.parts[0].ids):
            part = self.parts.popleft()
            done.append((part, {key: self.results.pop(key) for key in part.ids}))
        return done

    def finish(self):
        """Wait for every message's outcome; return the remaining slices as ``completed`` does."""
        while self.in_flight or self.waiting:
            self._collect(block=True)
        return self.completed()
