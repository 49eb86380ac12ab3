"""Journeys advance exactly once per step: with two engine workers in processes of their own,
one of them killed (SIGKILL) in the middle of a batch, and a worker restarted after recovery.
The test commits for real (that is what it tests), on the end-to-end database, and counts the
step log, the outbox and what reaches a local SMTP server."""

import datetime
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from odoo import SUPERUSER_ID, api

from odoo.addons.gobysend_automation.tests.smtp_sink import SmtpSink

E2E_DB = os.environ.get("GOBYSEND_E2E_DB")
pytestmark = [
    pytest.mark.skipif(not E2E_DB, reason="needs the end-to-end database prepared by setup/run-tests"),
    # The workers and recovery run on an explicit clock; the dispatch at the end compares the
    # messages' due times with the real one: run again with it moved (see conftest.py).
    pytest.mark.time_sensitive,
]

JOURNEYS = 1500
BATCH_SIZE = 50
# The workers' clock: each pass is two minutes after the previous one, past the one-minute waits
# (pass 1 runs the first wait; pass 2 ends it and runs the send and the second wait; pass 3 ends
# the journeys).
PASSES = 3
PASS_MINUTES = 2
# Longer than the claims' stale delay (claims.STALE_AFTER, ten minutes).
RECOVERY_AFTER = datetime.timedelta(minutes=11)

WORKER = textwrap.dedent(
    """
    import datetime
    import sys

    import odoo
    from odoo import SUPERUSER_ID, api
    from odoo.tools import config

    database, addons_path, start, batch_size, passes, pass_minutes = sys.argv[1:7]
    config.parse_config(["-d", database, "--addons-path=" + addons_path, "--log-level=warn"])
    registry = odoo.modules.registry.Registry(database)
    start = datetime.datetime.fromisoformat(start)
    with registry.cursor() as cr:
        Journey = api.Environment(cr, SUPERUSER_ID, {})["gobysend.journey"]
        for number in range(int(passes)):
            now = start + datetime.timedelta(minutes=number * int(pass_minutes))
            while claim := Journey._claim_due(int(batch_size), now=now):
                steps = Journey._advance_claimed(claim, now=now)
                print(f"pass {number}: {len(claim)} journeys, {steps} steps", flush=True)
    """
)


@pytest.fixture
def drip(registry, sink_workspace):
    """A running campaign wait 1 min → send an email → wait 1 min, in a workspace without caps
    or quiet hours, its email channel pointed at ``smtp_port``; ``count`` subscribed contacts
    with a journey each, due at ``start``. Everything committed, and removed afterwards."""

    def make(count, smtp_port, start):
        with registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {"tracking_disable": True})
            workspace, channel, partners = sink_workspace(
                env, smtp_port, count, "Journeys exactly once", frequency_cap_daily=0, token_balance=0
            )
            tag = uuid.uuid4().hex[:8]
            campaign = env["gobysend.campaign"].create(
                {
                    "name": f"Drip {tag}",
                    "workspace_id": workspace.id,
                    "trigger_kind": "event",
                    "event_name": f"drip_{tag}",
                    "reentry": "every_time",
                }
            )
            wait = {"campaign_id": campaign.id, "kind": "wait", "timing": "delay", "delay_amount": 1}
            wait["delay_unit"] = "minutes"
            steps = env["gobysend.campaign.step"].create(
                [
                    dict(wait, sequence=1),
                    {
                        "campaign_id": campaign.id,
                        "kind": "send",
                        "sequence": 2,
                        "channel_id": channel.id,
                        "subject": "Hello {{ contact.name }}",
                        "body": "<p>Our offer for {{ contact.name }}</p>",
                    },
                    dict(wait, sequence=3),
                ]
            )
            campaign.action_launch()
            journey_ids = env["gobysend.journey"]._enter(campaign, [{"partner_id": p.id} for p in partners])
            # Due at the workers' clock (the journeys entered on the real one).
            cr.execute("UPDATE gobysend_journey SET wake_at = %s WHERE id = ANY(%s)", (start, journey_ids))
            return campaign.id, channel.id, steps.ids, sorted(journey_ids)

    return make


def start_worker(script, start):
    return subprocess.Popen(
        [
            sys.executable,
            str(script),
            E2E_DB,
            os.environ["GOBYSEND_ADDONS_PATH"],
            start.isoformat(),
            str(BATCH_SIZE),
            str(PASSES),
            str(PASS_MINUTES),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def clocks(registry):
    """The earlier of Python's and the database's clocks, whichever is moved."""
    with registry.cursor() as cr:
        cr.execute("SELECT now() at time zone 'UTC'")
        database_now = cr.fetchone()[0]
    return min(database_now, datetime.datetime.utcnow()).replace(microsecond=0)


def blocked_worker(registry, blocker_pid, workers, timeout=60):
    """The worker whose database session waits for the blocker's transaction."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with registry.cursor() as cr:
            cr.execute(
                "SELECT application_name FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))", (blocker_pid,)
            )
            names = [row[0] for row in cr.fetchall()]
        for worker in workers:
            if any(name.startswith(f"odoo-{worker.pid}") for name in names):
                return worker
        if all(worker.poll() is not None for worker in workers):
            break
        time.sleep(0.05)
    raise AssertionError(
        "no worker reached the blocked journey: "
        + " ".join(worker.stderr.read().decode()[-2000:] for worker in workers if worker.poll() is not None)
    )


def wait_for_backends_to_end(registry, pid, timeout=30):
    """Until PostgreSQL has noticed that the killed process is gone and rolled its transaction
    back."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with registry.cursor() as cr:
            cr.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s", (f"odoo-{pid}%",))
            if not cr.fetchone()[0]:
                return
        time.sleep(0.1)
    raise AssertionError(f"the database still serves the killed worker {pid}")


def finish(worker, timeout=120):
    out, err = worker.communicate(timeout=timeout)
    assert worker.returncode == 0, err.decode()[-4000:]
    return out.decode()


def test_killed_journey_worker_loses_nothing_and_runs_no_step_twice(registry, drip, tmp_path):
    start = clocks(registry) - datetime.timedelta(hours=1)
    script = tmp_path / "journey_worker.py"
    script.write_text(WORKER)
    with SmtpSink() as sink:
        campaign_id, channel_id, step_ids, journey_ids = drip(JOURNEYS, sink.port, start)
        wait_id, send_id, _second_wait_id = step_ids
        # A journey in the middle of the queue gets its message from another transaction that
        # has not committed: the worker whose batch holds it stops inside the send step (its
        # message insert waits on the outbox's unique key), after the batch ran the wait.
        target = journey_ids[len(journey_ids) // 2]
        blocker = registry.cursor()
        try:
            env = api.Environment(blocker, SUPERUSER_ID, {})
            journey = env["gobysend.journey"].browse(target)
            env["gobysend.message"]._enqueue(
                journey.partner_id,
                env["gobysend.channel"].browse(channel_id),
                "<p>Held</p>",
                subject="Held",
                idempotency_key=f"journey-{target}-{send_id}-0",
            )
            env.flush_all()
            blocker.execute("SELECT pg_backend_pid()")
            blocker_pid = blocker.fetchone()[0]
            workers = [start_worker(script, start) for _ in range(2)]
            try:
                victim = blocked_worker(registry, blocker_pid, workers)
                victim.send_signal(signal.SIGKILL)
                victim.wait(timeout=30)
            finally:
                blocker.rollback()
        finally:
            blocker.close()
        (survivor,) = [worker for worker in workers if worker is not victim]
        survivor_log = finish(survivor)
        assert "pass 1" in survivor_log, "the other worker went on meanwhile"
        wait_for_backends_to_end(registry, victim.pid)

        with registry.cursor() as cr:
            cr.execute(
                "SELECT id FROM gobysend_journey WHERE campaign_id = %s AND state = 'running' ORDER BY id",
                (campaign_id,),
            )
            stranded = [row[0] for row in cr.fetchall()]
            cr.execute(
                "SELECT count(*) FROM gobysend_journey_log WHERE journey_id = ANY(%s) AND step_id = %s",
                (stranded, wait_id),
            )
            stranded_logs = cr.fetchone()[0]
            cr.execute("SELECT count(*) FROM gobysend_message WHERE journey_id = ANY(%s)", (stranded,))
            stranded_messages = cr.fetchone()[0]
        assert target in stranded, "the killed worker's batch is still claimed"
        assert 0 < len(stranded) <= BATCH_SIZE
        # Its batch died whole: the first wait it ended and the messages it queued went with it.
        assert stranded_logs == 0
        assert stranded_messages == 0

        # The killed worker stopped beating: past the stale delay, recovery hands its journeys
        # back, and a restarted worker takes them on.
        last_clock = start + datetime.timedelta(minutes=(PASSES - 1) * PASS_MINUTES)
        with registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            recovered = env["gobysend.journey"]._recover_interrupted(now=last_clock + RECOVERY_AFTER)
        assert recovered >= len(stranded)
        finish(start_worker(script, start))

        with registry.cursor() as cr:
            cr.execute(
                "SELECT state, count(*) FROM gobysend_journey WHERE campaign_id = %s GROUP BY state", (campaign_id,)
            )
            journey_states = dict(cr.fetchall())
            cr.execute(
                """
                SELECT count(*), count(DISTINCT (journey_id, step_id, iteration)), count(DISTINCT journey_id)
                  FROM gobysend_journey_log WHERE journey_id = ANY(%s)
                """,
                (journey_ids,),
            )
            logs, distinct_logs, logged_journeys = cr.fetchone()
            cr.execute(
                """
                SELECT count(*), count(DISTINCT journey_id), count(DISTINCT idempotency_key)
                  FROM gobysend_message WHERE campaign_id = %s AND campaign_step_id = %s
                """,
                (campaign_id, send_id),
            )
            messages, messaged_journeys, keys = cr.fetchone()
        assert journey_states == {"completed": JOURNEYS}, journey_states
        assert logs == distinct_logs == 3 * JOURNEYS, "each journey ran each of its three steps once"
        assert logged_journeys == JOURNEYS
        assert messages == messaged_journeys == keys == JOURNEYS, "one message per journey"

        # The outbox sends them: each contact receives its email once.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with registry.cursor() as cr:
                env = api.Environment(cr, SUPERUSER_ID, {})
                env["gobysend.channel"].browse(channel_id)._job_dispatch(batch_size=500)
                cr.execute(
                    "SELECT count(*) FROM gobysend_message WHERE campaign_id = %s AND state IN ('queued', 'sending')",
                    (campaign_id,),
                )
                if not cr.fetchone()[0]:
                    break
            time.sleep(0.2)
        received = [item["to"][0] for item in sink.received]
        with registry.cursor() as cr:
            cr.execute(
                "SELECT state, count(*) FROM gobysend_message WHERE campaign_id = %s GROUP BY state", (campaign_id,)
            )
            message_states = dict(cr.fetchall())
    assert message_states == {"sent": JOURNEYS}, message_states
    assert len(received) == JOURNEYS
    assert len(set(received)) == JOURNEYS, "a contact received the step's email twice"
