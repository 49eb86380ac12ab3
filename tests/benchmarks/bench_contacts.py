#!/usr/bin/env python3
"""Contacts at scale. Run by hand:

    python3 tests/benchmarks/bench_contacts.py [--contacts 100000] [--import-rows 1000000]

It creates a scratch database ``gobysend_bench_contacts_*`` (both addons, no demo data) and
times, in one run and one process (the service the tracking API calls, as the API's ``/batch``
does, committing after each batch as a request would):

(a) the anchor: Odoo's own batched ``res.partner.create`` of ``--contacts`` bare partners (name,
    email, phone; no subscription, no attribute) in batches of 500, with Odoo's default context;
(b) identify of as many new contacts (customer id, email, phone, name and 5 attributes) in
    batches of 500 (``gobysend.ingest.batch``);
(c) identify of the same contacts again: all updates, half of them changing one attribute; right
    after their creation, then again after a VACUUM ANALYZE (the state a later sync finds);
(d) the import of a CSV file of ``--import-rows`` rows through the background jobs the import
    wizard queues, run by ``--import-workers`` queue_job workers at once (one per core unless
    told; each a separate process taking the pending jobs as the job runner hands them out, so
    that its peak memory is its own).

It prints the figures next to the targets and drops the scratch database unless ``--keep``.
Targets: (b) no slower than (a), toward 3,000 contacts/s; (c) >= 5,000 contacts/s;
(d) 1,000,000 rows in <= 10 minutes with the worker's memory <= 1 GiB.
"""

import argparse
import csv
import os
import resource
import subprocess
import sys
import tempfile
import time

from benchlib import addons_path, create_database, drop_database, vacuum_analyze

import odoo
from odoo import SUPERUSER_ID, api
from odoo.modules.registry import Registry

BATCH = 500
TARGET_NEW_PER_SECOND = 3000
TARGET_UPDATES_PER_SECOND = 5000
TARGET_IMPORT_SECONDS = 600
TARGET_IMPORT_RSS_MIB = 1024
TIERS = ("bronze", "silver", "gold", "platinum")


def contact_payload(number, tier_shift=0):
    return {
        "type": "identify",
        "id": f"C-{number}",
        "email": f"customer-{number}@example.com",
        "phone": f"+8491{number:07d}",
        "attributes": {
            "name": f"Customer {number}",
            "tier": TIERS[(number + tier_shift) % len(TIERS)],
            "points": number % 5000,
            "vip": number % 7 == 0,
            "signup": f"20{10 + number % 15}-0{1 + number % 9}-1{number % 10}",
            "city_code": f"HN-{number % 30}",
        },
    }


def timed_batches(registry, batches, run):
    """Run ``run(env, batch)`` on each batch in its own committed transaction; return seconds."""
    started = time.perf_counter()
    for batch in batches:
        with registry.cursor() as cr:
            run(api.Environment(cr, SUPERUSER_ID, {}), batch)
    return time.perf_counter() - started


def chunks(items, size):
    return [items[start : start + size] for start in range(0, len(items), size)]


def bench_anchor(registry, count, prefix, context):
    """Odoo's batched ``res.partner.create`` of ``count`` bare partners, with ``context``."""
    vals = [
        {"name": f"Anchor {n}", "email": f"{prefix}-{n}@example.com", "phone": f"+849{prefix[-1]}{n:07d}"}
        for n in range(count)
    ]
    return timed_batches(
        registry, chunks(vals, BATCH), lambda env, batch: env["res.partner"].with_context(**context).create(batch)
    )


def bench_identify(registry, workspace_id, payloads):
    failures = []

    def run(env, batch):
        results = env["gobysend.ingest"].batch(env["gobysend.workspace"].browse(workspace_id), batch)
        failures.extend(result for result in results if result["status"] != "ok")

    elapsed = timed_batches(registry, chunks(payloads, BATCH), run)
    if failures:
        raise SystemExit(f"{len(failures)} items failed, e.g. {failures[:3]}")
    return elapsed


def write_csv(path, rows, first):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["customer_id", "email", "phone", "name", "tier", "points", "vip", "signup", "email_consent"])
        for number in range(first, first + rows):
            writer.writerow(
                [
                    f"I-{number}",
                    f"import-{number}@example.com",
                    f"+8493{number:07d}",
                    f"Imported {number}",
                    TIERS[number % len(TIERS)],
                    number % 5000,
                    "yes" if number % 7 == 0 else "no",
                    f"20{10 + number % 15}-0{1 + number % 9}-1{number % 10}",
                    "yes" if number % 10 else "no",
                ]
            )


# One queue_job worker: it takes the import's pending jobs one at a time, as the job runner
# hands them out (by priority, then the oldest first; a job another worker holds is skipped),
# runs each in its own transaction and commits. A job that asks to be retried, or that
# PostgreSQL aborts on a concurrent update, is rolled back and stays pending; so is a pick that
# meets a job changed since the pick's snapshot. It stops when the import has ended.
IMPORT_WORKER = """
import sys, time
import psycopg2
import odoo
from odoo import SUPERUSER_ID, api
from odoo.modules.registry import Registry
from odoo.service.model import PG_CONCURRENCY_EXCEPTIONS_TO_RETRY
odoo.tools.config.parse_config(["--addons-path=" + sys.argv[2], "--log-level=warn"])
registry = Registry(sys.argv[1])
import_id = int(sys.argv[3])
from odoo.addons.queue_job.exception import RetryableJobError
from odoo.addons.queue_job.job import Job
started = time.time()
retried = 0
while True:
    with registry.cursor() as cr:
        try:
            cr.execute(
                "SELECT uuid FROM queue_job WHERE model_name = 'gobysend.contact.import' AND state = 'pending' "
                "ORDER BY priority, date_created, id LIMIT 1 FOR UPDATE SKIP LOCKED"
            )
        except PG_CONCURRENCY_EXCEPTIONS_TO_RETRY:
            # Another worker changed the job since this transaction's snapshot: look again.
            cr.rollback()
            continue
        row = cr.fetchone()
        if not row:
            cr.execute("SELECT state FROM gobysend_contact_import WHERE id = %s", (import_id,))
            if cr.fetchone()[0] in ("done", "failed"):
                break
            time.sleep(0.1)  # another worker's job may queue more
            continue
        env = api.Environment(cr, SUPERUSER_ID, {})
        try:
            Job.load(env, row[0]).perform()
            env.flush_all()
        except (RetryableJobError, *PG_CONCURRENCY_EXCEPTIONS_TO_RETRY):
            cr.rollback()
            retried += 1
            time.sleep(0.5)
            continue
        cr.execute("UPDATE queue_job SET state = 'done' WHERE uuid = %s", (row[0],))
# The peak of this process's own memory (VmHWM, in KiB): getrusage's ru_maxrss would count the
# parent's resident memory too, which Linux carries over through fork and exec.
with open("/proc/self/status") as status:
    peak_kib = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
print(started, time.time(), peak_kib, retried)
"""


def bench_import(registry, dbname, workspace_id, rows, directory, workers):
    path = os.path.join(directory, "customers.csv")
    write_csv(path, rows, 0)
    size = os.path.getsize(path)
    columns = [
        {"index": 0, "header": "customer_id", "target": "id"},
        {"index": 1, "header": "email", "target": "email"},
        {"index": 2, "header": "phone", "target": "phone"},
        {"index": 3, "header": "name", "target": "name"},
        {"index": 4, "header": "tier", "target": "attribute", "key": "tier", "type": "string"},
        {"index": 5, "header": "points", "target": "attribute", "key": "points", "type": "number"},
        {"index": 6, "header": "vip", "target": "attribute", "key": "vip", "type": "boolean"},
        {"index": 7, "header": "signup", "target": "attribute", "key": "signup", "type": "date"},
        {"index": 8, "header": "email_consent", "target": "consent", "channel": "email"},
    ]
    with open(path, "rb") as handle:
        raw = handle.read()
    with registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        # What the wizard's Import button does once the file is uploaded.
        contact_import = env["gobysend.contact.import"]._create_import(
            env["gobysend.workspace"].browse(workspace_id), "customers.csv", raw, columns
        )
        import_id = contact_import.id
    del raw
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", IMPORT_WORKER, dbname, addons_path(), str(import_id)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _worker in range(workers)
    ]
    reports = []
    for process in processes:
        stdout, stderr = process.communicate()
        if process.returncode:
            raise SystemExit("An import worker failed:\n" + stderr[-4000:])
        reports.append([float(value) for value in stdout.strip().splitlines()[-1].split()])
    # From the first worker ready to the last one done; the memory of the biggest worker.
    elapsed = max(report[1] for report in reports) - min(report[0] for report in reports)
    max_rss_kib = max(report[2] for report in reports)
    retried = int(sum(report[3] for report in reports))
    with registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        done = env["gobysend.contact.import"].browse(import_id)
        stored = env["gobysend.subscription"].search_count([("workspace_id", "=", workspace_id)])
        summary = (done.state, done.rows_done, done.rows_total, done.rows_rejected, stored)
    return elapsed, max_rss_kib / 1024, size, summary, retried


def verdict(ok):
    return "met" if ok else "MISSED"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--contacts", type=int, default=100_000)
    parser.add_argument("--import-rows", type=int, default=1_000_000, help="0 skips the import")
    parser.add_argument(
        "--import-workers",
        type=int,
        default=os.cpu_count(),
        help="queue_job workers running the import's chunks at once (default: one per core)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()
    odoo.tools.config.parse_config([f"--addons-path={addons_path()}", "--log-level=warn"])
    dbname = f"gobysend_bench_contacts_{int(time.time())}"
    print(f"Creating {dbname} ...", flush=True)
    create_database(dbname)
    try:
        registry = Registry(dbname)
        with registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            workspace_id = (
                env["gobysend.workspace"].create({"name": "Benchmark", "country_id": env.ref("base.vn").id}).id
            )
        count = args.contacts
        anchor = bench_anchor(registry, count, "anchor2", {})
        print(f"(a) res.partner.create, {count:,} bare partners: {anchor:.1f} s, {count / anchor:,.0f}/s", flush=True)
        # The same with the context identify creates its partners in (no chatter work on creation).
        quiet = bench_anchor(
            registry,
            count,
            "quiet4",
            {"mail_create_nolog": True, "mail_create_nosubscribe": True, "tracking_disable": True},
        )
        print(f"    the same without the chatter's creation work: {quiet:.1f} s, {count / quiet:,.0f}/s", flush=True)
        new_payloads = [contact_payload(n) for n in range(count)]
        created = bench_identify(registry, workspace_id, new_payloads)
        print(f"(b) identify, {count:,} new contacts: {created:.1f} s, {count / created:,.0f}/s", flush=True)
        update_payloads = [contact_payload(n, tier_shift=n % 2) for n in range(count)]
        updated = bench_identify(registry, workspace_id, update_payloads)
        print(
            f"(c) identify, {count:,} known contacts, right after their creation: {updated:.1f} s, "
            f"{count / updated:,.0f}/s",
            flush=True,
        )
        # A list is synced again later in the day, not seconds after its first load: by then
        # autovacuum has visited the new rows, as VACUUM does here. Half the contacts change again.
        vacuum_analyze(dbname)
        settled_payloads = [contact_payload(n, tier_shift=2 * (n % 2)) for n in range(count)]
        settled = bench_identify(registry, workspace_id, settled_payloads)
        print(
            f"    the same after the database's maintenance (VACUUM ANALYZE): {settled:.1f} s, "
            f"{count / settled:,.0f}/s",
            flush=True,
        )
        with registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            subscribed = env["gobysend.subscription"].search_count([("workspace_id", "=", workspace_id)])
            values = env["gobysend.attribute.value"].search_count([("workspace_id", "=", workspace_id)])
        print(f"    stored: {subscribed:,} subscriptions, {values:,} attribute values")
        imported = None
        if args.import_rows:
            with tempfile.TemporaryDirectory() as directory:
                imported = bench_import(
                    registry, dbname, workspace_id, args.import_rows, directory, args.import_workers
                )
            elapsed, rss, size, summary, retried = imported
            print(
                f"(d) import of a {args.import_rows:,}-row CSV ({size / 2**20:.0f} MiB) in the background jobs, "
                f"{args.import_workers} worker(s): {elapsed:.1f} s, {args.import_rows / elapsed:,.0f} rows/s, "
                f"worker peak RSS {rss:,.0f} MiB; jobs retried: {retried}; "
                f"state, done, total, rejected, subscriptions: {summary}",
                flush=True,
            )
        print("\nTargets:")
        print(
            f"  (b) {count / created:,.0f}/s vs anchor {count / anchor:,.0f}/s: no slower {verdict(created <= anchor)}"
        )
        print(f"      toward {TARGET_NEW_PER_SECOND:,}/s: {verdict(count / created >= TARGET_NEW_PER_SECOND)}")
        for label, elapsed in (("right after the creation", updated), ("after maintenance", settled)):
            print(
                f"  (c) {label}: {count / elapsed:,.0f}/s (target >= {TARGET_UPDATES_PER_SECOND:,}/s) "
                f"{verdict(count / elapsed >= TARGET_UPDATES_PER_SECOND)}"
            )
        if imported:
            elapsed, rss, _size, _summary, _retried = imported
            projected = elapsed * 1_000_000 / args.import_rows
            print(
                f"  (d) {elapsed:.0f} s for {args.import_rows:,} rows, {projected:.0f} s projected linearly for 1M "
                f"(target <= {TARGET_IMPORT_SECONDS} s) {verdict(projected <= TARGET_IMPORT_SECONDS)}; "
                f"peak RSS {rss:,.0f} MiB (target <= {TARGET_IMPORT_RSS_MIB} MiB) "
                f"{verdict(rss <= TARGET_IMPORT_RSS_MIB)}"
            )
        print(f"  (this process's peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB)")
    finally:
        if args.keep:
            print(f"Kept database {dbname}")
        else:
            Registry.delete(dbname)
            drop_database(dbname)
            print(f"Dropped database {dbname}")


if __name__ == "__main__":
    main()
