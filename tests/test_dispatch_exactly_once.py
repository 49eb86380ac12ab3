"""The outbox sends each message once: with two dispatchers racing, and across a dispatcher
killed in the middle of a batch. These tests commit for real (that is what they test), on the
end-to-end database, and count what reaches a local SMTP server."""

import http.server
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from odoo import SUPERUSER_ID, api
from odoo.service.model import retrying

from odoo.addons.gobysend_automation.tests.smtp_sink import SmtpSink

E2E_DB = os.environ.get("GOBYSEND_E2E_DB")
pytestmark = [
    pytest.mark.skipif(not E2E_DB, reason="needs the end-to-end database prepared by setup/run-tests"),
    # Recovery compares claim times with the clock: run again with it moved (see conftest.py).
    pytest.mark.time_sensitive,
]


@pytest.fixture
def outbox(registry, sink_workspace):
    """A workspace with an email channel, ``count`` subscribed contacts and one queued message
    each; everything committed, and removed afterwards. The channel hands ``slice_size`` messages
    to the SMTP server at a time and each message costs ``token_cost`` of a balance of 100."""

    def make(count, smtp_port, slice_size=32, token_cost=0, body=None, per_contact=1, **workspace_values):
        with registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {"tracking_disable": True})
            _workspace, channel, partners = sink_workspace(
                env,
                smtp_port,
                count,
                "Exactly once",
                {"token_cost": token_cost, "max_parallel_requests": slice_size},
                token_balance=100,
                **workspace_values,
            )
            messages = env["gobysend.message"]
            for partner in partners:
                for _number in range(per_contact):
                    messages |= messages._enqueue(
                        partner, channel, body or "<p>Hello {{ contact.name }}</p>", subject="Hi {{ contact.name }}"
                    )
            return channel.id, messages.ids

    return make


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


def dispatch(registry, channel_id, batch_size=5):
    with registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        env["gobysend.channel"].browse(channel_id)._job_dispatch(batch_size=batch_size)


def age_claims(registry, message_ids, minutes=11):
    """Move the claims of these messages ``minutes`` into the past: their dispatcher has not
    beaten for that long."""
    with registry.cursor() as cr:
        cr.execute(
            """
            UPDATE gobysend_message
               SET sending_started_at = sending_started_at - make_interval(mins => %s),
                   handed_over_at = handed_over_at - make_interval(mins => %s)
             WHERE id = ANY(%s) AND state = 'sending'
            """,
            (minutes, minutes, message_ids),
        )
        cr.execute(
            """
            UPDATE gobysend_claim SET heartbeat_at = heartbeat_at - make_interval(mins => %s)
             WHERE token IN (SELECT claim_token FROM gobysend_message WHERE id = ANY(%s))
            """,
            (minutes, message_ids),
        )


def recover(registry):
    with registry.cursor() as cr:
        # The environment must outlive the call: the cursor flushes through a live one.
        env = api.Environment(cr, SUPERUSER_ID, {})
        return env["gobysend.message"]._recover_interrupted()


def start_dispatcher(tmp_path, channel_id, batch_size=10):
    """A dispatcher in a process of its own, which the test can stop and kill."""
    script = tmp_path / "dispatcher.py"
    script.write_text(DISPATCHER)
    return subprocess.Popen(
        [sys.executable, str(script), E2E_DB, os.environ["GOBYSEND_ADDONS_PATH"], str(channel_id), str(batch_size)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


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


DISPATCHER = textwrap.dedent(
    """
    import sys
    import odoo
    from odoo import SUPERUSER_ID, api
    from odoo.tools import config

    config.parse_config(["-d", sys.argv[1], "--addons-path=" + sys.argv[2], "--log-level=warn"])
    registry = odoo.modules.registry.Registry(sys.argv[1])
    with registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        env["gobysend.channel"].browse(int(sys.argv[3]))._job_dispatch(batch_size=int(sys.argv[4]))
    """
)


def test_killed_dispatcher_loses_nothing_and_sends_nothing_twice(registry, outbox, tmp_path):
    with SmtpSink(hold_at=3) as sink:
        # One batch of six, handed to the SMTP server two at a time: [1 2] [3 4] [5 6].
        channel_id, message_ids = outbox(6, sink.port, slice_size=2, token_cost=1)
        process = start_dispatcher(tmp_path, channel_id)
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
        age_claims(registry, message_ids)
        requeued, uncertain = recover(registry)
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


def test_paused_dispatcher_loses_its_claim_and_sends_nothing_twice(registry, outbox, tmp_path):
    with SmtpSink(hold_at=1) as sink:
        # One batch of six, handed to the SMTP server two at a time: [1 2] [3 4] [5 6].
        channel_id, message_ids = outbox(6, sink.port, slice_size=2)
        process = start_dispatcher(tmp_path, channel_id)
        try:
            # The first email has reached the server, which has not answered yet: the dispatcher
            # stops right there (a long garbage collection, a hung host, a full disk...).
            assert sink.holding.wait(timeout=120), (
                process.stderr.read1().decode() if process.poll() is not None else "no first email"
            )
            process.send_signal(signal.SIGSTOP)
            # Longer than the recovery delay: recovery takes its batch, a second dispatcher sends it.
            age_claims(registry, message_ids)
            assert recover(registry) == (4, 2), "the first slice may have left; the others surely did not"
            dispatch(registry, channel_id)
            sent_by_second = [item["to"][0] for item in sink.received[1:]]
            assert len(sent_by_second) == len(set(sent_by_second)) == 4, sent_by_second
            # The first dispatcher wakes up with its slice answered, and goes on.
            sink.release.set()
            process.send_signal(signal.SIGCONT)
            assert process.wait(timeout=120) == 0, process.stderr.read().decode()
        finally:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.kill()

    final = states(registry, message_ids)
    received = [item["to"][0] for item in sink.received]
    # The first slice finished leaving; the rest, the second dispatcher's now, was not sent again.
    assert len(received) == len(set(received)) == 6, received
    assert sorted(state for state, _r, *_t in final.values()) == ["failed", "failed", "sent", "sent", "sent", "sent"]
    with registry.cursor() as cr:
        cr.execute("SELECT count(*) FROM gobysend_claim WHERE table_name = 'gobysend_message'")
        leftover_claims = cr.fetchone()[0]
    assert not leftover_claims, "every claim ended or was revoked"


def test_frequency_cap_holds_across_two_dispatchers(registry, outbox):
    with SmtpSink(hold_at=1) as sink:
        # One contact, capped at one message a day, with two messages due.
        channel_id, message_ids = outbox(1, sink.port, per_contact=2, frequency_cap_daily=1)
        errors = []

        def first_dispatcher():
            try:
                dispatch(registry, channel_id, batch_size=1)
            except Exception as error:  # reported below: a thread cannot fail the test itself
                errors.append(error)

        first = threading.Thread(target=first_dispatcher)
        first.start()
        try:
            # The first message is on its way, not yet answered: a second dispatcher takes the other.
            assert sink.holding.wait(timeout=120), errors
            dispatch(registry, channel_id, batch_size=1)
        finally:
            sink.release.set()
            first.join(timeout=120)
    assert not errors, errors
    assert len(sink.received) == 1, "the contact got more messages than its cap allows"
    final = states(registry, message_ids)
    assert sorted(state for state, _r, *_t in final.values()) == ["sent", "skipped"], final
    (reason,) = [reason for state, reason, *_t in final.values() if state == "skipped"]
    assert "Frequency cap" in reason


class LinkPageServer(http.server.ThreadingHTTPServer):
    """The shop's web page behind a tracked link. Odoo fetches it for the link's title when it
    creates the tracked link: the first fetch is answered once a second one arrives, the second
    once ``answer_second`` is set (each within link preview's own time limit of 3 seconds)."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), LinkPageHandler)
        self.fetches = []
        self.second_arrived = threading.Event()
        self.answer_second = threading.Event()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/sale"


class LinkPageHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.fetches.append(self.path)
        if len(self.server.fetches) == 1:
            self.server.second_arrived.wait(timeout=2.5)
        else:
            self.server.second_arrived.set()
            self.server.answer_second.wait(timeout=2.5)
        page = b"<html><head><title>Sale</title></head><body>Sale</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(page)))
        self.end_headers()
        self.wfile.write(page)


def test_two_dispatchers_creating_one_tracked_link_both_send(registry, outbox):
    page = LinkPageServer()
    threading.Thread(target=page.serve_forever, daemon=True).start()
    try:
        with SmtpSink() as sink:
            channel_id, message_ids = outbox(2, sink.port, body=f'<p><a href="{page.url}">Sale</a></p>')
            errors = []

            def run():
                try:
                    dispatch(registry, channel_id, batch_size=1)
                except Exception as error:  # reported below: a thread cannot fail the test itself
                    errors.append(error)

            # Each dispatcher finds no tracked link for the page and creates one; the first
            # commits its link and sends while the second is still creating its own.
            threads = [threading.Thread(target=run) for _ in range(2)]
            threads[0].start()
            deadline = time.monotonic() + 60
            while not page.fetches and time.monotonic() < deadline:
                time.sleep(0.01)
            threads[1].start()
            while not sink.received and time.monotonic() < deadline:
                time.sleep(0.01)
            page.answer_second.set()
            for thread in threads:
                thread.join(timeout=120)
    finally:
        page.shutdown()
        page.server_close()
    assert len(page.fetches) == 2, "both dispatchers created the link at the same time"
    assert not errors, errors
    assert {state for state, _r, *_t in states(registry, message_ids).values()} == {"sent"}
    recipients = [item["to"][0] for item in sink.received]
    assert len(recipients) == len(set(recipients)) == 2
    with registry.cursor() as cr:
        cr.execute("SELECT count(*) FROM link_tracker WHERE url = %s", (page.url,))
        assert cr.fetchone()[0] == 1, "the second dispatcher used the first one's link"


TOUCH_CHANNEL = "UPDATE gobysend_channel SET sequence = sequence + 1 WHERE id = %s"


@pytest.mark.parametrize("action", ["send_test", "wizard"])
def test_retried_request_sends_once(registry, outbox, action):
    """A request whose transaction fails to commit is run again by Odoo: what it sent the first
    time must not be sent again."""
    with SmtpSink() as sink:
        channel_id, _message_ids = outbox(1, sink.port)
        with registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            channel = env["gobysend.channel"].browse(channel_id)
            partner = env["gobysend.subscription"].search([("workspace_id", "=", channel.workspace_id.id)]).partner_id
            channel.test_partner_id = partner
        attempts = []
        with registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            channel = env["gobysend.channel"].browse(channel_id)

            def request():
                attempts.append(len(attempts) + 1)
                if action == "send_test":
                    result = channel.action_send_test()
                else:
                    wizard = (
                        env["gobysend.send.message.wizard"]
                        .with_context(active_model="res.partner", active_ids=partner.ids)
                        .create({"channel_id": channel_id, "subject": "Offer", "body": "<p>Offer</p>"})
                    )
                    result = wizard.action_send()
                if len(attempts) == 1:
                    # Another transaction changed the channel since this one began: it cannot
                    # commit, and Odoo runs the request again.
                    with registry.cursor() as other:
                        other.execute(TOUCH_CHANNEL, (channel_id,))
                    cr.execute(TOUCH_CHANNEL, (channel_id,))
                return result

            retrying(request, env)
        assert attempts == [1, 2]
        with registry.cursor() as cr:
            cr.execute(
                "SELECT state FROM gobysend_message WHERE channel_id = %s AND partner_id = %s AND state <> 'queued'",
                (channel_id, partner.id),
            )
            sent_states = [row[0] for row in cr.fetchall()]
    assert len(sink.received) == 1, [item["message"]["Subject"] for item in sink.received]
    assert sent_states == ["sent"]
