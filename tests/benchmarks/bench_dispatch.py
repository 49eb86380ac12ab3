#!/usr/bin/env python3
"""Dispatch throughput of the outbox on a real multi-worker Odoo running queue_job. Run by hand:

    python3 tests/benchmarks/bench_dispatch.py [--messages 100000] [--workers 1,2] [--contacts 1000]

It creates a scratch database ``gobysend_bench_*`` (both addons, no demo data), a workspace
without caps or quiet hours, subscribed contacts, and two channels: a webhook to a local HTTP
sink that answers every request after 20 ms, and Odoo email to a local SMTP sink. For each
number of workers it starts Odoo with that many HTTP workers and the queue_job runner
(``--load=base,web,queue_job``, ``ODOO_QUEUE_JOB_CHANNELS=root:<workers>``), queues
``--messages`` messages on a channel by SQL, starts the dispatch as the scheduler would, and
times until every message has its outcome. The sinks count what they receive per message id,
so a message delivered twice shows up as a duplicate.

In the same run, the same number of emails is put into Odoo's own mail queue (``mail.mail``,
state outgoing, one recipient each) and drained by ``mail.mail.process_email_queue`` to the same
SMTP sink, one batch after another as Odoo's mail scheduler does it.

Targets: at least 1,000 messages/s to the HTTP sink with 2 workers, email at least twice as fast
as Odoo's own mail queue, and no duplicates.
"""

import argparse
import os
import time
import uuid

from benchlib import ADDONS, addons_path, create_database, load_fixtures, release_database, stop_server
from sinks import Sink

import odoo
from odoo import SUPERUSER_ID, api

HTTP_SINK_DELAY = 0.020
TARGET_HTTP_PER_SECOND = 1000  # with 2 workers
TARGET_EMAIL_VS_ODOO = 2.0
POLL_SECONDS = 0.5


def open_registry(database, addons):
    odoo.tools.config.parse_config(["-d", database, f"--addons-path={addons}", "--log-level=warn"])
    return odoo.modules.registry.Registry(database)


def set_up(registry, contacts, http_port, smtp_port):
    """Workspace, contacts, mail server and the two channels; returns their ids."""
    with registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {"tracking_disable": True})
        # The HTTP sink listens on this machine: an administrator's choice to allow it.
        env["ir.config_parameter"].set_param("gobysend.outbound_allowed_networks", "127.0.0.0/8")
        env["ir.mail_server"].create(
            {"name": "Sink", "smtp_host": "127.0.0.1", "smtp_port": smtp_port, "smtp_encryption": "none"}
        )
        workspace = env["gobysend.workspace"].create(
            {
                "name": "Benchmark",
                "tz": "UTC",
                "quiet_hours_start": 0,
                "quiet_hours_end": 0,
                "frequency_cap_daily": 0,
                "frequency_cap_weekly": 0,
                "token_balance": 10**9,
            }
        )
        partners = env["res.partner"].create(
            [{"name": f"Contact {n}", "email": f"contact-{n}@example.com"} for n in range(contacts)]
        )
        env["gobysend.subscription"].create([{"workspace_id": workspace.id, "partner_id": p.id} for p in partners])
        common = {"workspace_id": workspace.id, "state": "enabled", "rate_limit": 0, "token_cost": 1}
        webhook = env["gobysend.channel"].create(
            dict(
                common,
                name="Webhook sink",
                channel_type="webhook",
                provider="webhook",
                webhook_url=f"http://127.0.0.1:{http_port}/hook",
            )
        )
        email = env["gobysend.channel"].create(
            dict(common, name="Email sink", channel_type="email", provider="email", sender="shop@example.com")
        )
        return workspace.id, partners.ids, {"http": webhook.id, "email": email.id}


def enqueue(registry, workspace_id, channel_id, channel_type, partner_ids, count):
    """Queue ``count`` messages on the channel, round-robin over the contacts, as ``_enqueue``
    would store them (one INSERT: the benchmark times the dispatch, not the enqueueing)."""
    tag = uuid.uuid4().hex[:8]
    with registry.cursor() as cr:
        cr.execute(
            """
            INSERT INTO gobysend_message (workspace_id, partner_id, channel_id, channel_type, state,
                                          subject_template, body_template, render_context, attempts,
                                          next_attempt_at, token_cost, idempotency_key, is_test,
                                          create_uid, create_date, write_uid, write_date)
            SELECT %(workspace)s, (%(partners)s::int[])[n %% %(contacts)s + 1], %(channel)s, %(type)s, 'queued',
                   'Hi {{ contact.name }}', %(body)s, '{}'::jsonb, 0,
                   now() at time zone 'UTC' - interval '1 second', 1, %(tag)s || '-' || n, false,
                   1, now() at time zone 'UTC', 1, now() at time zone 'UTC'
              FROM generate_series(0, %(count)s - 1) n
            """,
            {
                "workspace": workspace_id,
                "partners": partner_ids,
                "contacts": len(partner_ids),
                "channel": channel_id,
                "type": "email" if channel_type == "email" else "webhook",
                "body": "<p>Hello {{ contact.name }}, our sale starts today.</p>"
                if channel_type == "email"
                else "Hello {{ contact.name }}, our sale starts today.",
                "tag": tag,
                "count": count,
            },
        )


def pending(registry, channel_id):
    with registry.cursor() as cr:
        cr.execute(
            "SELECT count(*) FROM gobysend_message WHERE channel_id = %s AND state IN ('queued', 'sending')",
            (channel_id,),
        )
        return cr.fetchone()[0]


def outcomes(registry, channel_id):
    with registry.cursor() as cr:
        cr.execute("SELECT state, count(*) FROM gobysend_message WHERE channel_id = %s GROUP BY state", (channel_id,))
        return dict(cr.fetchall())


def run_pipeline(registry, channel_id, sink, timeout):
    """Start the dispatch as the scheduler does and wait for every message's outcome."""
    sink.reset()
    started = time.perf_counter()
    with registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        env["gobysend.message"]._cron_dispatch()
    deadline = started + timeout
    while pending(registry, channel_id):
        if time.perf_counter() > deadline:
            raise SystemExit(f"Dispatch did not finish within {timeout}s.")
        time.sleep(POLL_SECONDS)
    return time.perf_counter() - started


def fill_odoo_mail_queue(registry, partner_ids, count):
    """``count`` outgoing ``mail.mail`` with one recipient each, like a mass mailing leaves them."""
    tag = uuid.uuid4().hex[:8]
    with registry.cursor() as cr:
        cr.execute(
            """
            INSERT INTO mail_message (message_type, subject, body, email_from, message_id, date,
                                      create_uid, create_date, write_uid, write_date)
            SELECT 'email_outgoing', 'Hi ' || partner.name,
                   '<p>Hello ' || partner.name || ', our sale starts today.</p>', 'shop@example.com',
                   '<odoo-bench-' || %(tag)s || '-' || n || '@example.com>', now() at time zone 'UTC',
                   1, now() at time zone 'UTC', 1, now() at time zone 'UTC'
              FROM generate_series(0, %(count)s - 1) n
              JOIN res_partner partner ON partner.id = (%(partners)s::int[])[n %% %(contacts)s + 1]
            """,
            {"tag": tag, "count": count, "partners": partner_ids, "contacts": len(partner_ids)},
        )
        cr.execute(
            """
            INSERT INTO mail_mail (mail_message_id, body_html, state, auto_delete, is_notification, headers,
                                   create_uid, create_date, write_uid, write_date)
            SELECT id, body, 'outgoing', false, false,
                   '{"X-Gobysend-Message-Id": "' || message_id || '"}',
                   1, now() at time zone 'UTC', 1, now() at time zone 'UTC'
              FROM mail_message WHERE message_id LIKE %(pattern)s
            """,
            {"pattern": f"<odoo-bench-{tag}-%"},
        )
        cr.execute(
            """
            INSERT INTO mail_mail_res_partner_rel (mail_mail_id, res_partner_id)
            SELECT mail.id, (%(partners)s::int[])[split_part(split_part(message.message_id, '-', 4), '@', 1)::int
                                                   %% %(contacts)s + 1]
              FROM mail_mail mail JOIN mail_message message ON message.id = mail.mail_message_id
             WHERE message.message_id LIKE %(pattern)s
            """,
            {"pattern": f"<odoo-bench-{tag}-%", "partners": partner_ids, "contacts": len(partner_ids)},
        )


def run_odoo_mail_queue(registry, sink, timeout):
    """Drain Odoo's mail queue as its scheduler does: ``process_email_queue`` until empty."""
    sink.reset()
    started = time.perf_counter()
    while True:
        with registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            env["mail.mail"].process_email_queue()
            left = env["mail.mail"].search_count([("state", "=", "outgoing")])
        if not left:
            return time.perf_counter() - started
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"Odoo's mail queue did not drain within {timeout}s.")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000, help="messages per run (default 100000)")
    parser.add_argument("--workers", default="1,2", help="Odoo worker counts to measure (default 1,2)")
    parser.add_argument("--contacts", type=int, default=1000)
    parser.add_argument("--channels", default="http,email", help="which pipelines to measure (default http,email)")
    parser.add_argument("--skip-odoo-queue", action="store_true", help="do not measure Odoo's own mail queue")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds one run may take (default 3600)")
    parser.add_argument("--template", help="copy this already-installed database instead of installing afresh")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the scratch database at the end")
    args = parser.parse_args()
    worker_counts = [int(count) for count in args.workers.split(",")]
    kinds = args.channels.split(",")

    fixtures = load_fixtures()
    addons = addons_path()  # before Odoo's configuration adds its data directory to the addons
    database = f"gobysend_bench_{int(time.time())}_{os.getpid()}"
    print(f"Scratch database {database}: {'copying ' + args.template if args.template else 'installing ' + ADDONS}...")
    create_database(database, args.template)
    sinks = {"http": Sink("http", delay=HTTP_SINK_DELAY), "email": Sink("smtp")}
    results = {}
    try:
        registry = open_registry(database, addons)
        workspace_id, partner_ids, channel_ids = set_up(
            registry, args.contacts, sinks["http"].port, sinks["email"].port
        )
        print(
            f"{args.contacts} contacts; HTTP sink answers after {HTTP_SINK_DELAY * 1000:.0f} ms; "
            f"{os.cpu_count()} CPU cores shared by Odoo, PostgreSQL, the sinks and this script.\n"
        )
        for workers in worker_counts:
            with registry.cursor() as cr:
                env = api.Environment(cr, SUPERUSER_ID, {})
                env["gobysend.channel"].browse(list(channel_ids.values())).write({"dispatch_lanes": workers})
            os.environ["ODOO_QUEUE_JOB_CHANNELS"] = f"root:{workers}"
            server = fixtures.OdooServer(
                database, addons, workers=workers, db_filter=False, extra_args=["--load=base,web,queue_job"]
            ).start()
            try:
                for kind in kinds:
                    enqueue(registry, workspace_id, channel_ids[kind], kind, partner_ids, args.messages)
                    elapsed = run_pipeline(registry, channel_ids[kind], sinks[kind], args.timeout)
                    summary = sinks[kind].summary()
                    states = outcomes(registry, channel_ids[kind])
                    results[kind, workers] = (args.messages / elapsed, summary)
                    print(
                        f"Gobysend {kind:<5} {workers} worker(s): {args.messages} messages in {elapsed:.1f}s = "
                        f"{args.messages / elapsed:,.0f} messages/s; sink received {summary['received']} "
                        f"({summary['distinct']} distinct, {summary['duplicates']} duplicates); states {states}"
                    )
                    with registry.cursor() as cr:  # the next run starts from an empty outbox
                        cr.execute("DELETE FROM gobysend_message WHERE channel_id = %s", (channel_ids[kind],))
            finally:
                stop_server(server)

        if not args.skip_odoo_queue and "email" in kinds:
            fill_odoo_mail_queue(registry, partner_ids, args.messages)
            elapsed = run_odoo_mail_queue(registry, sinks["email"], args.timeout)
            summary = sinks["email"].summary()
            results["odoo", 1] = (args.messages / elapsed, summary)
            print(
                f"Odoo mail queue (process_email_queue, one process): {args.messages} emails in {elapsed:.1f}s = "
                f"{args.messages / elapsed:,.0f} emails/s; sink received {summary['received']} "
                f"({summary['duplicates']} duplicates)"
            )

        print("\nTargets:")
        if ("http", 2) in results:
            rate = results["http", 2][0]
            verdict = "met" if rate >= TARGET_HTTP_PER_SECOND else "MISSED"
            print(f"  HTTP sink, 2 workers: {rate:,.0f} messages/s (target >= {TARGET_HTTP_PER_SECOND:,}) {verdict}")
        if ("odoo", 1) in results:
            odoo_rate = results["odoo", 1][0]
            for workers in worker_counts:
                if ("email", workers) in results:
                    ratio = results["email", workers][0] / odoo_rate
                    verdict = "met" if ratio >= TARGET_EMAIL_VS_ODOO else "MISSED"
                    print(
                        f"  email, {workers} worker(s): {ratio:.2f}x Odoo's own mail queue "
                        f"(target >= {TARGET_EMAIL_VS_ODOO:.0f}x) {verdict}"
                    )
        duplicates = sum(summary["duplicates"] for _rate, summary in results.values())
        print(f"  duplicates over all runs: {duplicates} (target 0) {'met' if not duplicates else 'MISSED'}")
    finally:
        for sink in sinks.values():
            sink.stop()
        odoo.sql_db.close_all()
        release_database(database, args.keep_db)


if __name__ == "__main__":
    main()
