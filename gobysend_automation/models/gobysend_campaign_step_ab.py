import datetime

from odoo import api, fields, models
from odoo.tools import SQL

from .. import kinds
from .gobysend_message import SENT_STATES

AB_METRICS = [("open", "Open rate"), ("click", "Click rate"), ("conversion", "Conversion (the campaign's goal)")]


class GobysendCampaignStep(models.Model):
    """The settings and the outcome of an A/B test of messages (``kinds.steps.ab_test``)."""

    _inherit = "gobysend.campaign.step"

    variant_ids = fields.One2many("gobysend.campaign.step.variant", "step_id", string="Variants", copy=True)
    ab_test_share = fields.Integer(
        string="Test Share (%)",
        default=20,
        help="The share of the journeys reaching the step that get one of the variants at once; "
        "the others get the winner.",
    )
    ab_metric = fields.Selection(AB_METRICS, string="Winner By", default="open")
    ab_decision_hours = fields.Integer(
        string="Decide After (hours)", default=24, help="Counted from the first journey that reached the step."
    )
    ab_started_at = fields.Datetime(string="Test Started", readonly=True, copy=False)
    ab_winner_id = fields.Many2one(
        "gobysend.campaign.step.variant", string="Winner", readonly=True, copy=False, ondelete="set null"
    )
    ab_decided_at = fields.Datetime(string="Winner Decided", readonly=True, copy=False)

    @api.constrains("variant_ids", "ab_test_share", "ab_metric", "ab_decision_hours")
    def _check_ab_test(self):
        for step in self.filtered(lambda step: step.kind == "ab_test"):
            kinds.STEPS["ab_test"].validate(step)

    def unlink(self):
        # A Goal step may be the conversion an A/B step of its campaign counts: deleting it is
        # refused while such a step has no other goal left.
        campaigns = self.filtered(lambda step: step.kind == "goal").campaign_id
        result = super().unlink()
        campaigns.exists().step_ids._check_ab_test()
        return result

    def _test_messages(self):
        """The (subject, body) pairs a test of the campaign sends for this step: every variant
        of an A/B test, the step's own message otherwise."""
        self.ensure_one()
        if self.kind == "ab_test":
            variants = self.variant_ids.sorted(lambda variant: (variant.sequence, variant.id))
            return [variant._message_templates() for variant in variants]
        if self.body:
            return [(self.subject, self.body)]
        return [(self.template_id.subject, self.template_id.body)]

    def _ab_decision_time(self):
        self.ensure_one()
        if not self.ab_started_at:
            return None
        return self.ab_started_at + datetime.timedelta(hours=self.ab_decision_hours)

    def _ab_start(self, now):
        """The moment the test started: the first call sets it (once, whoever else asks)."""
        self.ensure_one()
        if not self.ab_started_at:
            self.env.cr.execute(
                "UPDATE gobysend_campaign_step SET ab_started_at = %s WHERE id = %s AND ab_started_at IS NULL",
                [now, self.id],
            )
            self.invalidate_recordset(["ab_started_at"])
        return self.ab_started_at

    def _ab_figures(self):
        """Per variant of the steps ``self``: sent, opened, clicked, converted, in one aggregate
        query over their messages (a test may reach a hundred thousand contacts)."""
        if not self.ids:
            return {}
        self.env.flush_all()
        cr = self.env.cr
        reached = SQL("m.state IN %s", SENT_STATES)
        # Converted: the contact performed the campaign's goal event after the message, or the
        # message's journey reached the workflow's goal step after it.
        goals = [SQL("(j.converted IS TRUE AND j.converted_at >= m.create_date)")]
        if any(self.campaign_id.mapped("goal_event_name")):
            goals.append(
                SQL(
                    """EXISTS (
                        SELECT 1 FROM gobysend_event e
                         WHERE e.workspace_id = m.workspace_id AND e.partner_id = m.partner_id
                           AND e.name = c.goal_event_name AND e.timestamp >= m.create_date)"""
                )
            )
        converted = SQL("count(*) FILTER (WHERE %s AND (%s))", reached, SQL(" OR ").join(goals))
        # A hundred thousand rows are counted in a few hundred milliseconds, but the planner's
        # estimate is high enough for PostgreSQL to compile the query first (JIT), which takes
        # seconds: not for this query (set_config(..., true) lasts until the transaction ends,
        # so the previous value is put back right after).
        cr.execute("SELECT current_setting('jit'), set_config('jit', 'off', true)")
        jit = cr.fetchone()[0]
        cr.execute(
            SQL(
                """
                SELECT m.campaign_variant_id,
                       count(*) FILTER (WHERE %(reached)s),
                       count(*) FILTER (WHERE m.state IN ('opened', 'clicked')),
                       count(*) FILTER (WHERE m.state = 'clicked'),
                       %(converted)s
                  FROM gobysend_message m
                  JOIN gobysend_campaign_step s ON s.id = m.campaign_step_id
                  JOIN gobysend_campaign c ON c.id = s.campaign_id
                  LEFT JOIN gobysend_journey j ON j.id = m.journey_id
                 WHERE m.campaign_step_id = ANY(%(steps)s) AND m.campaign_variant_id IS NOT NULL AND NOT m.is_test
                 GROUP BY m.campaign_variant_id
                """,
                reached=reached,
                converted=converted,
                steps=self.ids,
            )
        )
        rows = cr.fetchall()
        cr.execute("SELECT set_config('jit', %s, true)", [jit])
        return {
            variant_id: {"sent": sent, "opened": opened, "clicked": clicked, "converted": converted}
            for variant_id, sent, opened, clicked, converted in rows
        }

    def _ab_decide(self, now):
        """Decide the winner of the test once: the variant with the best rate of the step's
        metric, the first one (in the variants' order) on a tie. A conditional update keeps
        the first decision when two workers decide at the same time."""
        self.ensure_one()
        if self.ab_winner_id:
            return self.ab_winner_id
        figures = self._ab_figures()
        counted = {"open": "opened", "click": "clicked", "conversion": "converted"}[self.ab_metric]

        def score(variant):
            counts = figures.get(variant.id, {})
            sent = counts.get("sent", 0)
            return counts.get(counted, 0) / sent if sent else 0.0

        variants = self.variant_ids.sorted(lambda variant: (variant.sequence, variant.id))
        best = max(variants, key=score)  # max keeps the first of equals
        self.env.cr.execute(
            """
            UPDATE gobysend_campaign_step SET ab_winner_id = %s, ab_decided_at = %s
             WHERE id = %s AND ab_winner_id IS NULL
            """,
            [best.id, now, self.id],
        )
        self.invalidate_recordset(["ab_winner_id", "ab_decided_at"])
        return self.ab_winner_id


class GobysendCampaign(models.Model):
    _inherit = "gobysend.campaign"

    @api.constrains("goal_event_name")
    def _check_ab_conversion_goal(self):
        """Clearing the goal event is refused while an A/B step counts conversions to it and
        the campaign has no Goal step."""
        self.step_ids._check_ab_test()
