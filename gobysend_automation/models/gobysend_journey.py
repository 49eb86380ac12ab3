import logging
import time

from psycopg2.extensions import ISOLATION_LEVEL_READ_COMMITTED

from odoo import SUPERUSER_ID, _, api, fields, models
from odoo.exceptions import AccessError
from odoo.tools import SQL
from odoo.tools.misc import format_datetime

from .. import claims, journeys, kinds
from ..kinds.steps import goal as goal_kind
from ..kinds.triggers import record_entries

_logger = logging.getLogger(__name__)


JOURNEY_STATES = [
    ("active", "Active"),
    ("waiting", "Waiting"),
    ("running", "Running"),
    ("completed", "Completed"),
    ("exited", "Exited"),
    ("failed", "Failed"),
]
# The journey figures of a campaign (see _campaign_statistics), then its message figures, in
# the order of the query that counts them.
JOURNEY_FIGURES = (
    "tokens_spent",
    "journey_count",
    "journeys_active",
    "journeys_waiting",
    "journeys_completed",
    "journeys_exited",
    "journeys_failed",
    "journeys_converted",
)
MESSAGE_FIGURES = (
    "message_count",
    "sent_count",
    "delivered_count",
    "opened_count",
    "clicked_count",
    "bounced_count",
    "failed_count",
    "skipped_count",
    "unsubscribed_count",
)


# The figures of a step (see _step_statistics): journeys standing there, steps run, run to the end
# of the step, exited or failed there (a failed message counts as failed too), converted after
# it, and its messages.
STEP_FIGURES = (
    "here",
    "entered",
    "done",
    "completed",
    "exited",
    "failed",
    "converted",
    "sent",
    "delivered",
    "opened",
    "clicked",
    "bounced",
)
# Journeys one background job claims and advances in one transaction.
ADVANCE_BATCH_SIZE = 2000
# How many advancing jobs may run at once, on any server (like the outbox's dispatch lanes).
ADVANCE_LANES = 2


class GobysendJourney(models.Model):
    """One contact's run through a campaign's workflow.

    Started by the campaign's trigger (``_enter``), advanced in the background by the journey
    engine (``journeys.JourneyBatch``) under the claim protocol of ``claims``: a job claims the
    due journeys (state *running*, owner token, heartbeat), runs their steps and writes their new
    positions only while its claim still holds them. Recovery gives the journeys of a worker that
    stopped beating back to the queue; the work of its uncommitted batch was rolled back with it.
    """

    _name = "gobysend.journey"
    _description = "Gobysend Journey"
    _order = "id desc"
    _rec_name = "partner_id"

    campaign_id = fields.Many2one("gobysend.campaign", required=True, ondelete="cascade", index=True, readonly=True)
    workspace_id = fields.Many2one("gobysend.workspace", required=True, ondelete="cascade", readonly=True)
    partner_id = fields.Many2one(
        "res.partner", string="Contact", required=True, ondelete="cascade", index=True, readonly=True
    )
    step_id = fields.Many2one("gobysend.campaign.step", string="Current Step", ondelete="set null", readonly=True)
    state = fields.Selection(JOURNEY_STATES, required=True, default="active", readonly=True)
    wake_at = fields.Datetime(string="Next Run", readonly=True)
    wait_until = fields.Datetime(readonly=True)
    iteration = fields.Integer(readonly=True, default=0)
    res_model = fields.Char(string="Triggering Model", readonly=True)
    res_id = fields.Many2oneReference(string="Triggering Record", model_field="res_model", readonly=True)
    trigger_context = fields.Json(
        readonly=True, help="What fired the journey: webhook data, event properties, the record's old and new values."
    )
    entry_key = fields.Char(readonly=True, help="Refuses a second journey where the re-entry policy forbids it.")
    claim_token = fields.Char(readonly=True, copy=False, index="btree_not_null")
    entered_at = fields.Datetime(readonly=True, default=fields.Datetime.now)
    ended_at = fields.Datetime(readonly=True)
    reason = fields.Char(readonly=True)
    converted = fields.Boolean(readonly=True)
    # Goal: when the journey reached its campaign's goal (a step's "converted afterwards" counts on it).
    converted_at = fields.Datetime(string="Converted On", readonly=True)
    is_test = fields.Boolean(
        string="Test", readonly=True, help="Started from the Test Journey button: kept out of every statistic."
    )
    log_ids = fields.One2many("gobysend.journey.log", "journey_id", string="Steps Run")
    message_ids = fields.One2many("gobysend.message", "journey_id", string="Messages")
    # Timeline: the steps the journey went through, as the contact form shows them.
    timeline_html = fields.Html(compute="_compute_timeline_html", string="Timeline", sanitize=False)
    # Call a webhook (kinds/steps/webhook.py)
    call_ids = fields.One2many("gobysend.journey.call", "journey_id", string="Webhook Calls")

    def init(self):
        # The engine's question: which journeys are due now.
        self.env.cr.execute(
            """
            CREATE INDEX IF NOT EXISTS gobysend_journey_due_idx
                ON gobysend_journey (wake_at, id) WHERE state IN ('active', 'waiting')
            """
        )
        # Re-entry: at most one journey per campaign and key (the contact, or the record).
        self.env.cr.execute(
            """
            CREATE UNIQUE INDEX IF NOT EXISTS gobysend_journey_entry_uniq
                ON gobysend_journey (campaign_id, entry_key) WHERE entry_key IS NOT NULL
            """
        )

    # ------------------------------------------------------------------
    # Entering
    # ------------------------------------------------------------------

    @api.model
    def _entry_key(self, campaign, entry):
        if campaign.reentry in ("once", "once_at_a_time"):
            return f"p{entry['partner_id']}"
        if campaign.reentry == "once_per_record" and entry.get("res_id"):
            return f"r{entry.get('res_model')},{entry['res_id']}"
        return entry.get("key")

    @api.model
    def _enter(self, campaign, entries, run=False, is_test=False):
        """Start journeys of ``campaign`` for ``entries`` (dicts: ``partner_id``, optionally
        ``res_model``, ``res_id``, ``context``, ``key``), set-based, as the re-entry policy
        allows; return the ids of the journeys started. With ``run``, their first steps run in
        this transaction; otherwise the background engine runs them (``_enqueue_advance``)."""
        if not entries:
            return []
        now = fields.Datetime.now()
        self.env.flush_all()
        # One INSERT ... SELECT: a launch enters thousands of contacts at a time. The unique
        # entry key makes the re-entry policy hold under concurrent triggers.
        self.env.cr.execute(
            """
            INSERT INTO gobysend_journey (campaign_id, workspace_id, partner_id, state, wake_at, iteration, res_model,
                                          res_id, trigger_context, entry_key, entered_at, is_test,
                                          create_uid, create_date, write_uid, write_date)
            SELECT %(campaign)s, %(workspace)s, e.partner_id, 'active', %(now)s, 0, e.res_model, e.res_id,
                   e.context::jsonb, e.entry_key, %(now)s, %(is_test)s, %(uid)s, %(now)s, %(uid)s, %(now)s
              FROM unnest(%(partners)s::int[], %(models)s::varchar[], %(res_ids)s::int[], %(contexts)s::text[],
                          %(keys)s::varchar[]) AS e (partner_id, res_model, res_id, context, entry_key)
                ON CONFLICT (campaign_id, entry_key) WHERE entry_key IS NOT NULL DO NOTHING
            RETURNING id
            """,
            {
                "campaign": campaign.id,
                "workspace": campaign.workspace_id.id,
                "now": now,
                "is_test": is_test,
                "uid": self.env.uid,
                "partners": [entry["partner_id"] for entry in entries],
                "models": [entry.get("res_model") for entry in entries],
                "res_ids": [entry.get("res_id") for entry in entries],
                "contexts": [journeys.context_json(entry.get("context")) for entry in entries],
                "keys": [None if is_test else self._entry_key(campaign, entry) for entry in entries],
            },
        )
        ids = [row[0] for row in self.env.cr.fetchall()]
        if ids and run:
            batch = journeys.JourneyBatch(self.env, now)
            batch.run(batch.load(ids))
            batch.save()
            self.env.cr.postcommit.add(batch.wake_dispatch)
        elif ids:
            self._wake_advance()
        return ids

    # ------------------------------------------------------------------
    # Advancing
    # ------------------------------------------------------------------

    @api.model
    def _get_job_channel(self):
        # sudo: only the channel's name; managers and sales staff who start journeys cannot
        # read job channels.
        channel = self.sudo().env.ref(
            "gobysend_automation.queue_job_channel_gobysend_journeys", raise_if_not_found=False
        )
        return channel.complete_name if channel else "root"

    @api.model
    def _enqueue_advance(self, eta=None, lanes=ADVANCE_LANES):
        """Make sure advancing jobs are pending (one per lane; a trigger wakes the first lane,
        the scheduled action all of them).

        The jobs are owned by the engine's user (OdooBot), as its scheduled action is: whoever
        started the journeys (an API key's technical user, a sales user, a public webhook call)
        has no rights on the engine's work. They are queued in the current transaction, so they
        exist once it commits and go with it when it rolls back, and they cost the writer no
        transaction of its own."""
        Journey = self.env["gobysend.journey"].with_user(SUPERUSER_ID)
        for lane in range(lanes):
            Journey.with_delay(
                channel=self._get_job_channel(),
                identity_key=self._advance_identity(lane),
                eta=eta,
                description=_("Advance due journeys"),
            )._job_advance(lane=lane)

    @api.model
    def _wake_advance(self):
        """Queue the first lane's advancing job unless it is pending already: triggers that start
        journeys all the time (events, records) then pay one query, not a job's creation."""
        self.env.cr.execute(
            "SELECT EXISTS (SELECT 1 FROM queue_job WHERE identity_key = %s AND state IN %s)",
            (self._advance_identity(0), journeys.PENDING_JOB_STATES),
        )
        if not self.env.cr.fetchone()[0]:
            self._enqueue_advance(lanes=1)

    @api.model
    def _advance_identity(self, lane):
        """The identity of a lane's advancing job: a second one is not queued while one is
        pending (and writers check it in SQL, see ``record_entries.note_pending``)."""
        return f"gobysend.journey._job_advance:{lane}"

    @api.model
    def _job_advance(self, batch_size=ADVANCE_BATCH_SIZE, time_budget=50.0, lane=0):
        """Advance due journeys in claimed batches until none is due or the time budget is spent;
        then a fresh job goes on. Safe to run twice and on several servers at once."""
        started = time.monotonic()
        advanced = 0
        while time.monotonic() - started < time_budget:
            # Records noted by writers first: their journeys are due at once.
            record_entries.enter_noted(self.env.registry)
            claim = self._claim_due(batch_size)
            if not claim:
                break
            advanced += self._advance_claimed(claim)
        else:
            self._enqueue_advance()
        return _("%(count)s journey steps run.", count=advanced)

    @api.model
    def _claim_due(self, limit, now=None):
        now = now or fields.Datetime.now()
        with self.env.registry.cursor() as cr:
            if not self.env.registry.in_test_mode():
                cr.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            return journeys.JOURNEY_CLAIMS.claim(
                cr,
                SQL(
                    """state IN ('active', 'waiting') AND wake_at <= %s
                       AND (campaign_id IN (SELECT id FROM gobysend_campaign WHERE state = 'running')
                            -- A test journey runs before its campaign is launched, or while paused.
                            OR (is_test AND campaign_id IN (SELECT id FROM gobysend_campaign
                                                             WHERE state IN ('draft', 'scheduled', 'paused'))))""",
                    now,
                ),
                SQL("wake_at, id"),
                limit,
                SQL("write_date = %s", now),
                now=now,
            )

    @api.model
    def _advance_claimed(self, claim, now=None):
        """Run the claimed journeys' due steps in one transaction; return the steps run."""
        now = now or fields.Datetime.now()
        try:
            with self.env.registry.cursor() as cr:
                if not self.env.registry.in_test_mode():
                    cr.connection.set_isolation_level(ISOLATION_LEVEL_READ_COMMITTED)
                env = self.env(cr=cr)
                held = claim.lock_held(cr)
                self._lock_workflows(cr, held)
                batch = journeys.JourneyBatch(env, now)
                steps = batch.run(batch.load(held))
                env.flush_all()
                # The last word: a claim revoked meanwhile (this worker was stopped for longer
                # than the stale delay) rolls the whole batch back.
                claim.beat(cr, now)
                batch.save(claim)
                self._check_campaigns_done_env(env, self._campaigns_of(cr, held))
                claim.end(cr)
                cr.postcommit.add(batch.wake_dispatch)
            return steps
        except claims.ClaimLost:
            _logger.warning("A journey batch stopped: its claim %s went stale and was recovered.", claim.token)
            return 0

    @api.model
    def _lock_workflows(self, cr, ids):
        """Hold the steps of the journeys' campaigns against deletion until the batch ends: a
        step removed meanwhile (see ``_move_journeys_off``) would receive journeys after it moved
        the ones standing there. A removal waits for the batch, or the batch for the removal and
        then reads the workflow without the step. Edits of steps are not held up (KEY SHARE)."""
        if not ids:
            return
        # SQL: the ORM has no row locks.
        cr.execute(
            """
            SELECT s.id FROM gobysend_campaign_step s
             WHERE s.campaign_id IN (SELECT campaign_id FROM gobysend_journey WHERE id = ANY(%s))
             ORDER BY s.id
               FOR KEY SHARE
            """,
            [list(ids)],
        )

    @api.model
    def _campaigns_of(self, cr, ids):
        if not ids:
            return []
        cr.execute("SELECT DISTINCT campaign_id FROM gobysend_journey WHERE id = ANY(%s)", [list(ids)])
        return [row[0] for row in cr.fetchall()]

    @api.model
    def _recover_interrupted(self, now=None):
        """Journeys of workers that stopped beating go back to the queue: their batch's work
        was never committed."""
        now = now or fields.Datetime.now()
        self.env.flush_all()
        orphans = journeys.JOURNEY_CLAIMS.revoke_stale(self.env.cr, now)
        if orphans:
            self.env.cr.execute(
                """
                UPDATE gobysend_journey SET state = CASE WHEN wait_until IS NULL THEN 'active' ELSE 'waiting' END,
                       claim_token = NULL
                 WHERE id = ANY(%s)
                """,
                [orphans],
            )
            self.invalidate_model()
        return len(orphans)

    @api.model
    def _cron_advance(self):
        """Every minute: recover interrupted batches, launch scheduled campaigns, and start
        advancing jobs when journeys are due."""
        self._recover_interrupted()
        self.env["gobysend.campaign"]._cron_launch_scheduled()
        # Goals that are conditions on the contact: journeys waiting elsewhere reach them now.
        goal_kind.sweep_condition_goals(self.env)
        now = fields.Datetime.now()
        # Due journeys, or records noted by a writer whose transaction met the job just ending.
        self.env.cr.execute(
            """
            SELECT 1 FROM gobysend_journey j JOIN gobysend_campaign c ON c.id = j.campaign_id
             WHERE j.state IN ('active', 'waiting') AND j.wake_at <= %s
               AND (c.state = 'running' OR (j.is_test AND c.state IN ('draft', 'scheduled', 'paused')))
             UNION ALL
            SELECT 1 FROM gobysend_record_entry
             LIMIT 1
            """,
            (now,),
        )
        if self.env.cr.fetchone():
            self._enqueue_advance()
        self._check_campaigns_done(
            self.env["gobysend.campaign"].sudo().search([("state", "=", "running")]).ids  # sudo: every workspace's
        )
        return True

    # ------------------------------------------------------------------
    # Ending
    # ------------------------------------------------------------------

    @api.model
    def _check_campaigns_done(self, campaign_ids):
        self._check_campaigns_done_env(self.env, campaign_ids)

    @api.model
    def _check_campaigns_done_env(self, env, campaign_ids):
        """Campaigns that end by themselves (a manual launch) are done once their audience is
        queued, none of their journeys is still going and their messages have left the outbox."""
        env.flush_all()
        campaigns = env["gobysend.campaign"].sudo().browse(sorted(campaign_ids)).exists()  # sudo: engine-side
        for campaign in campaigns:
            kind = kinds.TRIGGERS.get(campaign.trigger_kind)
            if campaign.state != "running" or not kind or not kind.ends_by_itself or campaign.fan_out_running:
                continue
            env.cr.execute(
                """
                SELECT EXISTS (SELECT 1 FROM gobysend_journey WHERE campaign_id = %(id)s AND state IN %(states)s)
                    OR EXISTS (SELECT 1 FROM gobysend_message
                                WHERE campaign_id = %(id)s AND state IN ('queued', 'held', 'sending'))
                """,
                {"id": campaign.id, "states": journeys.ACTIVE_STATES},
            )
            if not env.cr.fetchone()[0]:
                campaign.write({"state": "done", "ended_at": fields.Datetime.now()})

    @api.model
    def _exit_campaigns(self, campaign_ids, reason):
        if not campaign_ids:
            return
        self.env.flush_all()
        self.env.cr.execute(
            """
            UPDATE gobysend_journey SET state = 'exited', reason = %s, ended_at = %s, wake_at = NULL,
                   claim_token = NULL
             WHERE campaign_id = ANY(%s) AND state IN ('active', 'waiting', 'running')
            """,
            (str(reason), fields.Datetime.now(), list(campaign_ids)),
        )
        self.invalidate_model()

    def action_retry(self):
        """Run a failed journey's step again, as a new iteration: the step's call or message is
        made afresh (its own idempotency key), and the failed try stays in the step log."""
        if not self.env.user.has_group("gobysend_automation.group_gobysend_manager"):
            raise AccessError(_("Only campaign managers may retry journeys."))
        failed = self.filtered(lambda journey: journey.state == "failed" and journey.step_id)
        self.env.flush_all()
        for journey in failed:
            journey.write(
                {
                    "state": "active",
                    "wake_at": fields.Datetime.now(),
                    "wait_until": False,
                    "reason": False,
                    "ended_at": False,
                    "iteration": journey.iteration + 1,
                }
            )
        # A campaign that ended by itself (a manual launch) once its journeys did runs again
        # until the retried ones end too: only a running campaign's journeys advance.
        failed.campaign_id.filtered(lambda campaign: campaign.state == "done").write(
            {"state": "running", "ended_at": False}
        )
        if failed:
            self._enqueue_advance(lanes=1)
        return True

    def action_exit(self):
        self.filtered(lambda journey: journey.state in ("active", "waiting")).write(
            {
                "state": "exited",
                "reason": _("Stopped by %(user)s.", user=self.env.user.name),
                "wake_at": False,
                "ended_at": fields.Datetime.now(),
            }
        )
        return True

    # ------------------------------------------------------------------
    # Timeline
    # ------------------------------------------------------------------

    @api.depends("log_ids", "state", "step_id", "wake_at", "converted")
    def _compute_timeline_html(self):
        """Each step the journey ran, in order, with its time, what came of it (done, the branch
        taken, waited until, exited or failed and why) and the message it sent, then where the
        journey stands; rendered by QWeb, which escapes every value."""
        logs_by_journey = {journey.id: [] for journey in self}
        for log in self.log_ids.sorted(lambda log: (log.executed_at or fields.Datetime.now(), log.id)):
            logs_by_journey[log.journey_id.id].append(log)
        QWeb = self.env["ir.qweb"]
        for journey in self:
            entries = [journey._timeline_entry(log) for log in logs_by_journey.get(journey.id, [])]
            entries.append(journey._timeline_position())
            journey.timeline_html = QWeb._render("gobysend_automation.journey_timeline", {"entries": entries})

    def _timeline_time(self, value):
        return format_datetime(self.env, value, dt_format="short") if value else ""

    def _timeline_entry(self, log):
        env = self.env
        step = log.step_id
        kind = step.kind if step else False
        if log.outcome == "fail":
            outcome, tone = env._("Failed: %(reason)s", reason=log.reason or env._("no reason given")), "text-danger"
        elif log.outcome == "exit":
            outcome = env._("Exited: %(reason)s", reason=log.reason) if log.reason else env._("Exited")
            tone = "text-warning"
        elif kind == "goal":
            outcome, tone = env._("Reached the goal"), "text-success"
        elif log.branch:
            kind_of_step = kinds.STEPS.get(kind)
            branch = kind_of_step.branch_name(env, log.branch) if kind_of_step else log.branch
            outcome, tone = env._("Took the “%(branch)s” branch", branch=branch), ""
        elif kind in ("wait", "wait_event"):
            outcome, tone = env._("Waited until %(time)s", time=self._timeline_time(log.executed_at)), ""
        else:
            outcome, tone = env._("Done"), ""
        message = ""
        if log.message_id:
            message_record = log.message_id
            states = dict(message_record._fields["state"]._description_selection(env))
            message = env._(
                "%(channel)s message: %(state)s",
                channel=message_record.channel_id.display_name or message_record.channel_type,
                state=states.get(message_record.state, message_record.state),
            )
            if message_record.reason and message_record.state in ("failed", "skipped", "bounced"):
                message = f"{message} ({message_record.reason})"
        return {
            "time": self._timeline_time(log.executed_at),
            "step": step.name if step else env._("A deleted step"),
            "icon": step.kind_icon if step else "fa-circle-o",
            "outcome": outcome,
            "tone": tone,
            "message": message,
        }

    def _timeline_position(self):
        """Where the journey stands now, or how it ended."""
        env = self.env
        step = self.step_id.name or ""
        if self.state == "waiting":
            outcome = env._("Waiting at “%(step)s” until %(time)s", step=step, time=self._timeline_time(self.wake_at))
            tone, icon = "text-info", "fa-hourglass-half"
        elif self.state in ("active", "running"):
            outcome, tone, icon = (
                env._("Next: “%(step)s”", step=step or env._("the first step")),
                "text-info",
                "fa-play",
            )
        elif self.state == "completed":
            outcome, tone, icon = env._("Completed the workflow"), "text-success", "fa-flag-checkered"
        elif self.state == "failed":
            outcome = env._("Failed at “%(step)s”: %(reason)s", step=step, reason=self.reason or "")
            tone, icon = "text-danger", "fa-exclamation-triangle"
        else:
            outcome = env._("Left the workflow: %(reason)s", reason=self.reason) if self.reason else env._("Left")
            tone, icon = "text-warning", "fa-sign-out"
        if self.converted:
            outcome = env._("%(position)s · converted", position=outcome)
        return {
            "time": self._timeline_time(self.ended_at or (self.wake_at if self.state != "waiting" else False)),
            "step": "",
            "icon": icon,
            "outcome": outcome,
            "tone": tone,
            "message": "",
        }

    # ------------------------------------------------------------------
    # Statistics
    # ------------------------------------------------------------------

    @api.model
    def _campaign_statistics(self, campaign_ids):
        """Figures per campaign, in a few grouped queries."""
        if not campaign_ids:
            return {}
        stats = {cid: {} for cid in campaign_ids}
        cr = self.env.cr
        self.env.flush_all()
        cr.execute(
            """
            SELECT campaign_id, state, count(*), bool_or(converted), count(*) FILTER (WHERE converted),
                   min(entered_at), max(write_date)
              FROM gobysend_journey WHERE campaign_id = ANY(%s) AND NOT is_test GROUP BY campaign_id, state
            """,
            [list(campaign_ids)],
        )
        for campaign_id, state, count, _any_converted, converted, first, last in cr.fetchall():
            figures = stats[campaign_id]
            figures["journey_count"] = figures.get("journey_count", 0) + count
            key = {
                "active": "journeys_active",
                "running": "journeys_active",
                "waiting": "journeys_waiting",
                "completed": "journeys_completed",
                "exited": "journeys_exited",
                "failed": "journeys_failed",
            }[state]
            figures[key] = figures.get(key, 0) + count
            figures["journeys_converted"] = figures.get("journeys_converted", 0) + converted
            figures["first_run_at"] = min(filter(None, [figures.get("first_run_at"), first]), default=False)
            figures["last_run_at"] = max(filter(None, [figures.get("last_run_at"), last]), default=False)
        cr.execute(
            """
            SELECT campaign_id, count(*),
                   count(*) FILTER (WHERE state IN ('sent', 'delivered', 'opened', 'clicked', 'bounced')),
                   count(*) FILTER (WHERE state IN ('delivered', 'opened', 'clicked')),
                   count(*) FILTER (WHERE state IN ('opened', 'clicked')),
                   count(*) FILTER (WHERE state = 'clicked'),
                   count(*) FILTER (WHERE state = 'bounced'),
                   count(*) FILTER (WHERE state = 'failed'),
                   count(*) FILTER (WHERE state = 'skipped'),
                   count(*) FILTER (WHERE state = 'skipped' AND reason ILIKE '%%unsubscribed%%')
              FROM gobysend_message WHERE campaign_id = ANY(%s) AND NOT is_test GROUP BY campaign_id
            """,
            [list(campaign_ids)],
        )
        for campaign_id, *counts in cr.fetchall():
            stats[campaign_id].update(zip(MESSAGE_FIGURES, counts, strict=True))
        cr.execute(
            """
            SELECT m.campaign_id, -sum(t.amount)
              FROM gobysend_token_transaction t JOIN gobysend_message m ON m.id = t.message_id
             WHERE m.campaign_id = ANY(%s) GROUP BY m.campaign_id
            """,
            [list(campaign_ids)],
        )
        for campaign_id, spent in cr.fetchall():
            stats[campaign_id]["tokens_spent"] = spent or 0.0
        return stats

    @api.model
    def _step_statistics(self, step_ids):
        """Figures per step (``STEP_FIGURES``) for all ``step_ids`` in three grouped queries,
        whatever their number: the journeys standing there, the step log (with whether each
        journey converted after running the step), and the step's messages. Test journeys and
        messages are left out."""
        if not step_ids:
            return {}
        stats = {sid: dict.fromkeys(STEP_FIGURES, 0) for sid in step_ids}
        cr = self.env.cr
        self.env.flush_all()
        cr.execute(
            """
            SELECT step_id, count(*) FROM gobysend_journey
             WHERE step_id = ANY(%s) AND state IN ('active', 'waiting', 'running') AND NOT is_test GROUP BY step_id
            """,
            [list(step_ids)],
        )
        for step_id, count in cr.fetchall():
            stats[step_id]["here"] = count
        # "Converted" per step: journeys that ran the step and reached the goal then or later
        # (at the goal step: those that reached it, converted when their goal event arrived).
        cr.execute(
            """
            SELECT l.step_id, count(*), count(*) FILTER (WHERE l.outcome = 'done'),
                   count(*) FILTER (WHERE l.outcome = 'exit'), count(*) FILTER (WHERE l.outcome = 'fail'),
                   count(DISTINCT l.journey_id) FILTER (
                       WHERE j.converted AND (COALESCE(j.converted_at, j.ended_at) >= l.executed_at
                                              OR (s.kind = 'goal' AND l.outcome = 'done')))
              FROM gobysend_journey_log l
              JOIN gobysend_journey j ON j.id = l.journey_id
              JOIN gobysend_campaign_step s ON s.id = l.step_id
             WHERE l.step_id = ANY(%s) AND NOT j.is_test
             GROUP BY l.step_id
            """,
            [list(step_ids)],
        )
        for step_id, done, completed, exited, failed, converted in cr.fetchall():
            stats[step_id].update(done=done, completed=completed, exited=exited, failed=failed, converted=converted)
        cr.execute(
            """
            SELECT campaign_step_id,
                   count(*) FILTER (WHERE state IN ('sent', 'delivered', 'opened', 'clicked', 'bounced')),
                   count(*) FILTER (WHERE state IN ('delivered', 'opened', 'clicked')),
                   count(*) FILTER (WHERE state IN ('opened', 'clicked')),
                   count(*) FILTER (WHERE state = 'clicked'),
                   count(*) FILTER (WHERE state = 'bounced'),
                   count(*) FILTER (WHERE state = 'failed')
              FROM gobysend_message WHERE campaign_step_id = ANY(%s) AND NOT is_test GROUP BY campaign_step_id
            """,
            [list(step_ids)],
        )
        for step_id, sent, delivered, opened, clicked, bounced, failed_messages in cr.fetchall():
            stats[step_id].update(sent=sent, delivered=delivered, opened=opened, clicked=clicked, bounced=bounced)
            stats[step_id]["failed"] += failed_messages
        for figures in stats.values():
            figures["entered"] = figures["done"] + figures["here"]
        return stats


class GobysendJourneyLog(models.Model):
    """One step a journey finished: the database refuses a second row for the same journey,
    step and iteration, so a step never runs twice."""

    _name = "gobysend.journey.log"
    _description = "Gobysend Journey Step"
    _log_access = False
    _order = "executed_at, id"
    _rec_name = "step_id"

    journey_id = fields.Many2one("gobysend.journey", required=True, ondelete="cascade", readonly=True)
    step_id = fields.Many2one("gobysend.campaign.step", ondelete="set null", readonly=True, index=True)
    iteration = fields.Integer(readonly=True)
    outcome = fields.Selection([("done", "Done"), ("exit", "Exited"), ("fail", "Failed")], required=True, readonly=True)
    branch = fields.Char(readonly=True)
    reason = fields.Char(readonly=True)
    message_id = fields.Many2one("gobysend.message", readonly=True, ondelete="set null")
    executed_at = fields.Datetime(readonly=True)

    _sql_constraints = [
        ("step_once", "unique(journey_id, step_id, iteration)", "A journey runs each step once per iteration.")
    ]
