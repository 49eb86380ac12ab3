#!/usr/bin/env python3
"""Throughput and latency of the tracking API on a real multi-worker Odoo server. Run by hand:

    python3 tests/benchmarks/bench_ingest.py [--events 100000] [--single-events 5000] [--threads 4]

It creates a scratch database ``gobysend_bench_*`` (both addons, no demo data), starts Odoo
with two HTTP workers on it, creates a workspace, an API key and 1000 contacts (through
``/batch`` identify), then sends track events in batches of 1, 100 and 500 per request from a
small pool of client threads, prints events/s and request latency percentiles per batch size,
and drops the scratch database. The client runs on the same machine as the server and
PostgreSQL, so on a small machine they compete for the same cores.

Odoo runs with its defaults apart from ``-d <db> --workers=2 --max-cron-threads=0`` and free
ports; ``--db-filter`` is left out unless asked for (see ``--help``). The benchmark workspace's
API rate limit is raised, as the default 6000 requests a minute would throttle the one-event run.

Targets: at least 3,000 events/s with batches of 500, and p95 <= 50 ms for a one-event request.
"""

import argparse
import http.client
import itertools
import json
import os
import threading
import time
import uuid

from benchlib import (
    ADDONS,
    addons_path,
    create_database,
    load_fixtures,
    percentile,
    release_database,
    stop_server,
)

API_ROOT = "/gobysend/api/v1"
REQUEST_TIMEOUT = 60
TARGET_EVENTS_PER_SECOND = 3000  # with batches of 500
TARGET_SINGLE_P95_MS = 50
WARMUP_EVENTS = 200  # one per request, not measured


class Client:
    """One keep-nothing HTTP client per thread: plain http.client keeps the client's own CPU
    cost low, which matters when client and server share the machine."""

    def __init__(self, port, key):
        self.port = port
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def post(self, path, body):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT)
        try:
            connection.request("POST", API_ROOT + path, body=body, headers=self.headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()


def make_events(count, contacts, prefix):
    names = ("product_viewed", "cart_updated", "order_completed", "search", "coupon_applied")
    for number in range(count):
        yield {
            "type": "track",
            "id": f"C-{number % contacts}",
            "name": names[number % len(names)],
            "properties": {"sku": f"SKU-{number % 977}", "price": 199000 + number % 50, "currency": "VND"},
            "message_id": f"{prefix}-{number}",
        }


def run_load(port, key, bodies, threads, path):
    """Send the prepared request bodies from ``threads`` threads; return (wall seconds, latencies, failures)."""
    latencies = []
    failures = []
    lock = threading.Lock()
    next_index = itertools.count()

    def worker():
        client = Client(port, key)
        own = []
        for _attempt in range(len(bodies)):  # bounded: never more than the bodies there are
            index = next(next_index)
            if index >= len(bodies):
                break
            body, expected = bodies[index]
            started = time.perf_counter()
            status, answer = client.post(path, body)
            own.append(time.perf_counter() - started)
            if status != 200:
                failures.append((status, answer[:300]))
            elif expected is not None and json.loads(answer).get("accepted") != expected:
                failures.append((status, answer[:300]))
        with lock:
            latencies.extend(own)

    pool = [threading.Thread(target=worker, daemon=True) for _ in range(threads)]
    started = time.perf_counter()
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=3600)
    return time.perf_counter() - started, sorted(latencies), failures


def prepare(batch_size, events, contacts, prefix):
    items = list(make_events(events, contacts, prefix))
    if batch_size == 1:
        # A one-event request goes to /track, as a client tracking live activity would send it.
        return "/track", [(json.dumps({k: v for k, v in item.items() if k != "type"}).encode(), None) for item in items]
    return "/batch", [
        (json.dumps({"batch": items[start : start + batch_size]}).encode(), len(items[start : start + batch_size]))
        for start in range(0, len(items), batch_size)
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="events per batched run (default 100000)")
    parser.add_argument("--single-events", type=int, default=5000, help="events sent one per request (default 5000)")
    parser.add_argument("--batch-sizes", default="1,100,500")
    parser.add_argument("--threads", type=int, default=4, help="concurrent client threads (default 4)")
    parser.add_argument("--contacts", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2, help="Odoo HTTP workers (default 2)")
    parser.add_argument(
        "--db-filter",
        action="store_true",
        help="start Odoo with --db-filter as well as -d; Odoo then lists the databases from PostgreSQL on every "
        "request without a session, which costs each API request a few milliseconds",
    )
    parser.add_argument("--template", help="copy this already-installed database instead of installing afresh")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the scratch database at the end")
    args = parser.parse_args()
    batch_sizes = [int(size) for size in args.batch_sizes.split(",")]

    fixtures = load_fixtures()
    database = f"gobysend_bench_{int(time.time())}_{os.getpid()}"
    print(f"Scratch database {database}: {'copying ' + args.template if args.template else 'installing ' + ADDONS}...")
    started = time.perf_counter()
    create_database(database, args.template)
    print(f"  ready in {time.perf_counter() - started:.0f}s")
    server = None
    try:
        server = fixtures.OdooServer(database, addons_path(), workers=args.workers, db_filter=args.db_filter).start()
        admin = fixtures.Rpc(server.base_url, database, "admin", "admin")
        # The default limit (6000 requests a minute per key) would throttle the one-event run.
        workspace_id = admin.call("gobysend.workspace", "create", {"name": "Benchmark", "api_rate_limit": 100_000_000})
        key = admin.call("gobysend.workspace", "api_key_create", [workspace_id], "Benchmark")

        identify = [
            {"type": "identify", "id": f"C-{n}", "email": f"bench-{n}@example.com", "attributes": {"tier": "gold"}}
            for n in range(args.contacts)
        ]
        bodies = [
            (json.dumps({"batch": identify[i : i + 500]}).encode(), len(identify[i : i + 500]))
            for i in range(0, len(identify), 500)
        ]
        elapsed, _latencies, failures = run_load(server.port, key, bodies, 1, "/batch")
        if failures:
            raise SystemExit(f"Creating contacts failed: {failures[:3]}")
        print(f"{args.contacts} contacts created through /batch identify in {elapsed:.1f}s")

        # Warm up every worker (each loads the API app on its first request).
        warmup_path, warmup = prepare(1, WARMUP_EVENTS, args.contacts, f"warmup-{uuid.uuid4().hex[:6]}")
        run_load(server.port, key, warmup, args.threads, warmup_path)

        cpus = os.cpu_count()
        print()
        flags = f"-d {database}" + (" --db-filter" if args.db_filter else " (no --db-filter)")
        print(
            f"Odoo: {args.workers} HTTP workers, {flags}, --max-cron-threads=0, defaults otherwise "
            f"(limit-time-real, limit-request...).\nClient: {args.threads} threads on the same machine: {cpus} CPU "
            "cores shared by the client, Odoo and PostgreSQL."
        )
        print(
            f"{'batch':>6} {'events':>8} {'requests':>9} {'events/s':>9} {'req/s':>7} "
            f"{'p50 ms':>7} {'p95 ms':>7} {'max ms':>7}"
        )
        results = {}
        for batch_size in batch_sizes:
            events = args.single_events if batch_size == 1 else args.events
            path, bodies = prepare(batch_size, events, args.contacts, f"b{batch_size}-{uuid.uuid4().hex[:6]}")
            elapsed, latencies, failures = run_load(server.port, key, bodies, args.threads, path)
            if failures:
                print(f"  {len(failures)} failed requests with batch size {batch_size}, e.g. {failures[:2]}")
            p50, p95 = percentile(latencies, 0.5) * 1000, percentile(latencies, 0.95) * 1000
            results[batch_size] = (events / elapsed, p50, p95)
            print(
                f"{batch_size:>6} {events:>8} {len(bodies):>9} {events / elapsed:>9.0f} {len(bodies) / elapsed:>7.0f} "
                f"{p50:>7.1f} {p95:>7.1f} {latencies[-1] * 1000:>7.1f}"
            )
        if 1 in batch_sizes and args.single_events != args.events:
            print(f"(batch size 1 sends {args.single_events} events, one request each, to /track)")

        stored = admin.call("gobysend.event", "search_count", [("workspace_id", "=", workspace_id)])
        expected = WARMUP_EVENTS + sum(args.single_events if size == 1 else args.events for size in batch_sizes)
        print(f"\nEvents stored: {stored} (expected {expected})")
        print("Targets:")
        if 500 in results:
            rate = results[500][0]
            verdict = "met" if rate >= TARGET_EVENTS_PER_SECOND else "MISSED"
            print(f"  batches of 500: {rate:,.0f} events/s (target >= {TARGET_EVENTS_PER_SECOND:,}) {verdict}")
        if 1 in results:
            p95 = results[1][2]
            verdict = "met" if p95 <= TARGET_SINGLE_P95_MS else "MISSED"
            print(f"  one event per request: p95 {p95:.1f} ms (target <= {TARGET_SINGLE_P95_MS} ms) {verdict}")
    finally:
        if server:
            stop_server(server)
        release_database(database, args.keep_db)


if __name__ == "__main__":
    main()
