"""The outbound calls of journeys: a webhook step's signed POST, made outside the journey batch.

A journey batch holds its journeys' rows locked for the whole transaction, so it never waits on
the network: the *Call a webhook* step only queues one call per (journey, step, iteration) — the
unique key makes a second queueing a no-op — and the journey waits on the step. A background job
(``_job_perform``) claims due calls under the claim protocol of ``claims``, and the claim's
commit records the attempt (``attempts + 1``) *before* the request leaves. The requests then go
out with no transaction open, side by side in the sending pool, and their outcomes are written in
a second short transaction that also wakes the journeys waiting on them.

A call interrupted between the two (a worker killed mid-request) has an unknown fate: it counts as
an attempt and is made again, with the same ``Idempotency-Key`` header and body, so the receiver
can recognise the repeat. A webhook is at-least-once towards the receiver and exactly-once for a
receiver that honours the key; a retried 5xx or timeout is no different.
"""

import logging
import queue
import time

import requests

from odoo import SUPERUSER_ID, _, api, fields, models
from odoo.tools import SQL

from odoo.addons.queue_job.job import identity_exact

from .. import claims, sending, transport
from ..tools import SIGNATURE_HEADER, retry_delays, signature_header

_logger = logging.getLogger(__name__)

CALL_CLAIMS = claims.ClaimedTable("gobysend_journey_call", "sending")
CALL_TIMEOUT = 10.0
CALL_BATCH_SIZE = 200
# How much of an answer is kept on the call, for a manager to read.
ANSWER_KEPT = 500
TIMESTAMP_HEADER = "X-Gobysend-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
USER_AGENT = "Gobysend-Odoo/18.0"
CALL_STATES = [("queued", "Queued"), ("sending", "Sending"), ("done", "Done"), ("failed", "Failed")]


class GobysendJourneyCall(models.Model):
    _name = "gobysend.journey.call"
    _description = "Gobysend Journey Call"
    _order = "id desc"
    _rec_name = "url"

    journey_id = fields.Many2one("gobysend.journey", required=True, ondelete="cascade", index=True, readonly=True)
    workspace_id = fields.Many2one("gobysend.workspace", required=True, ondelete="cascade", readonly=True)
    step_id = fields.Many2one("gobysend.campaign.step", required=True, ondelete="cascade", readonly=True)
    iteration = fields.Integer(readonly=True)
    state = fields.Selection(CALL_STATES, required=True, default="queued", readonly=True)
    url = fields.Char(readonly=True)
    payload = fields.Text(readonly=True)
    idempotency_key = fields.Char(readonly=True)
    attempts = fields.Integer(readonly=True)
    next_attempt_at = fields.Datetime(readonly=True)
    last_attempt_at = fields.Datetime(readonly=True)
    status_code = fields.Integer(string="HTTP Status", readonly=True)
    answer = fields.Text(readonly=True)
    reason = fields.Char(readonly=True)
    claim_token = fields.Char(readonly=True, copy=False, index="btree_not_null")

    _sql_constraints = [
        ("call_once", "unique(journey_id, step_id, iteration)", "A journey calls a step's webhook once per iteration.")
    ]

    def init(self):
        self.env.cr.execute(
            """
            CREATE INDEX IF NOT EXISTS gobysend_journey_call_due_idx
                ON gobysend_journey_call (next_attempt_at, id) WHERE state = 'queued'
            """
        )

    # ------------------------------------------------------------------
    # Queueing (in the journey batch's transaction)
    # ------------------------------------------------------------------

    @api.model
    def _calls_of(self, step, rows):
        """``{journey id: (state, reason, next_attempt_at)}`` of ``step``'s calls for ``rows``."""
        self.env.cr.execute(
            """
            SELECT c.journey_id, c.state, c.reason, c.next_attempt_at
              FROM gobysend_journey_call c
              JOIN unnest(%s::int[], %s::int[]) AS r (journey_id, iteration)
                ON r.journey_id = c.journey_id AND r.iteration = c.iteration
             WHERE c.step_id = %s
            """,
            [[row.id for row in rows], [row.iteration for row in rows], step.id],
        )
        return {journey_id: (state, reason, due) for journey_id, state, reason, due in self.env.cr.fetchall()}

    @api.model
    def _queue(self, step, rows, payloads, now):
        """Queue ``step``'s call for each journey of ``rows`` (``payloads``: journey id -> JSON
        text), once per (journey, step, iteration); set-based, as a batch holds thousands."""
        if not rows:
            return
        self.env.flush_all()
        # One INSERT for the group; the unique key makes queueing again a no-op.
        self.env.cr.execute(
            """
            INSERT INTO gobysend_journey_call (journey_id, workspace_id, step_id, iteration, state, url, payload,
                                               idempotency_key, attempts, next_attempt_at,
                                               create_uid, create_date, write_uid, write_date)
            SELECT r.journey_id, r.workspace_id, %(step)s, r.iteration, 'queued', %(url)s, r.payload,
                   'journey-' || r.journey_id || '-' || %(step)s || '-' || r.iteration, 0, %(now)s,
                   %(uid)s, %(now)s, %(uid)s, %(now)s
              FROM unnest(%(ids)s::int[], %(workspaces)s::int[], %(iterations)s::int[], %(payloads)s::text[])
                   AS r (journey_id, workspace_id, iteration, payload)
                ON CONFLICT (journey_id, step_id, iteration) DO NOTHING
            """,
            {
                "step": step.id,
                "url": step.hook_url,
                "now": now,
                "uid": self.env.uid,
                "ids": [row.id for row in rows],
                "workspaces": [row.workspace_id for row in rows],
                "iterations": [row.iteration for row in rows],
                "payloads": [payloads[row.id] for row in rows],
            },
        )

    @api.model
    def _enqueue_perform(self):
        """Make sure a job making the due calls is pending; created in the current transaction,
        so it exists once the calls it makes do. Owned by the engine's user, as journeys' jobs are."""
        Journey = self.env["gobysend.journey"]
        self.env["gobysend.journey.call"].with_user(SUPERUSER_ID).with_delay(
            channel=Journey._get_job_channel(),
            identity_key=identity_exact,
            description=_("Call the webhooks of journeys"),
        )._job_perform()

    # ------------------------------------------------------------------
    # Performing (a background job; no transaction open during requests)
    # ------------------------------------------------------------------

    @api.model
    def _job_perform(self, now=None, batch_size=CALL_BATCH_SIZE, time_budget=50.0):
        """Make the due calls in claimed batches. Safe to run twice and on several servers."""
        started = time.monotonic()
        done = 0
        self._recover_interrupted(now)
        while time.monotonic() - started < time_budget:
            claim = self._claim_due(batch_size, now)
            if not claim:
                break
            done += self._perform_claimed(claim, now)
        return _("%(count)s webhook calls made.", count=done)

    @api.model
    def _claim_due(self, limit, now=None):
        now = now or fields.Datetime.now()
        with self.env.registry.cursor() as cr:
            # The claim's commit is the attempt's record: attempts counts every request that may
            # have left, even one whose worker died before writing its outcome.
            return CALL_CLAIMS.claim(
                cr,
                # Only for journeys still waiting on the call, in a running campaign: a journey
                # stopped or a campaign paused meanwhile calls no one.
                SQL(
                    """state = 'queued' AND next_attempt_at <= %s
                       AND EXISTS (SELECT 1 FROM gobysend_journey j JOIN gobysend_campaign c ON c.id = j.campaign_id
                                    WHERE j.id = journey_id AND j.step_id = gobysend_journey_call.step_id
                                      AND j.iteration = gobysend_journey_call.iteration
                                      AND j.state IN ('active', 'waiting', 'running') AND c.state = 'running')""",
                    now,
                ),
                SQL("next_attempt_at, id"),
                limit,
                SQL("attempts = attempts + 1, last_attempt_at = %s", now),
                now=now,
            )

    @api.model
    def _perform_claimed(self, claim, now=None):
        now = now or fields.Datetime.now()
        with self.env.registry.cursor() as cr:
            # Only what the requests need; the secret is read here and never written to the call.
            cr.execute(
                """
                SELECT c.id, c.url, c.payload, c.idempotency_key, c.attempts, s.hook_secret, s.hook_retry_delays
                  FROM gobysend_journey_call c JOIN gobysend_campaign_step s ON s.id = c.step_id
                 WHERE c.id = ANY(%s)
                """,
                [claim.ids],
            )
            calls = cr.fetchall()
            allowed_networks = self.env(cr=cr)["gobysend.channel"]._get_outbound_allowed_networks()
        answers = queue.SimpleQueue()
        for call_id, url, payload, key, attempts, secret, _delays in calls:
            body = (payload or "{}").encode()
            stamp = time.time()
            headers = {
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                SIGNATURE_HEADER: signature_header(secret or "", stamp, body),
                TIMESTAMP_HEADER: str(int(stamp)),
                IDEMPOTENCY_HEADER: key,
                "X-Gobysend-Attempt": str(attempts),
            }
            request = sending.OutgoingRequest(
                "POST", url, data=body, headers=headers, timeout=CALL_TIMEOUT, allow_redirects=False
            )
            sending.submit(request, answers, call_id, allowed_networks)
        results = {}
        for _call in calls:
            call_id, response, error = answers.get()
            results[call_id] = (response, error)
        with self.env.registry.cursor() as cr:
            try:
                claim.beat(cr, now)
            except claims.ClaimLost:
                _logger.warning(
                    "Webhook calls of claim %s were recovered meanwhile; their outcomes are dropped.", claim
                )
                return 0
            env = self.env(cr=cr)
            outcomes = []
            for call_id, _url, _payload, _key, attempts, _secret, delays in calls:
                response, error = results[call_id]
                verdict, status, answer, reason = env["gobysend.journey.call"]._judge(response, error)
                try:
                    pauses = retry_delays(delays)
                except ValueError:
                    pauses = []
                if verdict == "retry" and attempts <= len(pauses):
                    outcomes.append((call_id, "queued", now + pauses[attempts - 1], status, answer, reason))
                elif verdict == "retry":
                    reason = _("%(reason)s (after %(count)s attempts)", reason=reason, count=attempts)
                    outcomes.append((call_id, "failed", None, status, answer, reason))
                else:
                    outcomes.append((call_id, verdict, None, status, answer, reason))
            env["gobysend.journey.call"]._record(claim, outcomes, now)
            claim.end(cr)
        return len(calls)

    @api.model
    def _judge(self, response, error):
        """``(verdict, status, answer, reason)`` of one request: verdict ``done``, ``retry``
        (connection error, timeout, 429, 5xx) or ``failed`` (refused address, redirect, other 4xx...)."""
        if error is not None:
            if isinstance(error, transport.DestinationRefused):
                reason = _(
                    "The webhook %(host)s resolves to %(address)s, a %(kind)s address: calls reach public addresses "
                    "only, unless an Odoo administrator lists the network in the system parameter %(parameter)s.",
                    host=error.host,
                    address=error.address,
                    kind=error.kind,
                    parameter=transport.ALLOWED_NETWORKS_PARAMETER,
                )
                return "failed", 0, None, reason
            if isinstance(error, transport.AnswerTooLarge):
                reason = _(
                    "The webhook answered with more than %(size)s KiB; the answer was not read.",
                    size=error.limit // 1024,
                )
                return "failed", 0, None, reason
            if isinstance(
                error,
                requests.exceptions.InvalidURL | requests.exceptions.MissingSchema | requests.exceptions.InvalidSchema,
            ):
                return "failed", 0, None, _("The webhook URL is not valid.")
            if isinstance(error, requests.Timeout):
                return (
                    "retry",
                    0,
                    None,
                    _("The webhook did not answer within %(seconds)s seconds.", seconds=CALL_TIMEOUT),
                )
            if isinstance(error, requests.RequestException):
                return "retry", 0, None, _("Could not reach the webhook: %(error)s", error=type(error).__name__)
            _logger.error("A webhook call failed unexpectedly", exc_info=error)
            return "failed", 0, None, _("An unexpected error stopped the call: %(error)s", error=error)
        status = response.status_code
        answer = (response.text or "")[:ANSWER_KEPT]
        if status < 300:
            return "done", status, answer, None
        if status < 400:
            return "failed", status, answer, _("The webhook answered with a redirect (HTTP %(status)s).", status=status)
        if status == 429 or status >= 500:
            return "retry", status, answer, _("The webhook answered HTTP %(status)s.", status=status)
        return "failed", status, answer, _("The webhook refused the call (HTTP %(status)s).", status=status)

    @api.model
    def _record(self, claim, outcomes, now):
        """Write the calls' ``outcomes`` (id, state, next attempt, status, answer, reason) while
        ``claim`` holds them, and wake the journeys waiting on them: at once when the call is
        over, at the next attempt when it is retried."""
        cr = self.env.cr
        # SQL: one UPDATE for the batch, conditional on the claim (see claims).
        cr.execute(
            SQL(
                """
                UPDATE gobysend_journey_call c
                   SET state = o.state, next_attempt_at = COALESCE(o.next_at, c.next_attempt_at),
                       status_code = o.status, answer = o.answer, reason = o.reason, claim_token = NULL,
                       write_date = %(now)s
                  FROM unnest(%(ids)s::int[], %(states)s::varchar[], %(nexts)s::timestamp[], %(statuses)s::int[],
                              %(answers)s::text[], %(reasons)s::varchar[])
                       AS o (id, state, next_at, status, answer, reason)
                 WHERE c.id = o.id AND %(held)s
             RETURNING c.journey_id, c.step_id, c.iteration, COALESCE(o.next_at, %(now)s)
                """,
                now=now,
                ids=[outcome[0] for outcome in outcomes],
                states=[outcome[1] for outcome in outcomes],
                nexts=[outcome[2] for outcome in outcomes],
                statuses=[outcome[3] or None for outcome in outcomes],
                answers=[outcome[4] for outcome in outcomes],
                reasons=[str(outcome[5]) if outcome[5] else None for outcome in outcomes],
                held=claim.held_condition("c"),
            )
        )
        wakes = cr.fetchall()
        self.invalidate_model()
        if not wakes:
            return
        cr.execute(
            """
            UPDATE gobysend_journey j SET wake_at = w.wake, wait_until = w.wake
              FROM unnest(%s::int[], %s::int[], %s::int[], %s::timestamp[]) AS w (journey_id, step_id, iteration, wake)
             WHERE j.id = w.journey_id AND j.step_id = w.step_id AND j.iteration = w.iteration AND j.state = 'waiting'
            """,
            [[w[0] for w in wakes], [w[1] for w in wakes], [w[2] for w in wakes], [w[3] for w in wakes]],
        )
        self.env["gobysend.journey"].invalidate_model()
        if any(wake[3] <= now for wake in wakes):
            self.env["gobysend.journey"]._enqueue_advance(lanes=1)

    @api.model
    def _recover_interrupted(self, now=None):
        """Calls whose worker stopped beating: the request may have left, so it counts as an
        attempt and is made again (same idempotency key) while attempts remain; else it fails."""
        now = now or fields.Datetime.now()
        with self.env.registry.cursor() as cr:
            orphans = CALL_CLAIMS.revoke_stale(cr, now)
            if not orphans:
                return 0
            cr.execute(
                """
                SELECT c.id, c.attempts, s.hook_retry_delays FROM gobysend_journey_call c
                  JOIN gobysend_campaign_step s ON s.id = c.step_id WHERE c.id = ANY(%s)
                """,
                [orphans],
            )
            unknown = _("The previous attempt was interrupted; its outcome is unknown.")
            for call_id, attempts, delays in cr.fetchall():
                try:
                    left = attempts <= len(retry_delays(delays))
                except ValueError:
                    left = False
                cr.execute(
                    """
                    UPDATE gobysend_journey_call SET state = %s, next_attempt_at = %s, reason = %s, claim_token = NULL
                     WHERE id = %s
                    """,
                    ("queued" if left else "failed", now, str(unknown), call_id),
                )
            return len(orphans)
