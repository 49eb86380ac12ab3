#!/usr/bin/env python3
"""Journeys at scale, beside Odoo's own time-based automation and OCA's ``automation_oca``. Run
by hand:

    python3 tests/benchmarks/bench_journeys.py [--journeys 100000] [--batch-size 2000] [--keep]

It creates a scratch database ``gobysend_bench_journeys_*`` with both addons (``base_automation``
comes with them) and, when it can be had, OCA's ``automation_oca`` (AGPL-3, installed from PyPI
into this benchmark's Python only when missing, and into this scratch database only), loads the
contacts with COPY (all subscribed to one workspace, through ``bench_segments.load_data``), and
measures, in one run:

(a) N journeys each advancing wait 1 minute → send an email → wait 1 minute, run by 1 engine
    worker, then N fresh journeys by 2 worker processes: steps per second (three steps a
    journey). The workers run the engine's own advancing (``_claim_due`` then
    ``_advance_claimed``, what its job loops over) on an explicit clock that moves past the
    waits in three passes, so nobody waits for real minutes.
(b) N fresh journeys with 2 workers, one killed with SIGKILL half a batch after it committed its
    first batch, the other going on; after the claims' stale delay (recovery runs on a clock
    moved past it) a restarted worker finishes. Then every journey must be completed with one
    log row per step, one outbox message per journey, and the messages, dispatched to a local
    SMTP sink, must arrive once each (the sink counts them per message id).
(c) Anchor 1: a ``base.automation`` rule "based on date field" over the same N partners (a date
    field added to partners, yesterday for each), whose action writes a field (standing for the
    send), run by Odoo's own scheduled method ``base.automation._check(True)``.
(d) Anchor 2: ``automation_oca`` enrolling the same N partners into a flow of one mail step one
    hour after the start: its enrolment (``run_automation``, what its scheduled action does),
    then the hour passes (the steps' scheduled dates are moved back by SQL) and its scheduled
    method ``_cron_automation_steps`` runs them, timed until every ``mail.mail`` exists.

Targets: our steps per second (1 worker) at least 5 times the rule's (a record is one step of
it) and at least 10 times ``automation_oca``'s (a partner's mail step); the ratio of whole
journeys (three steps: the anchors' whole work and two waits more) is printed beside. It prints
the figures next to the targets and drops the scratch database unless ``--keep``.
"""

import argparse
import datetime
import importlib.util
import os
import signal
import subprocess
import sys
import time

from bench_segments import load_data
from benchlib import ADDONS, addons_path, create_database, drop_database
from sinks import Sink

import odoo
from odoo import SUPERUSER_ID, api
from odoo.modules.registry import Registry

TARGETS = {"base_automation": 5.0, "automation_oca": 10.0}
STEPS_PER_JOURNEY = 3
# The workers' clock: three passes two minutes apart, past the one-minute waits.
PASSES = 3
PASS_MINUTES = 2
# Longer than the claims' stale delay (claims.STALE_AFTER, ten minutes).
RECOVERY_AFTER = datetime.timedelta(minutes=11)
OCA_PACKAGE = "odoo-addon-automation_oca"


def environment(cr):
    return api.Environment(cr, SUPERUSER_ID, {"tracking_disable": True, "mail_notrack": True})


# ----------------------------------------------------------------------
# The engine's worker, in a process of its own
# ----------------------------------------------------------------------


def worker(database, addons, start, batch_size):
    """Load the registry, say so, wait for "go" on stdin, then advance the due journeys in
    ``PASSES`` passes of the explicit clock; print a line per batch committed."""
    odoo.tools.config.parse_config(["-d", database, f"--addons-path={addons}", "--log-level=warn"])
    registry = Registry(database)
    start = datetime.datetime.fromisoformat(start)
    print("ready", flush=True)
    sys.stdin.readline()
    with registry.cursor() as cr:
        Journey = environment(cr)["gobysend.journey"]
        for number in range(PASSES):
            now = start + datetime.timedelta(minutes=number * PASS_MINUTES)
            while claim := Journey._claim_due(batch_size, now=now):
                Journey._advance_claimed(claim, now=now)
                print(f"batch {len(claim)}", flush=True)


class Workers:
    """Engine workers started and ready, then let go at once."""

    def __init__(self, database, start, batch_size, count):
        command = [
            sys.executable,
            os.path.abspath(__file__),
            "--worker",
            database,
            addons_path(),
            start.isoformat(),
            str(batch_size),
        ]
        self.processes = [
            subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for _ in range(count)
        ]
        for process in self.processes:
            if process.stdout.readline().strip() != "ready":
                raise SystemExit("An engine worker did not start.")

    def go(self):
        for process in self.processes:
            process.stdin.write("go\n")
            process.stdin.flush()

    def wait(self, processes=None):
        for process in processes or self.processes:
            process.stdout.read()
            if process.wait() != 0:
                raise SystemExit("An engine worker failed (its error is above).")


# ----------------------------------------------------------------------
# Our engine
# ----------------------------------------------------------------------


def set_up(registry, workspace_id, smtp_port):
    """A workspace without caps or quiet hours, and the SMTP sink as the mail server."""
    with registry.cursor() as cr:
        env = environment(cr)
        env["ir.mail_server"].create(
            {"name": "Sink", "smtp_host": "127.0.0.1", "smtp_port": smtp_port, "smtp_encryption": "none"}
        )
        env["gobysend.workspace"].browse(workspace_id).write(
            {"tz": "UTC", "quiet_hours_start": 0, "quiet_hours_end": 0, "frequency_cap_daily": 0}
        )


def drip(registry, workspace_id, name, partner_ids, start):
    """A running campaign wait 1 min → send → wait 1 min, sending on an email channel of its
    own, with a journey per partner, due at ``start``; returns the campaign's and the channel's
    ids."""
    with registry.cursor() as cr:
        env = environment(cr)
        channel_id = (
            env["gobysend.channel"]
            .create(
                {
                    "name": name,
                    "workspace_id": workspace_id,
                    "channel_type": "email",
                    "provider": "email",
                    "state": "enabled",
                    "token_cost": 0,
                    "rate_limit": 0,
                    "sender": "shop@example.com",
                }
            )
            .id
        )
        campaign = env["gobysend.campaign"].create(
            {
                "name": name,
                "workspace_id": workspace_id,
                "trigger_kind": "event",
                "event_name": name.lower().replace(" ", "_"),
                "reentry": "every_time",
            }
        )
        wait = {"campaign_id": campaign.id, "kind": "wait", "timing": "delay", "delay_amount": 1}
        wait["delay_unit"] = "minutes"
        env["gobysend.campaign.step"].create(
            [
                dict(wait, sequence=1),
                {
                    "campaign_id": campaign.id,
                    "kind": "send",
                    "sequence": 2,
                    "channel_id": channel_id,
                    "subject": "Hello {{ contact.name }}",
                    "body": "<p>Our offer for {{ contact.name }}</p>",
                },
                dict(wait, sequence=3),
            ]
        )
        campaign.action_launch()
        ids = env["gobysend.journey"]._enter(campaign, [{"partner_id": pid} for pid in partner_ids])
        # Due at the workers' clock (the journeys entered on the real one). The advancing job
        # the entry queued does not run here (no job runner): the workers are the engine.
        cr.execute("UPDATE gobysend_journey SET wake_at = %s WHERE id = ANY(%s)", (start, ids))
        return campaign.id, channel_id


def journey_figures(registry, campaign_id):
    with registry.cursor() as cr:
        cr.execute("SELECT state, count(*) FROM gobysend_journey WHERE campaign_id = %s GROUP BY state", (campaign_id,))
        states = dict(cr.fetchall())
        cr.execute(
            """
            SELECT count(*), count(DISTINCT (l.journey_id, l.step_id, l.iteration))
              FROM gobysend_journey_log l JOIN gobysend_journey j ON j.id = l.journey_id
             WHERE j.campaign_id = %s
            """,
            (campaign_id,),
        )
        logs, distinct_logs = cr.fetchone()
        cr.execute(
            "SELECT count(*), count(DISTINCT idempotency_key), count(DISTINCT journey_id) FROM gobysend_message "
            "WHERE campaign_id = %s",
            (campaign_id,),
        )
        messages, keys, messaged = cr.fetchone()
    return states, logs, distinct_logs, messages, keys, messaged


def measure_advance(registry, database, workspace_id, partner_ids, batch_size, workers, start):
    """(a) N journeys advanced by ``workers`` processes; returns (seconds, steps completed)."""
    campaign_id, _channel_id = drip(registry, workspace_id, f"Drip {workers} workers", partner_ids, start)
    pool = Workers(database, start, batch_size, workers)
    started = time.perf_counter()
    pool.go()
    pool.wait()
    elapsed = time.perf_counter() - started
    states, steps, *_rest = journey_figures(registry, campaign_id)
    if states != {"completed": len(partner_ids)}:
        raise SystemExit(f"Not every journey completed: {states}")
    return elapsed, steps


def measure_kill(registry, database, workspace_id, partner_ids, batch_size, start, sink, batch_seconds):
    """(b) two workers, one killed in its second batch, recovery, a restarted worker; then the
    outbox dispatched to the sink. Returns a line of figures and whether all is exactly once."""
    campaign_id, channel_id = drip(registry, workspace_id, "Drip killed", partner_ids, start)
    pool = Workers(database, start, batch_size, 2)
    victim, survivor = pool.processes
    pool.go()
    # The victim's first batch is committed: half a batch later, it is inside its second one.
    while True:
        line = victim.stdout.readline()
        if not line or line.startswith("batch"):
            break
    time.sleep(batch_seconds / 2)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    pool.wait([survivor])
    # PostgreSQL rolls the killed worker's transaction back once it notices the process is gone.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with registry.cursor() as cr:
            cr.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s", (f"odoo-{victim.pid}%",))
            if not cr.fetchone()[0]:
                break
        time.sleep(0.1)
    with registry.cursor() as cr:
        cr.execute("SELECT count(*) FROM gobysend_journey WHERE campaign_id = %s AND state = 'running'", (campaign_id,))
        stranded = cr.fetchone()[0]
    last_clock = start + datetime.timedelta(minutes=(PASSES - 1) * PASS_MINUTES)
    with registry.cursor() as cr:
        recovered = environment(cr)["gobysend.journey"]._recover_interrupted(now=last_clock + RECOVERY_AFTER)
    restarted = Workers(database, start, batch_size, 1)
    restarted.go()
    restarted.wait()
    states, logs, distinct_logs, messages, keys, messaged = journey_figures(registry, campaign_id)
    count = len(partner_ids)
    # Dispatch, as the outbox's jobs would, until no message is left to send.
    sink.reset()
    dispatch_started = time.perf_counter()
    while True:
        with registry.cursor() as cr:
            env = environment(cr)
            env["gobysend.channel"].browse(channel_id)._job_dispatch(batch_size=1000, time_budget=3600)
            cr.execute(
                "SELECT count(*) FROM gobysend_message WHERE campaign_id = %s AND state IN ('queued', 'sending')",
                (campaign_id,),
            )
            if not cr.fetchone()[0]:
                break
    dispatched_in = time.perf_counter() - dispatch_started
    with registry.cursor() as cr:
        cr.execute(
            "SELECT state, count(*) FROM gobysend_message WHERE campaign_id = %s GROUP BY state ORDER BY state",
            (campaign_id,),
        )
        message_states = dict(cr.fetchall())
    arrived = sink.summary()
    exactly_once = (
        states == {"completed": count}
        and logs == distinct_logs == STEPS_PER_JOURNEY * count
        and messages == keys == messaged == count
        and arrived["duplicates"] == 0
        and arrived["received"] == arrived["distinct"] == message_states.get("sent", 0)
    )
    line = (
        f"(b) kill -9 of 1 of 2 workers in its second batch ({stranded:,} journeys held by that batch, "
        f"{recovered:,} recovered): journeys {states}, {logs:,} log rows ({distinct_logs:,} distinct), "
        f"{messages:,} messages ({keys:,} keys, {messaged:,} journeys); dispatched in {dispatched_in:.1f} s: "
        f"{message_states}; sink received {arrived['received']:,} ({arrived['distinct']:,} distinct, "
        f"{arrived['duplicates']} duplicates): {'exactly once' if exactly_once else 'NOT exactly once'}"
    )
    return line, exactly_once


# ----------------------------------------------------------------------
# Anchors
# ----------------------------------------------------------------------


def measure_base_automation(registry, partner_ids):
    """(c) a rule on a date of the partners run by Odoo's own scheduled method."""
    with registry.cursor() as cr:
        env = environment(cr)
        model = env["ir.model"]._get("res.partner")
        # A date field added as an administrator adds one (partners have none of their own).
        env["ir.model.fields"].create(
            {"name": "x_bench_date", "field_description": "Bench date", "ttype": "date", "model_id": model.id}
        )
    with registry.cursor() as cr:
        env = environment(cr)
        yesterday = datetime.date.today() - datetime.timedelta(days=1)
        cr.execute("UPDATE res_partner SET x_bench_date = %s WHERE id = ANY(%s)", (yesterday, partner_ids))
        action = env["ir.actions.server"].create(
            {
                "name": "Bench: mark as sent",
                "model_id": model.id,
                "state": "code",
                "code": "record.write({'ref': 'sent'})",
            }
        )
        env["base.automation"].create(
            {
                "name": "Bench: the day after the date",
                "model_id": model.id,
                "trigger": "on_time",
                "filter_domain": "[('x_bench_date', '!=', False)]",
                "trg_date_id": env["ir.model.fields"]._get("res.partner", "x_bench_date").id,
                "trg_date_range": 1,
                "trg_date_range_type": "hour",
                "action_server_ids": [(6, 0, action.ids)],
            }
        )
    started = time.perf_counter()
    with registry.cursor() as cr:
        environment(cr)["base.automation"]._check(True)
    elapsed = time.perf_counter() - started
    with registry.cursor() as cr:
        cr.execute("SELECT count(*) FROM res_partner WHERE ref = 'sent' AND id = ANY(%s)", (partner_ids,))
        done = cr.fetchone()[0]
        # Out of the way of the next measure.
        cr.execute("UPDATE base_automation SET active = FALSE")
    return elapsed, done


def automation_oca_available():
    """Whether ``automation_oca`` can be installed; installs the package from PyPI when missing
    (without dependencies: it needs only Odoo's ``mail`` and ``link_tracker``)."""
    if importlib.util.find_spec("odoo.addons.automation_oca"):
        return True
    print(
        f"Installing {OCA_PACKAGE} from PyPI (AGPL-3) to compare with it; it goes into this "
        "benchmark's scratch database only.",
        flush=True,
    )
    result = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", OCA_PACKAGE],
        capture_output=True,
        text=True,
        check=False,
    )
    importlib.invalidate_caches()
    if result.returncode or not importlib.util.find_spec("odoo.addons.automation_oca"):
        print(f"{OCA_PACKAGE} is unavailable here: {result.stderr.strip()[-500:]}", flush=True)
        return False
    return True


def measure_automation_oca(registry, partner_ids):
    """(d) enrol the partners into one mail step an hour after the start, then run it."""
    with registry.cursor() as cr:
        env = environment(cr)
        model = env["ir.model"]._get("res.partner")
        template = env["mail.template"].create(
            {
                "name": "Bench offer",
                "model_id": model.id,
                "subject": "Hello {{ object.name }}",
                "body_html": "<p>Our offer for <t t-out='object.name'/></p>",
                "email_from": "shop@example.com",
            }
        )
        configuration = env["automation.configuration"].create(
            {
                "name": "Bench flow",
                "model_id": model.id,
                "editable_domain": repr([("id", ">=", min(partner_ids)), ("id", "<=", max(partner_ids))]),
            }
        )
        env["automation.configuration.step"].create(
            {
                "configuration_id": configuration.id,
                "name": "Offer",
                "step_type": "mail",
                "mail_template_id": template.id,
                "trigger_type": "start",
                "trigger_interval": 1,
                "trigger_interval_type": "hours",
            }
        )
        configuration.start_automation()
        configuration_id = configuration.id
        cr.execute("SELECT count(*) FROM mail_mail")
        mails_before = cr.fetchone()[0]
    started = time.perf_counter()
    with registry.cursor() as cr:
        environment(cr)["automation.configuration"].browse(configuration_id).run_automation()
    enrolled = time.perf_counter() - started
    with registry.cursor() as cr:
        # The hour passes.
        cr.execute(
            "UPDATE automation_record_step SET scheduled_date = scheduled_date - interval '2 hours' "
            "WHERE state = 'scheduled'"
        )
    started = time.perf_counter()
    with registry.cursor() as cr:
        environment(cr)["automation.record.step"]._cron_automation_steps()
    ran = time.perf_counter() - started
    with registry.cursor() as cr:
        cr.execute("SELECT count(*) FROM mail_mail")
        mails = cr.fetchone()[0] - mails_before
    return enrolled, ran, mails


# ----------------------------------------------------------------------


def install(dbname, with_oca):
    modules = f"{ADDONS},base_automation" + (",automation_oca" if with_oca else "")
    create_database(dbname, modules=modules)


def verdict(ok):
    return "met" if ok else "NOT met"


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--journeys", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=2000, help="journeys a worker claims at a time")
    parser.add_argument("--keep", action="store_true", help="keep the scratch database")
    args = parser.parse_args()
    odoo.tools.config.parse_config([f"--addons-path={addons_path()}", "--log-level=warn"])
    with_oca = automation_oca_available()
    # The workers' clock starts an hour ago: the messages they queue are due for the dispatch.
    start = datetime.datetime.utcnow().replace(microsecond=0) - datetime.timedelta(hours=1)
    dbname = f"gobysend_bench_journeys_{int(time.time())}"
    count = args.journeys
    lines = []
    sink = Sink("smtp")
    started_at = time.perf_counter()
    try:
        print(f"Creating {dbname} ...", flush=True)
        install(dbname, with_oca)
        workspace_id, first_id, loaded = load_data(dbname, count, 0, start)
        partner_ids = list(range(first_id, first_id + count))
        print(f"Loaded {count:,} contacts by COPY in {loaded:.1f} s", flush=True)
        registry = Registry(dbname)
        with registry.cursor() as cr:
            # The loader writes by COPY, past the ORM that fills the address the outbox sends to.
            cr.execute("UPDATE res_partner SET email_normalized = lower(email) WHERE email_normalized IS NULL")
        set_up(registry, workspace_id, sink.port)

        rates = {}
        for workers in (1, 2):
            elapsed, steps = measure_advance(
                registry, dbname, workspace_id, partner_ids, args.batch_size, workers, start
            )
            if workers == 1:
                batch_seconds = elapsed / (PASSES * -(-count // args.batch_size))
            rates[workers] = (steps / elapsed, count / elapsed)
            print(f"(a) {workers} worker(s): {steps:,} steps in {elapsed:.1f} s", flush=True)
            lines.append(
                f"(a) {count:,} journeys wait → send → wait, {workers} worker(s): {steps:,} steps in {elapsed:.1f} s, "
                f"{rates[workers][0]:,.0f} steps/s ({rates[workers][1]:,.0f} journeys/s)"
            )

        line, _ok = measure_kill(
            registry, dbname, workspace_id, partner_ids, args.batch_size, start, sink, batch_seconds
        )
        print(line, flush=True)
        lines.append(line)

        ours_steps, ours_journeys = rates[1]
        elapsed, done = measure_base_automation(registry, partner_ids)
        print(f"(c) base.automation: {done:,} records in {elapsed:.1f} s", flush=True)
        theirs = done / elapsed
        ratio = ours_steps / theirs if done else float("inf")
        lines.append(
            f"(c) base.automation time-based rule over {count:,} partners (a field write each), run by its cron "
            f"method: {done:,} records in {elapsed:.1f} s, {theirs:,.0f} steps/s (one a record); ours (1 worker) "
            f"{ours_steps:,.0f} steps/s: {ratio:.1f}x (target >= {TARGETS['base_automation']:.0f}x: "
            f"{verdict(ratio >= TARGETS['base_automation'])}); whole journeys (three steps) against records: "
            f"{ours_journeys / theirs:.1f}x"
        )

        if with_oca:
            enrolled, ran, mails = measure_automation_oca(registry, partner_ids)
            total = enrolled + ran
            print(f"(d) automation_oca: enrolled in {enrolled:.1f} s, ran in {ran:.1f} s, {mails:,} mails", flush=True)
            theirs = mails / total
            ratio = ours_steps / theirs if mails else float("inf")
            lines.append(
                f"(d) automation_oca, {count:,} partners into one mail step after 1 h: enrolment {enrolled:.1f} s + "
                f"its cron {ran:.1f} s = {total:.1f} s for {mails:,} mail.mail, {theirs:,.0f} steps/s (one a "
                f"partner); ours (1 worker) {ours_steps:,.0f} steps/s: {ratio:.1f}x (target >= "
                f"{TARGETS['automation_oca']:.0f}x: {verdict(ratio >= TARGETS['automation_oca'])}); whole journeys "
                f"against partners: {ours_journeys / theirs:.1f}x"
            )
        else:
            lines.append(f"(d) automation_oca: not measured, {OCA_PACKAGE} could not be installed here")
    finally:
        sink.stop()
        if not args.keep:
            drop_database(dbname)
    print(f"Machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print(f"Whole run: {time.perf_counter() - started_at:.0f} s")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
