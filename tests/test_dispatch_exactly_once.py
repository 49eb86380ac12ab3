"""The outbox sends each message once: with two dispatchers racing, and across a dispatcher
killed in the middle of a batch. These tests commit for real (that is what they test), on the
end-to-end database, and count what reaches a local SMTP server."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import pytest

import odoo
from odoo import SUPERUSER_ID, api

from odoo.addons.gobysend_automation.tests.smtp_sink import SmtpSink

E2E_DB = os.environ.get("GOBYSEND_E2E_DB")
pytestmark = [
    pytest.mark.skipif(not E2E_DB, reason="needs the end-to-end database prepared by setup/run-tests"),
    # Recovery compares claim times with the clock: run again with it moved (see conftest.py).
    pytest.mark.time_sensitive,
]


@pytest.fixture(scope="module")
def registry():
    # Loading a registry in test mode would run the addons' own tests on it.
    test_enable = odoo.tools.config["test_enable"]
    odoo.tools.config["test_enable"] = False
    try:
        return odoo.modules.registry.Registry(E2E_DB)
    finally:
        odoo.tools.config["test_enable"] = test_enable


@pytest.fixture
def outbox(registry):
    """A workspace with an email channel, ``count`` subscribed contacts and one queued message
    each; everything committed, and removed afterwards. The channel hands ``slice_size`` messages
    to the SMTP server at a time and each message costs ``token_cost`` of a balance of 100."""
    created = {}

    def make(count, smtp_port, slice_size=32, token_cost=0):
        tag = uuid.uuid4().hex[:8]
        with registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {"tracking_disable": True})
            created["mail_server"] = (
                env["ir.mail_server"]
                .create(
                    {
                        "name": f"Sink {tag}",
                        "smtp_host": "127.0.0.1",
                        "smtp_port": smtp_port,
                        "smtp_encryption": "none",
                        "sequence": 1,
                    }
                )
                .id
            )
            workspace = env["gobysend.workspace"].create(
                {
                    "name": f"Exactly once {tag}",
                    "tz": "UTC",
                    "quiet_hours_start": 0,
                    "quiet_hours_end": 0,
                    "token_balance": 100,
                }
            )
            created["workspace"] = workspace.id
            channel = env["gobysend.channel"].create(
                {
                    "name": "Mail",
                    "workspace_id": workspace.id,
                    "channel_type": "email",
                    "provider": "email",
                    "state": "enabled",
                    "token_cost": token_cost,
                    "rate_limit": 0,
                    "max_parallel_requests": slice_size,
                    "sender": "shop@example.com",
                }
            )
            partners = env["res.partner"].create(
                [{"name": f"Contact {tag} {index}", "email": f"c{index}.{tag}@example.com"} for index in range(count)]
            )
            created["partners"] = partners.ids
            env["gobysend.subscription"].create([{"workspace_id": workspace.id, "partner_id": p.id} for p in partners])
            messages = env["gobysend.message"]
            for partner in partners:
                messages |= messages._enqueue(
                    partner, channel, "<p>Hello {{ contact.name }}</p>", subject="Hi {{ contact.name }}"
                )
            return channel.id, messages.ids

    yield make
    with registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        if "workspace" in created:
            env["mail.mail"].search([("gobysend_message_id.workspace_id", "=", created["workspace"])]).unlink()
            env["gobysend.workspace"].browse(created["workspace"]).unlink()
        env["res.partner"].browse(created.get("partners", [])).unlink()
        env["ir.mail_server"].browse(created.get("mail_server", [])).unlink()


def states(registry, message_ids):
    with registry.cursor() as cr:
        cr.execute(
            "SELECT id, state, reason, handed_over_at, sending_started_at FROM gobysend_message WHERE id = ANY(%s)",
            (message_ids,),
        )
        return {row[0]: (row[1], row[2], row[3], row[4]) for row in cr.fetchall()}


def wait_for_backends_to_end(registry, pid, timeout=30):
    """Until PostgreSQL has noticed that the killed process is gone and rolled its transaction
    back; in production, recovery runs minutes after a dispatcher dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with registry.cursor() as cr:
            cr.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s", (f"odoo-{pid}%",))
            if not cr.fetchone()[0]:
                return
        time.sleep(0.1)
    raise AssertionError(f"the database still serves the killed dispatcher {pid}")


def dispatch(registry, channel_id):
    with registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        env["gobysend.channel"].browse(channel_id)._job_dispatch(batch_size=5)


def test_two_dispatchers_send_each_message_exactly_once(registry, outbox):
    with SmtpSink() as sink:
        channel_id, message_ids = outbox(40, sink.port)
        errors = []

        def run():
            try:
                dispatch(registry, channel_id)
            except Exception as error:  # reported below: a thread cannot fail the test itself
                errors.append(error)

        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
    assert not errors, errors
    recipients = [received["to"][0] for received in sink.received]
    assert len(recipients) == 40
    assert len(set(recipients)) == 40, "a contact received the same message twice"
    assert {row[0] for row in states(registry, message_ids).values()} == {"sent"}


KILLED_DISPATCHER = textwrap.dedent(
    """
    import sys
    import odoo
    from odoo import SUPERUSER_ID, api
    from odoo.tools import config

    config.parse_config(["-d", sys.argv[1], "--addons-path=" + sys.argv[2], "--log-level=warn"])
    registry = odoo.modules.registry.Registry(sys.argv[1])
    with registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        env["gobysend.channel"].browse(int(sys.argv[3]))._job_dispatch(batch_size=10)
    """
)


def test_killed_dispatcher_loses_nothing_and_sends_nothing_twice(registry, outbox, tmp_path):
    script = tmp_path / "dispatcher.py"
    script.write_text(KILLED_DISPATCHER)
    with SmtpSink(hold_at=3) as sink:
        # One batch of six, handed to the SMTP server two at a time: [1 2] [3 4] [5 6].
        channel_id, message_ids = outbox(6, sink.port, slice_size=2, token_cost=1)
        process = subprocess.Popen(
            [sys.executable, str(script), E2E_DB, os.environ["GOBYSEND_ADDONS_PATH"], str(channel_id)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            # The third email has reached the server, which has not answered yet: kill the
            # dispatcher right there, between the provider taking the message and Odoo knowing it.
            assert sink.holding.wait(timeout=120), (
                process.stderr.read1().decode() if process.poll() is not None else "no third email"
            )
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
        sink.release.set()
        wait_for_backends_to_end(registry, process.pid)

        after_kill = states(registry, message_ids)
        sent_before = [mid for mid, (state, _r, *_t) in after_kill.items() if state == "sent"]
        assert len(sent_before) == 2, "the first slice's outcomes were committed with the second's hand-over"
        assert all(state in ("sent", "sending") for state, _r, *_t in after_kill.values()), after_kill

        # The dispatcher's time is up: recovery settles its messages, a new dispatcher goes on.
        with registry.cursor() as cr:
            cr.execute(
                """
                UPDATE gobysend_message
                   SET sending_started_at = sending_started_at - interval '11 minutes',
                       handed_over_at = handed_over_at - interval '11 minutes'
                 WHERE id = ANY(%s) AND state = 'sending'
                """,
                (message_ids,),
            )
        with registry.cursor() as cr:
            # The environment must outlive the call: the cursor flushes through a live one.
            env = api.Environment(cr, SUPERUSER_ID, {})
            requeued, uncertain = env["gobysend.message"]._recover_interrupted()
        assert (requeued, uncertain) == (2, 2), "the last slice never left; the second may have"
        after_recovery = states(registry, message_ids)
        assert sorted(state for state, _r, *_t in after_recovery.values()) == [
            "failed",
            "failed",
            "queued",
            "queued",
            "sent",
            "sent",
        ], after_recovery
        dispatch(registry, channel_id)

    final = states(registry, message_ids)
    received = [item["to"][0] for item in sink.received]
    # The third email reached the server before the kill; the fourth never did.
    assert len(received) == len(set(received)) == 5, "no contact got its email twice"
    assert sorted(state for state, _r, *_t in final.values()) == ["failed", "failed", "sent", "sent", "sent", "sent"], (
        after_kill,
        final,
    )
    for state, reason, *_t in final.values():
        if state == "failed":
            assert "may or may not have arrived" in reason
    with registry.cursor() as cr:
        cr.execute(
            """
            SELECT message.state, sum(ledger.amount)
              FROM gobysend_token_transaction ledger JOIN gobysend_message message ON message.id = ledger.message_id
             WHERE message.id = ANY(%s)
             GROUP BY message.id, message.state
            """,
            (message_ids,),
        )
        net_debits = sorted(cr.fetchall())
        cr.execute(
            "SELECT token_balance FROM gobysend_workspace WHERE id = (SELECT workspace_id FROM gobysend_message "
            "WHERE id = %s)",
            (message_ids[0],),
        )
        balance = cr.fetchone()[0]
    # Requeued messages got their tokens back before going out again: each message is charged once.
    assert net_debits == [("failed", -1), ("failed", -1)] + [("sent", -1)] * 4
    assert balance == 94
