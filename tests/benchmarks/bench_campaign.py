#!/usr/bin/env python3
"""Campaigns at scale, beside Odoo's own tools. Run by hand:

    python3 tests/benchmarks/bench_campaign.py [--partners 100000] [--leads 1000] [--events 100000] [--keep]

It creates a scratch database ``gobysend_bench_campaign_*`` with both addons and Odoo's own
``mass_mailing`` (no demo data), loads the partners with COPY (all contacts of one workspace,
through ``bench_segments.load_data``), and measures, in one run:

(a) a manual email campaign to every contact, from *Launch* until all its journeys and outbox
    messages are queued (the launch's fan-out jobs, run here one after the other), against
    ``mass_mailing`` sending one mailing to the same partners: ``action_launch`` then its queue
    processing (``action_send_mail``, what its scheduled action runs) until every ``mail.mail``
    is outgoing. Target: at least 5 times faster.
(b) 1,000 ``crm.lead`` stage changes, one per transaction, without and then with a running
    "on changed data" campaign watching the stage. Target: at most 10% slower with it.
(c) ``track`` events in batches of 500, each batch a transaction of the ingest service the API
    calls, without and then with a running campaign fired by the event. Target: at least 70% of
    the rate without it, and every matching event has its journey.

Everything runs in this process against PostgreSQL on the same machine. It prints the figures
next to the targets and drops the scratch database unless ``--keep``.
"""

import argparse
import datetime
import os
import time

from bench_segments import load_data
from benchlib import ADDONS, addons_path, create_database, drop_database

import odoo
from odoo import SUPERUSER_ID, api
from odoo.modules.registry import Registry

TARGETS = {"launch": 5.0, "lead_overhead": 0.10, "event_ratio": 0.70}
EVENT_BATCH = 500
# Rounds of lead stage writes with and without the campaign, in turn.
STAGE_ROUNDS = 3


def install(dbname):
    create_database(dbname, modules=f"{ADDONS},mass_mailing")


def environment(cr):
    return api.Environment(cr, SUPERUSER_ID, {"tracking_disable": True, "mail_notrack": True})


def set_up_channel(registry, workspace_id, partners):
    with registry.cursor() as cr:
        env = environment(cr)
        workspace = env["gobysend.workspace"].browse(workspace_id)
        # The ledger must cover the launch: the balance is set as an administrator's top-up would.
        workspace.sudo().write({"token_balance": partners * 2})
        channel = env["gobysend.channel"].create(
            {
                "name": "Newsletter",
                "workspace_id": workspace_id,
                "channel_type": "email",
                "provider": "email",
                "state": "enabled",
                "token_cost": 1,
            }
        )
        return channel.id


def measure_launch(registry, workspace_id, channel_id):
    """(a) ours: Launch, then the fan-out chunks until the audience is queued."""
    with registry.cursor() as cr:
        env = environment(cr)
        campaign = env["gobysend.campaign"].create(
            {"name": "Bench launch", "workspace_id": workspace_id, "trigger_kind": "manual"}
        )
        env["gobysend.campaign.step"].create(
            {
                "campaign_id": campaign.id,
                "kind": "send",
                "channel_id": channel_id,
                "subject": "Hello {{ contact.name }}",
                "body": "<p>Our offer for {{ contact.name }}</p>",
            }
        )
        campaign_id = campaign.id
    started = time.perf_counter()
    with registry.cursor() as cr:
        env = environment(cr)
        env["gobysend.campaign"].browse(campaign_id).action_launch()
    with registry.cursor() as cr:
        env = environment(cr)
        campaign = env["gobysend.campaign"].browse(campaign_id)
        while campaign._fan_out_chunk():
            cr.commit()  # commit-ok: one chunk a transaction, as the launch's job does
        cr.commit()  # commit-ok: the last chunk, before the clock stops
    elapsed = time.perf_counter() - started
    with registry.cursor() as cr:
        cr.execute("SELECT count(*) FROM gobysend_journey WHERE campaign_id = %s", (campaign_id,))
        journeys = cr.fetchone()[0]
        cr.execute("SELECT count(*) FROM gobysend_message WHERE campaign_id = %s AND state = 'queued'", (campaign_id,))
        messages = cr.fetchone()[0]
    return elapsed, journeys, messages


def measure_mass_mailing(registry, workspace_id):
    """(a) Odoo's: one mailing to the same partners, launched and processed until every
    ``mail.mail`` is outgoing."""
    with registry.cursor() as cr:
        env = environment(cr)
        model = env["ir.model"]._get("res.partner")
        cr.execute(
            "SELECT min(partner_id), max(partner_id) FROM gobysend_subscription WHERE workspace_id = %s",
            (workspace_id,),
        )
        first, last = cr.fetchone()
        mailing = env["mailing.mailing"].create(
            {
                "subject": "Our offer",
                "body_html": "<p>Our offer for {{ object.name }}</p>",
                "mailing_model_id": model.id,
                "mailing_domain": repr([("id", ">=", first), ("id", "<=", last)]),
                "email_from": "shop@example.com",
            }
        )
        mailing_id = mailing.id
    started = time.perf_counter()
    with registry.cursor() as cr:
        env = environment(cr)
        env["mailing.mailing"].browse(mailing_id).action_launch()
    with registry.cursor() as cr:
        env = environment(cr)
        mailing = env["mailing.mailing"].browse(mailing_id)
        # What its scheduled action does, batch after batch, until nothing remains to send.
        while mailing.state != "done":
            mailing.action_send_mail()
            cr.commit()  # commit-ok: one batch a transaction, as mass_mailing's scheduled action does
            mailing.invalidate_recordset()
    elapsed = time.perf_counter() - started
    with registry.cursor() as cr:
        cr.execute("SELECT count(*) FROM mail_mail WHERE mailing_id = %s AND state = 'outgoing'", (mailing_id,))
        outgoing = cr.fetchone()[0]
    return elapsed, outgoing


def make_leads(registry, workspace_id, count):
    with registry.cursor() as cr:
        env = environment(cr)
        cr.execute(
            "SELECT partner_id FROM gobysend_subscription WHERE workspace_id = %s ORDER BY partner_id LIMIT %s",
            (workspace_id, count),
        )
        partner_ids = [row[0] for row in cr.fetchall()]
        stages = env["crm.stage"].search([("is_won", "=", False)], order="sequence", limit=2)
        leads = env["crm.lead"].create(
            [
                {"name": f"Lead {n}", "partner_id": pid, "stage_id": stages[0].id, "type": "opportunity"}
                for n, pid in enumerate(partner_ids)
            ]
        )
        return leads.ids, stages.ids


def measure_stage_writes(registry, lead_ids, stage_ids, round_number):
    """(b) one stage change per lead, each in its own transaction (as users save forms)."""
    target = stage_ids[round_number % 2]
    started = time.perf_counter()
    for lead_id in lead_ids:
        with registry.cursor() as cr:
            env = environment(cr)
            env["crm.lead"].browse(lead_id).write({"stage_id": target})
    return time.perf_counter() - started


def record_campaign(registry, workspace_id, channel_id):
    with registry.cursor() as cr:
        env = environment(cr)
        model = env["ir.model"]._get("crm.lead")
        stage_field = env["ir.model.fields"]._get("crm.lead", "stage_id")
        campaign = env["gobysend.campaign"].create(
            {
                "name": "Bench stage",
                "workspace_id": workspace_id,
                "trigger_kind": "on_write",
                "model_id": model.id,
                "partner_path": "partner_id",
                "trigger_field_ids": [(6, 0, stage_field.ids)],
                "reentry": "every_time",
            }
        )
        env["gobysend.campaign.step"].create(
            {
                "campaign_id": campaign.id,
                "kind": "send",
                "channel_id": channel_id,
                "subject": "Stage",
                "body": "<p>{{ record.name }}</p>",
            }
        )
        campaign.action_launch()
        return campaign.id


def set_campaign_running(registry, campaign_id, running):
    with registry.cursor() as cr:
        campaign = environment(cr)["gobysend.campaign"].browse(campaign_id)
        if running and campaign.state == "paused":
            campaign.action_resume()
        elif not running and campaign.state == "running":
            campaign.action_pause()


def measure_events(registry, workspace_id, count, prefix):
    """(c) ``count`` track events through the ingest service, a transaction per batch."""
    with registry.cursor() as cr:
        cr.execute(
            "SELECT p.email FROM gobysend_subscription s JOIN res_partner p ON p.id = s.partner_id "
            "WHERE s.workspace_id = %s ORDER BY p.id LIMIT 1000",
            (workspace_id,),
        )
        emails = [row[0] for row in cr.fetchall()]
    names = ("product_viewed", "cart_updated", "order_completed", "search", "coupon_applied")
    started = time.perf_counter()
    for offset in range(0, count, EVENT_BATCH):
        items = [
            {
                "type": "track",
                "email": emails[number % len(emails)],
                "name": names[number % len(names)],
                "properties": {"sku": f"SKU-{number % 977}", "total": 199000 + number % 50},
                "message_id": f"{prefix}-{number}",
            }
            for number in range(offset, min(count, offset + EVENT_BATCH))
        ]
        with registry.cursor() as cr:
            env = environment(cr)
            workspace = env["gobysend.workspace"].browse(workspace_id)
            results = env["gobysend.ingest"].batch(workspace, items)
            if any(result["status"] != "ok" for result in results):
                raise SystemExit(f"An event was refused: {[r for r in results if r['status'] != 'ok'][:1]}")
    return time.perf_counter() - started


def event_campaign(registry, workspace_id, channel_id):
    with registry.cursor() as cr:
        env = environment(cr)
        campaign = env["gobysend.campaign"].create(
            {
                "name": "Bench event",
                "workspace_id": workspace_id,
                "trigger_kind": "event",
                "event_name": "order_completed",
                "reentry": "every_time",
            }
        )
        env["gobysend.campaign.step"].create(
            {
                "campaign_id": campaign.id,
                "kind": "send",
                "channel_id": channel_id,
                "subject": "Thanks",
                "body": "<p>{{ event.properties.total }}</p>",
            }
        )
        campaign.action_launch()
        return campaign.id


def verdict(ok):
    return "met" if ok else "NOT met"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--partners", type=int, default=100_000)
    parser.add_argument("--leads", type=int, default=1000)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--only", default="a,b,c", help="which measures to run (default a,b,c)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()
    only = set(args.only.split(","))
    odoo.tools.config.parse_config([f"--addons-path={addons_path()}", "--log-level=warn"])
    now = datetime.datetime.utcnow().replace(microsecond=0)
    dbname = f"gobysend_bench_campaign_{int(time.time())}"
    lines = []
    try:
        print(f"Creating {dbname} (with mass_mailing) ...", flush=True)
        install(dbname)
        workspace_id, _first_id, loaded = load_data(dbname, args.partners, 0, now)
        print(f"Loaded {args.partners:,} contacts by COPY in {loaded:.1f} s", flush=True)
        registry = Registry(dbname)
        with registry.cursor() as cr:
            # The loader writes by COPY, past the ORM that fills the address the API looks up.
            cr.execute("UPDATE res_partner SET email_normalized = lower(email) WHERE email_normalized IS NULL")
        channel_id = set_up_channel(registry, workspace_id, args.partners)
        if "a" in only:
            ours, journeys, messages = measure_launch(registry, workspace_id, channel_id)
            print(f"(a) ours: {ours:.1f} s for {journeys:,} journeys and {messages:,} queued messages", flush=True)
            theirs, outgoing = measure_mass_mailing(registry, workspace_id)
            print(f"(a) mass_mailing: {theirs:.1f} s for {outgoing:,} outgoing mail.mail", flush=True)
            ratio = theirs / ours
            lines.append(
                f"(a) launch to {args.partners:,} contacts: ours {ours:.1f} s ({journeys:,} journeys, {messages:,} "
                f"messages queued), mass_mailing {theirs:.1f} s ({outgoing:,} mail.mail outgoing): {ratio:.1f}x "
                f"faster (target >= {TARGETS['launch']:.0f}x: {verdict(ratio >= TARGETS['launch'])})"
            )
        if "b" in only:
            lead_ids, stage_ids = make_leads(registry, workspace_id, args.leads)
            measure_stage_writes(registry, lead_ids, stage_ids, 1)  # warm-up
            campaign_id = record_campaign(registry, workspace_id, channel_id)
            # Rounds with the campaign paused and running in turn: the leads' history grows with
            # every write, which would weigh on whichever is measured last.
            timings = {False: [], True: []}
            round_number = 0
            for _round in range(STAGE_ROUNDS):
                for running in (False, True):
                    set_campaign_running(registry, campaign_id, running)
                    timings[running].append(measure_stage_writes(registry, lead_ids, stage_ids, round_number))
                    round_number += 1
            without = sum(timings[False]) / STAGE_ROUNDS
            with_campaign = sum(timings[True]) / STAGE_ROUNDS
            # The writers only noted the leads: the engine's job starts their journeys.
            # (imported here: the addons are found once the configuration above is read)
            from odoo.addons.gobysend_automation.kinds.triggers import record_entries  # noqa: PLC0415

            record_entries.enter_noted(registry)
            with registry.cursor() as cr:
                cr.execute("SELECT count(*) FROM gobysend_journey WHERE campaign_id = %s", (campaign_id,))
                started = cr.fetchone()[0]
            overhead = with_campaign / without - 1
            lines.append(
                f"(b) {len(lead_ids):,} lead stage writes (mean of {STAGE_ROUNDS} rounds each, in turn): "
                f"{without:.2f} s without, {with_campaign:.2f} s with a watching campaign ({started:,} journeys "
                f"started for {STAGE_ROUNDS * len(lead_ids):,} changes): overhead {overhead:+.1%} (target <= "
                f"{TARGETS['lead_overhead']:.0%}: {verdict(overhead <= TARGETS['lead_overhead'])})"
            )
        if "c" in only:
            without = measure_events(registry, workspace_id, args.events, "warm")
            without = measure_events(registry, workspace_id, args.events, "plain")
            campaign_id = event_campaign(registry, workspace_id, channel_id)
            with_campaign = measure_events(registry, workspace_id, args.events, "fired")
            with registry.cursor() as cr:
                cr.execute("SELECT count(*) FROM gobysend_journey WHERE campaign_id = %s", (campaign_id,))
                journeys = cr.fetchone()[0]
                cr.execute(
                    "SELECT count(*) FROM gobysend_event WHERE name = 'order_completed' AND message_id LIKE 'fired-%%'"
                )
                matching = cr.fetchone()[0]
            ratio = without / with_campaign
            lines.append(
                f"(c) {args.events:,} events in batches of {EVENT_BATCH}: {args.events / without:,.0f}/s without, "
                f"{args.events / with_campaign:,.0f}/s with an event campaign: {ratio:.0%} (target >= "
                f"{TARGETS['event_ratio']:.0%}: {verdict(ratio >= TARGETS['event_ratio'])}); {journeys:,} journeys "
                f"for {matching:,} matching events"
            )
    finally:
        if not args.keep:
            drop_database(dbname)
    print(f"Machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
