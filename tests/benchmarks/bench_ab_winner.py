#!/usr/bin/env python3
"""Deciding an A/B test's winner over many recipients. Run by hand:

    python3 tests/benchmarks/bench_ab_winner.py [--recipients 100000] [--template DB] [--keep]

It creates a scratch database ``gobysend_bench_ab_*`` with both addons (or copies ``--template``,
a database that has them installed), inserts the contacts and one A/B test step's messages for
two variants with ``INSERT ... SELECT`` (a quarter of A's opened, a third of B's), each in a
journey of its own (one in ten converted after its message), and times the step's decision
(``_ab_decide``: one aggregate query over the variants' messages and their journeys, then the
conditional update that stores the winner). Target: at most 1 s for 100,000 recipients.
"""

import argparse
import datetime
import os
import time

from benchlib import addons_path, create_database, drop_database, vacuum_analyze

import odoo
from odoo import SUPERUSER_ID, api
from odoo.modules.registry import Registry

TARGET_SECONDS = 1.0


def environment(cr):
    return api.Environment(cr, SUPERUSER_ID, {"tracking_disable": True, "mail_notrack": True})


def load(registry, recipients, now):
    """The workspace, the A/B step and its messages; returns the step's id."""
    with registry.cursor() as cr:
        env = environment(cr)
        workspace = env["gobysend.workspace"].create({"name": "Bench A/B"})
        channel = env["gobysend.channel"].create(
            {"name": "SMS", "workspace_id": workspace.id, "channel_type": "sms", "state": "enabled"}
        )
        campaign = env["gobysend.campaign"].create(
            {"name": "A/B", "workspace_id": workspace.id, "trigger_kind": "manual"}
        )
        step = env["gobysend.campaign.step"].create(
            {
                "campaign_id": campaign.id,
                "kind": "ab_test",
                "channel_id": channel.id,
                "ab_test_share": 50,
                "ab_metric": "open",
                "variant_ids": [(0, 0, {"body": "Offer A"}), (0, 0, {"body": "Offer B"})],
            }
        )
        variant_a, variant_b = step.variant_ids.ids
        env.flush_all()
        # Set-based loading: the ORM would take minutes to create this many rows.
        cr.execute(
            """
            INSERT INTO res_partner (name, email, active, type, is_company, create_date, write_date)
            SELECT 'Bench ' || n, 'bench' || n || '@example.com', TRUE, 'contact', FALSE, %(now)s, %(now)s
              FROM generate_series(1, %(count)s) n
            RETURNING id
            """,
            {"now": now, "count": recipients},
        )
        partner_ids = [row[0] for row in cr.fetchall()]
        # A journey per recipient, one in ten converted (to the goal) after its message.
        cr.execute(
            """
            INSERT INTO gobysend_journey (campaign_id, workspace_id, partner_id, state, step_id, entered_at,
                                          converted, converted_at)
            SELECT %(campaign)s, %(workspace)s, p.id, 'waiting', %(step)s, %(now)s, n %% 10 = 0,
                   CASE WHEN n %% 10 = 0 THEN %(later)s END
              FROM unnest(%(partners)s::int[]) WITH ORDINALITY AS p (id, n)
            """,
            {
                "campaign": campaign.id,
                "workspace": workspace.id,
                "step": step.id,
                "now": now,
                "later": now + datetime.timedelta(hours=1),
                "partners": partner_ids,
            },
        )
        cr.execute(
            """
            INSERT INTO gobysend_message (workspace_id, partner_id, channel_id, channel_type, state, body_template,
                                          attempts, token_cost, idempotency_key, is_test, campaign_id,
                                          campaign_step_id, campaign_variant_id, journey_id, sent_at, create_date,
                                          write_date)
            SELECT %(workspace)s, p.id, %(channel)s, 'sms',
                   CASE WHEN n %% 8 = 0 OR (n %% 2 = 1 AND n %% 3 = 0) THEN 'opened' ELSE 'sent' END,
                   'x', 1, 0, 'bench-ab-' || p.id, FALSE, %(campaign)s, %(step)s,
                   CASE WHEN n %% 2 = 0 THEN %(a)s ELSE %(b)s END, j.id, %(now)s, %(now)s, %(now)s
              FROM unnest(%(partners)s::int[]) WITH ORDINALITY AS p (id, n)
              JOIN gobysend_journey j ON j.partner_id = p.id AND j.campaign_id = %(campaign)s
            """,
            {
                "workspace": workspace.id,
                "channel": channel.id,
                "campaign": campaign.id,
                "step": step.id,
                "a": variant_a,
                "b": variant_b,
                "now": now,
                "partners": partner_ids,
            },
        )
        return step.id, variant_b


def decide(registry, step_id, now):
    with registry.cursor() as cr:
        step = environment(cr)["gobysend.campaign.step"].browse(step_id)
        started = time.perf_counter()
        winner = step._ab_decide(now)
        elapsed = time.perf_counter() - started
        return elapsed, winner.id, winner.name


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--template", help="copy this database (with both addons installed) instead of installing")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()
    odoo.tools.config.parse_config([f"--addons-path={addons_path()}", "--log-level=warn"])
    now = datetime.datetime.utcnow().replace(microsecond=0)
    dbname = f"gobysend_bench_ab_{int(time.time())}"
    try:
        print(f"Creating {dbname} ...", flush=True)
        create_database(dbname, template=args.template)
        registry = Registry(dbname)
        started = time.perf_counter()
        step_id, expected = load(registry, args.recipients, now)
        # The decision comes hours after the messages were queued: autovacuum has visited them.
        vacuum_analyze(dbname, "gobysend_message", "gobysend_journey")
        print(f"Loaded {args.recipients:,} messages in {time.perf_counter() - started:.1f} s", flush=True)
        elapsed, winner_id, winner = decide(registry, step_id, now)
        if winner_id != expected:
            raise SystemExit(f"Wrong winner: {winner}.")
    finally:
        if not args.keep:
            drop_database(dbname)
    print(f"Machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    verdict = "met" if elapsed <= TARGET_SECONDS else "MISSED"
    print(
        f"A/B winner over {args.recipients:,} recipients: {elapsed * 1000:.0f} ms, winner {winner} "
        f"(target <= {TARGET_SECONDS:.0f} s: {verdict})"
    )


if __name__ == "__main__":
    main()
