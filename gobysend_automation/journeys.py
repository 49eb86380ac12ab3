"""The journey engine: takes a batch of journeys through their steps, set-based.

A batch is the journeys one worker holds: claimed (``claims``) from the due journeys, or just
inserted by the transaction that started them. The batch runs each group of journeys standing at
the same step through the step's kind (``kinds``) at once, then moves every journey on: to the
next step (run in the same batch when it is due now), to a wait, or to its end. Each step a
journey finishes leaves one row in the step log, unique per (journey, step, iteration): the log
insert, the step's effects (an outbox message, an attribute written) and the journey's new
position commit together, so a step never runs twice, and a batch that dies leaves nothing of
its work behind.

Nothing leaves Odoo here: a send step puts messages into the outbox, whose dispatch sends them
in its own jobs.
"""

import collections
import datetime
import json
import logging

from odoo import fields
from odoo.tools import SQL

from . import claims, kinds
from .kinds.steps import goal as goal_kind

_logger = logging.getLogger(__name__)

# The states of a queued job that has not started yet (queue_job's identity check looks at them).
PENDING_JOB_STATES = ("wait_dependencies", "pending", "enqueued")

JOURNEY_CLAIMS = claims.ClaimedTable("gobysend_journey", "running")
# A journey goes through at most this many steps in one batch (a guard against a loop).
MAX_HOPS = 64
ACTIVE_STATES = ("active", "waiting", "running")
# The longest a test journey waits at a step.
TEST_WAIT = datetime.timedelta(minutes=1)

JourneyRow = collections.namedtuple(
    "JourneyRow",
    "id campaign_id workspace_id partner_id step_id iteration wait_until res_model res_id context tz is_test",
)


class JourneyBatch:
    """Journeys taken through their steps in one transaction (``env``'s)."""

    def __init__(self, env, now=None):
        self.env = env
        self.now = now or fields.Datetime.now()
        self.channels = set()  # channels that got messages: their dispatch is woken after commit
        self.logs = []  # (journey, step, iteration, outcome)
        self.ends = {}  # journey id -> (state, reason)
        self.moves = {}  # journey id -> (step id, state, wake_at, wait_until)
        self._next = {}  # (step id, branch) -> the step after it (a batch walks the tree once)
        self._first = {}  # campaign id -> its first step
        self.converted = set()  # journeys that reached their campaign's goal

    def load(self, ids):
        """The journeys ``ids`` as rows, with what their steps need to know."""
        if not ids:
            return []
        self.env.cr.execute(
            """
            SELECT j.id, j.campaign_id, j.workspace_id, j.partner_id, j.step_id, j.iteration, j.wait_until,
                   j.res_model, j.res_id, j.trigger_context, COALESCE(p.tz, w.tz, 'UTC'), j.is_test
              FROM gobysend_journey j
              JOIN res_partner p ON p.id = j.partner_id
              JOIN gobysend_workspace w ON w.id = j.workspace_id
             WHERE j.id = ANY(%s)
             ORDER BY j.id
            """,
            [list(ids)],
        )
        return [JourneyRow(*row) for row in self.env.cr.fetchall()]

    def run(self, rows):
        """Take ``rows`` as far as they go now; return the number of steps run."""
        Step = self.env["gobysend.campaign.step"].sudo()  # sudo: the engine runs every workspace's steps
        Campaign = self.env["gobysend.campaign"].sudo()  # sudo: as above
        steps_run = 0
        pending = self._leave_off_audience(self._leave_converted(rows))
        hops = 0
        while pending and hops < MAX_HOPS:
            hops += 1
            groups = collections.defaultdict(list)
            for row in pending:
                step_id = row.step_id
                if not step_id:
                    if row.campaign_id not in self._first:
                        self._first[row.campaign_id] = Step._first_of(Campaign.browse(row.campaign_id))
                    first = self._first[row.campaign_id]
                    if not first:
                        self.ends[row.id] = ("completed", None)
                        continue
                    step_id = first.id
                    row = row._replace(step_id=step_id)
                groups[step_id].append(row)
            pending = []
            for step_id, group in groups.items():
                step = Step.browse(step_id)
                kind = kinds.STEPS.get(step.kind)
                if kind is None or not step.exists():
                    for row in group:
                        self.ends[row.id] = ("failed", f"Step {step_id} no longer exists.")
                    continue
                outcomes = kind.run(self, step, group)
                steps_run += len(group)
                for row, outcome in zip(group, outcomes, strict=True):
                    follow = self._apply(step, row, outcome)
                    if follow is not None:
                        pending.append(follow)
        for row in pending:
            # Still going after MAX_HOPS: the rest waits for the next batch.
            self.moves[row.id] = (row.step_id, "active", self.now, None)
        return steps_run

    def _leave_off_audience(self, rows):
        """Journeys of campaigns set to re-check their audience (``leave_off_audience``) whose
        contact is no longer in it exit before their next step: one search per campaign, with the
        rights of who set its filter, as the launch's."""
        by_campaign = collections.defaultdict(list)
        for row in rows:
            by_campaign[row.campaign_id].append(row)
        Campaign = self.env["gobysend.campaign"].sudo()  # sudo: the engine runs every workspace's campaigns
        kept = []
        for campaign_id, group in by_campaign.items():
            campaign = Campaign.browse(campaign_id)
            kind = kinds.TRIGGERS.get(campaign.trigger_kind)
            if not (campaign.leave_off_audience and kind and kind.uses_audience) or all(row.is_test for row in group):
                kept += group
                continue
            Partner = campaign._contacts_model()
            audience = campaign._get_audience_query(self.now)
            inside = set(
                Partner.search(
                    [
                        ("id", "in", list({row.partner_id for row in group})),
                        ("id", "in", audience.subselect()),
                    ]
                ).ids
            )
            for row in group:
                if row.is_test or row.partner_id in inside:
                    kept.append(row)
                else:
                    self.ends[row.id] = ("exited", self.env._("No longer in the campaign's audience."))
        return kept

    def _leave_converted(self, rows):
        """Journeys that reached their campaign's goal: those of a campaign with a goal step jump
        to it (and go on from there, converted); those of a campaign with only a goal event
        (performed since entering) leave, counted as converted. Returns the rows to run, the
        jumped ones standing at their goal step. One query per goal step and one for the goal
        events, whatever the number of journeys."""
        by_campaign = collections.defaultdict(list)
        for row in rows:
            by_campaign[row.campaign_id].append(row)
        Step = self.env["gobysend.campaign.step"].sudo()  # sudo: the engine runs every workspace's steps
        goal_steps = Step.search([("campaign_id", "in", list(by_campaign)), ("kind", "=", "goal")], order="id")
        jumped = {}
        for goal in goal_steps:
            candidates = [row.id for row in by_campaign[goal.campaign_id.id] if row.step_id != goal.id]
            if not candidates:
                continue
            self.env.cr.execute(
                SQL(
                    "SELECT j.id FROM gobysend_journey j WHERE j.id = ANY(%s) AND j.converted IS NOT TRUE AND %s",
                    candidates,
                    goal_kind.goal_test(self.env, goal),
                )
            )
            for (journey_id,) in self.env.cr.fetchall():
                jumped[journey_id] = goal.id
        self.converted |= set(jumped)
        rows = [row._replace(step_id=jumped[row.id], wait_until=None) if row.id in jumped else row for row in rows]
        self.env.cr.execute(
            "SELECT id, goal_event_name FROM gobysend_campaign WHERE id = ANY(%s) AND goal_event_name IS NOT NULL",
            [list(by_campaign)],
        )
        goal_of = dict(self.env.cr.fetchall())
        if not goal_of:
            return list(rows)
        candidates = [row.id for campaign_id in goal_of for row in by_campaign[campaign_id] if row.id not in jumped]
        self.env.cr.execute(
            """
            SELECT j.id FROM gobysend_journey j JOIN gobysend_campaign c ON c.id = j.campaign_id
             WHERE j.id = ANY(%s) AND j.converted IS NOT TRUE
               AND EXISTS (SELECT 1 FROM gobysend_event e
                            WHERE e.workspace_id = j.workspace_id AND e.partner_id = j.partner_id
                              AND e.name = c.goal_event_name AND e.timestamp >= j.entered_at)
            """,
            [candidates],
        )
        leaving = {row[0] for row in self.env.cr.fetchall()}
        self.converted |= leaving
        for journey_id in leaving:
            self.ends[journey_id] = ("exited", self.env._("Reached the campaign's goal."))
        return [row for row in rows if row.id not in leaving]

    def _apply(self, step, row, outcome):
        """Record ``outcome`` of ``step`` for ``row``; return the row moved on when it goes on
        at once, else None."""
        if outcome.action == "wait":
            until = outcome.until
            if row.is_test:
                # A test journey shows the whole workflow in minutes: each of its waits (a
                # delay, a time of day, an event's timeout) is shortened to TEST_WAIT.
                until = min(until, self.now + TEST_WAIT)
            self.moves[row.id] = (step.id, "waiting", until, until)
            return None
        self.logs.append((row.id, step.id, row.iteration, outcome))
        following = self.next_step(step, outcome.branch)
        if outcome.action in ("exit", "fail") or not following:
            # Ending: a move recorded earlier in this batch gives way to the end.
            self.moves.pop(row.id, None)
        if outcome.action == "exit":
            self.ends[row.id] = ("exited", outcome.reason)
            return None
        if outcome.action == "fail":
            self.ends[row.id] = ("failed", outcome.reason)
            return None
        if not following:
            self.ends[row.id] = ("completed", None)
            return None
        self.moves[row.id] = (following.id, "active", self.now, None)
        return row._replace(step_id=following.id, wait_until=None)

    def next_step(self, step, branch=None):
        key = (step.id, branch)
        if key not in self._next:
            self._next[key] = step._next_step(branch)
        return self._next[key]

    def save(self, claim=None):
        """Write the step log and every journey's new position; with ``claim``, only for the
        journeys the claim still holds (and out of it). Returns the ids of the journeys written."""
        cr = self.env.cr
        if self.logs:
            cr.execute(
                """
                INSERT INTO gobysend_journey_log (journey_id, step_id, iteration, outcome, branch, reason,
                                                  message_id, executed_at)
                SELECT * FROM unnest(%s::int[], %s::int[], %s::int[], %s::varchar[], %s::varchar[], %s::varchar[],
                                     %s::int[], %s::timestamp[])
                    ON CONFLICT (journey_id, step_id, iteration) DO NOTHING
                """,
                [
                    [log[0] for log in self.logs],
                    [log[1] for log in self.logs],
                    [log[2] for log in self.logs],
                    [log[3].action for log in self.logs],
                    [log[3].branch for log in self.logs],
                    [str(log[3].reason) if log[3].reason else None for log in self.logs],
                    [log[3].message_id for log in self.logs],
                    [self.now] * len(self.logs),
                ],
            )
        held = SQL("TRUE") if claim is None else claim.held_condition("j")
        written = []
        if self.moves:
            ids = list(self.moves)
            cr.execute(
                SQL(
                    """
                    UPDATE gobysend_journey j
                       SET step_id = m.step_id, state = m.state, wake_at = m.wake_at, wait_until = m.wait_until,
                           claim_token = NULL, write_date = %(now)s,
                           converted = j.converted OR j.id = ANY(%(converted)s),
                           converted_at = CASE WHEN j.id = ANY(%(converted)s) AND j.converted_at IS NULL
                                               THEN %(now)s ELSE j.converted_at END
                      FROM unnest(%(ids)s::int[], %(steps)s::int[], %(states)s::varchar[], %(wakes)s::timestamp[],
                                  %(waits)s::timestamp[]) AS m (id, step_id, state, wake_at, wait_until)
                     WHERE j.id = m.id AND %(held)s
                 RETURNING j.id
                    """,
                    now=self.now,
                    ids=ids,
                    steps=[self.moves[i][0] for i in ids],
                    states=[self.moves[i][1] for i in ids],
                    wakes=[self.moves[i][2] for i in ids],
                    waits=[self.moves[i][3] for i in ids],
                    converted=list(self.converted),
                    held=held,
                )
            )
            written += [row[0] for row in cr.fetchall()]
        if self.ends:
            ids = list(self.ends)
            cr.execute(
                SQL(
                    """
                    UPDATE gobysend_journey j
                       SET state = e.state, reason = e.reason, ended_at = %(now)s, wake_at = NULL,
                           wait_until = NULL, claim_token = NULL, write_date = %(now)s,
                           converted = j.converted OR j.id = ANY(%(converted)s),
                           converted_at = CASE WHEN j.id = ANY(%(converted)s) AND j.converted_at IS NULL
                                               THEN %(now)s ELSE j.converted_at END,
                           -- "Once at a time": the contact may enter again once this journey ended.
                           entry_key = CASE WHEN c.reentry = 'once_at_a_time' THEN NULL ELSE j.entry_key END
                      FROM unnest(%(ids)s::int[], %(states)s::varchar[], %(reasons)s::varchar[])
                           AS e (id, state, reason),
                           gobysend_campaign c
                     WHERE j.id = e.id AND c.id = j.campaign_id AND %(held)s
                 RETURNING j.id
                    """,
                    now=self.now,
                    ids=ids,
                    states=[self.ends[i][0] for i in ids],
                    reasons=[str(self.ends[i][1]) if self.ends[i][1] else None for i in ids],
                    converted=list(self.converted),
                    held=held,
                )
            )
            written += [row[0] for row in cr.fetchall()]
        self.env["gobysend.journey"].invalidate_model()
        return written

    def wake_dispatch(self):
        """After commit: the outbox's dispatch jobs for the channels that got messages."""
        if not self.channels:
            return
        channels = self.env["gobysend.channel"].sudo().browse(sorted(self.channels))  # sudo: only wakes jobs
        for channel in channels.filtered(lambda channel: channel.state != "disabled"):
            channel._enqueue_dispatch_job()

    # ------------------------------------------------------------------
    # Helpers for step kinds
    # ------------------------------------------------------------------

    def enqueue_messages(self, step, rows, subject, body, not_before=None, extra_context=None, variant_id=None):
        """Put one outbox message per journey of ``rows`` for ``step`` into the outbox, set-based;
        return ``{journey id: message id}``. A journey's message for a step and iteration is
        queued once (the outbox's idempotency key), whoever asks again. ``variant_id``: the A/B
        test variant the messages carry."""
        channel = step.channel_id
        self.env.flush_all()
        # One INSERT ... SELECT for the whole group: the ORM would create them one by one,
        # which a launch to a hundred thousand contacts cannot afford. The outbox's own rules
        # (consent, caps, quiet hours, tokens) apply when the messages are dispatched.
        self.env.cr.execute(
            """
            INSERT INTO gobysend_message (workspace_id, partner_id, channel_id, channel_type, state, subject_template,
                                          body_template, render_context, attempts, next_attempt_at, token_cost,
                                          idempotency_key, res_model, res_id, is_test, campaign_id, campaign_step_id,
                                          journey_id, campaign_variant_id, create_uid, create_date, write_uid,
                                          write_date)
            SELECT j.workspace_id, j.partner_id, %(channel)s, %(channel_type)s, 'queued', %(subject)s, %(body)s,
                   COALESCE(j.trigger_context, '{}'::jsonb) || %(extra)s::jsonb, 0, %(not_before)s, %(cost)s,
                   'journey-' || j.id || '-' || %(step)s || '-' || j.iteration, j.res_model, j.res_id, j.is_test,
                   j.campaign_id, %(step)s, j.id, %(variant)s, %(uid)s, %(now)s, %(uid)s, %(now)s
              FROM gobysend_journey j
             WHERE j.id = ANY(%(ids)s)
             ORDER BY j.id
                ON CONFLICT (workspace_id, idempotency_key) DO NOTHING
            RETURNING journey_id, id
            """,
            {
                "channel": channel.id,
                "channel_type": channel.channel_type,
                "subject": subject,
                "body": body,
                "not_before": not_before or self.now,
                "cost": channel._get_message_token_cost(),
                "extra": context_json(extra_context),
                "step": step.id,
                "variant": variant_id,
                "uid": self.env.uid,
                "now": self.now,
                "ids": [row.id for row in rows],
            },
        )
        created = dict(self.env.cr.fetchall())
        if len(created) < len(rows):
            # Queued before (a batch that committed its messages but not its journeys cannot
            # exist; a step edited back and forth can): the existing ones are the step's.
            self.env.cr.execute(
                """
                SELECT journey_id, id FROM gobysend_message
                 WHERE campaign_step_id = %s AND journey_id = ANY(%s)
                """,
                (step.id, [row.id for row in rows if row.id not in created]),
            )
            created.update(self.env.cr.fetchall())
        if created:
            self.channels.add(channel.id)
        return created


def context_json(value):
    return json.dumps(value or {}, default=str)
