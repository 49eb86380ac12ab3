import datetime
import logging

from odoo import api, fields, models, tools
from odoo.exceptions import ValidationError
from odoo.tools import SQL

from .. import kinds
from ..kinds.triggers.engagement import KINDS_BY_RECEIPT
from ..kinds.triggers.event import event_filter_sql

_logger = logging.getLogger(__name__)

# Campaign fields that decide which running campaigns a trigger's lookup finds (see the
# ``_get_*_campaigns`` caches).
TRIGGER_LOOKUP_FIELDS = {
    "active",
    "state",
    "trigger_kind",
    "workspace_id",
    "event_name",
    "event_filter",
    "trigger_segment_id",
    "segment_transition",
    "engagement_campaign_id",
    "engagement_kind",
    "engagement_hours",
    "engagement_step_id",
}
# The trigger kinds whose running campaigns the lookups below list.
ACTIVITY_TRIGGERS = ("event", "segment", "engagement")
# Whether a contact is one of the workspace's contacts now: journeys start for those only.
SUBSCRIBED = """EXISTS (SELECT 1 FROM gobysend_subscription s
                         WHERE s.workspace_id = %s AND s.partner_id = {alias}.partner_id AND s.active)"""


class GobysendCampaign(models.Model):
    """Starting the journeys of the campaigns fired by activity: an event performed, a segment
    entered or left, engagement with another campaign's messages.

    These are asked on hot paths (every batch of tracked events, every segment evaluation that
    moves someone, every receipt), so the running campaigns of each trigger are looked up in
    registry caches that any change of the campaigns' trigger settings or state clears.
    """

    _inherit = "gobysend.campaign"

    @api.constrains("event_filter", "segment_transition", "engagement_kind", "engagement_hours", "engagement_step_id")
    def _check_activity_trigger(self):
        for campaign in self.filtered(lambda c: c.trigger_kind in ACTIVITY_TRIGGERS):
            kinds.TRIGGERS[campaign.trigger_kind].validate(campaign)

    @api.model_create_multi
    def create(self, vals_list):
        campaigns = super().create(vals_list)
        if campaigns._has_activity_trigger():
            self.env.registry.clear_cache()
        return campaigns

    def write(self, vals):
        relevant = TRIGGER_LOOKUP_FIELDS & set(vals) and self._has_activity_trigger()
        result = super().write(vals)
        if relevant or (TRIGGER_LOOKUP_FIELDS & set(vals) and self._has_activity_trigger()):
            self.env.registry.clear_cache()
        elif {"state", "active"} & set(vals) and (
            self.step_ids.filtered(lambda step: step.kind in ("wait_event", "goal"))
            or any(campaign.goal_event_name for campaign in self)
        ):
            # Their waiting journeys are woken (or converted) by the ingest only while they run.
            self.env.registry.clear_cache()
        elif "goal_event_name" in vals:
            self.env.registry.clear_cache()
        return result

    def unlink(self):
        relevant = self._has_activity_trigger()
        result = super().unlink()
        if relevant:
            self.env.registry.clear_cache()
        return result

    def _has_activity_trigger(self):
        """Whether the trigger lookups may list one of these campaigns (their caches must go)."""
        return any(campaign.trigger_kind in ACTIVITY_TRIGGERS for campaign in self)

    # ------------------------------------------------------------------
    # Running campaigns per trigger, cached in the registry
    # ------------------------------------------------------------------

    def _running_campaigns(self, domain):
        # Superuser: only ids and trigger settings leave these lookups, and their callers start
        # journeys of the campaigns of the workspace the activity belongs to. Active ones only,
        # whatever the caller's context.
        return self.sudo().with_context(active_test=True).search([("state", "=", "running"), *domain], order="id")

    @api.model
    @tools.ormcache("workspace_id")
    def _get_event_campaigns(self, workspace_id):
        """((campaign id, event name, event filter), ...) of the workspace's running event campaigns."""
        campaigns = self._running_campaigns([("workspace_id", "=", workspace_id), ("trigger_kind", "=", "event")])
        return tuple((c.id, (c.event_name or "").strip(), c.event_filter or "") for c in campaigns)

    @api.model
    @tools.ormcache("segment_id")
    def _get_segment_campaigns(self, segment_id):
        """((campaign id, transition), ...) of the running campaigns started by ``segment_id``."""
        campaigns = self._running_campaigns([("trigger_kind", "=", "segment"), ("trigger_segment_id", "=", segment_id)])
        return tuple((c.id, c.segment_transition) for c in campaigns)

    @api.model
    @tools.ormcache("campaign_id")
    def _get_engagement_campaigns(self, campaign_id):
        """((campaign id, engagement kind, step id or 0), ...) of the running campaigns started by
        engagement with the messages of ``campaign_id`` (of one of its steps, when narrowed)."""
        campaigns = self._running_campaigns(
            [("trigger_kind", "=", "engagement"), ("engagement_campaign_id", "=", campaign_id)]
        )
        return tuple((c.id, c.engagement_kind, c.engagement_step_id.id or 0) for c in campaigns)

    @api.model
    @tools.ormcache("workspace_id")
    def _get_awaited_events(self, workspace_id):
        """Names of the events that journeys of the workspace's running campaigns may wait for
        (their *wait for an event* steps): the ingest wakes those journeys."""
        campaigns = self._running_campaigns([("workspace_id", "=", workspace_id)])
        steps = campaigns.step_ids.filtered(lambda step: step.kind == "wait_event")
        return tuple(sorted({(step.event_name or "").strip() for step in steps} - {""}))

    @api.model
    @tools.ormcache("workspace_id")
    def _get_goal_events(self, workspace_id):
        """((campaign id, goal step id or 0, event name, event filter), ...) of the goals the
        workspace's running campaigns reach by an event: their goal steps of type event, then
        their goal events (journeys leave converted). The ingest converts those journeys."""
        campaigns = self._running_campaigns([("workspace_id", "=", workspace_id)])
        goals = [
            (step.campaign_id.id, step.id, (step.event_name or "").strip(), step.event_filter or "")
            for step in campaigns.step_ids.filtered(lambda step: step.kind == "goal" and step.goal_type == "event")
        ]
        goals += [(c.id, 0, c.goal_event_name.strip(), "") for c in campaigns if (c.goal_event_name or "").strip()]
        return tuple(goal for goal in goals if goal[2])

    def _start_journeys(self, entries):
        """Start journeys of this campaign for ``entries`` in the background, never in the
        caller's transaction (its request or its segment evaluation)."""
        self.ensure_one()
        # sudo: the engine's own rows; the caller found the contacts in this campaign's workspace.
        return self.env["gobysend.journey"].sudo()._enter(self.sudo(), entries, run=False)

    # ------------------------------------------------------------------
    # Event performed
    # ------------------------------------------------------------------

    @api.model
    def _start_event_journeys(self, workspace, rows, results):
        """Start the journeys of ``workspace``'s running event campaigns for the events just
        stored (``gobysend.ingest._insert_events``: ``rows`` and their ``(event id, duplicate)``
        results): one query and one insert of journeys per campaign whose event is among them."""
        campaigns = self._get_event_campaigns(workspace.id)
        if not campaigns:
            return
        stored = [
            (event_id, row)
            for row, (event_id, duplicate) in zip(rows, results, strict=True)
            if event_id and not duplicate
        ]
        for campaign_id, event_name, event_filter in campaigns:
            matching = {event_id: row for event_id, row in stored if row["name"] == event_name}
            if not matching:
                continue
            try:
                property_test = event_filter_sql(self.env, event_filter, SQL.identifier("e"))
            except ValidationError as error:
                # Refused on save; a filter that slipped through must not refuse the events.
                _logger.warning("Event campaign %s skipped: %s", campaign_id, error.args[0])
                continue
            # In SQL: the property filter compares inside JSON as segments do, and the contacts
            # must be the workspace's (an archived subscription still reports events).
            self.env.cr.execute(
                SQL(
                    "SELECT e.id FROM gobysend_event e WHERE e.id = ANY(%s) AND %s AND %s",
                    list(matching),
                    SQL(SUBSCRIBED.format(alias="e"), workspace.id),
                    property_test,
                )
            )
            entries = [
                {
                    "partner_id": matching[event_id]["partner_id"],
                    "res_model": "gobysend.event",
                    "res_id": event_id,
                    "key": f"event-{event_id}",
                    "context": {
                        "event": {
                            "name": matching[event_id]["name"],
                            "properties": matching[event_id]["properties"] or {},
                            "timestamp": fields.Datetime.to_string(matching[event_id]["timestamp"]),
                        }
                    },
                }
                for (event_id,) in self.env.cr.fetchall()
            ]
            if entries:
                self.browse(campaign_id)._start_journeys(entries)

    # ------------------------------------------------------------------
    # Segment entered / left
    # ------------------------------------------------------------------

    @api.model
    def _start_segment_journeys(self, segment, now, last_row, partner_ids=None):
        """Start the journeys of the running campaigns of ``segment`` for the contacts that
        entered or left it in the evaluation at ``now`` (among ``partner_ids`` when it was
        restricted to them): the membership rows it opened (after ``last_row``) or closed (at
        ``now``), one journey per row."""
        campaigns = self._get_segment_campaigns(segment.id)
        if not campaigns:
            return
        scope = SQL("AND m.partner_id = ANY(%s)", list(partner_ids)) if partner_ids is not None else SQL()
        for campaign_id, transition in campaigns:
            moment = (
                SQL("m.id > %s AND m.left_at IS NULL", last_row)
                if transition == "entered"
                else SQL("m.left_at = %s", now)
            )
            # In SQL: a segment's evaluation moves thousands of contacts at a time.
            self.env.cr.execute(
                SQL(
                    "SELECT m.id, m.partner_id FROM gobysend_segment_membership m "
                    "WHERE m.segment_id = %s AND %s %s AND %s ORDER BY m.id",
                    segment.id,
                    moment,
                    scope,
                    SQL(SUBSCRIBED.format(alias="m"), segment.workspace_id.id),
                )
            )
            context = {
                "segment": {
                    "id": segment.id,
                    "name": segment.name,
                    "transition": transition,
                    "at": fields.Datetime.to_string(now),
                }
            }
            entries = [
                {
                    "partner_id": partner_id,
                    "res_model": "gobysend.segment.membership",
                    "res_id": membership_id,
                    "key": f"membership-{membership_id}",
                    "context": context,
                }
                for membership_id, partner_id in self.env.cr.fetchall()
            ]
            if entries:
                self.browse(campaign_id)._start_journeys(entries)

    # ------------------------------------------------------------------
    # Engagement with another campaign
    # ------------------------------------------------------------------

    @api.model
    def _engagement_entry(self, message, kind):
        return {
            "partner_id": message.partner_id.id,
            "res_model": "gobysend.message",
            "res_id": message.id,
            "key": f"message-{message.id}",
            "context": {
                "engagement": {
                    "kind": kind,
                    "campaign": message.campaign_id.name,
                    "channel": message.channel_type,
                    "message_id": message.id,
                }
            },
        }

    @api.model
    def _start_engagement_journeys(self, message, status):
        """Start the journeys of the running campaigns fired by ``status`` (a receipt: opened,
        clicked, bounced) of ``message``; each message starts one journey per campaign."""
        kinds_started = KINDS_BY_RECEIPT.get(status)
        if not kinds_started or not message.campaign_id or message.is_test:
            return
        campaigns = [
            (campaign_id, kind)
            for campaign_id, kind, step_id in self._get_engagement_campaigns(message.campaign_id.id)
            if kind in kinds_started and step_id in (0, message.campaign_step_id.id)
        ]
        if not campaigns:
            return
        subscription = message._get_subscription()
        if not subscription or not subscription.active:
            return
        for campaign_id, kind in campaigns:
            self.browse(campaign_id)._start_journeys([self._engagement_entry(message, kind)])

    @api.model
    def _cron_start_unopened_journeys(self, now=None):
        """Every minute: start the journeys of the running "not opened within N hours"
        campaigns for the other campaign's messages sent N hours ago or more that were neither
        opened nor clicked (nor bounced), since the campaign's cursor, which then moves on:
        each message is looked at once (sent more than an hour ago, none can still appear
        behind the cursor)."""
        now = now or fields.Datetime.now()
        campaigns = self._running_campaigns(
            [("trigger_kind", "=", "engagement"), ("engagement_kind", "=", "not_opened")]
        )
        for campaign in campaigns:
            if not campaign.engagement_campaign_id or campaign.engagement_hours < 1:
                continue
            until = now - datetime.timedelta(hours=campaign.engagement_hours)
            if campaign.engagement_cursor and campaign.engagement_cursor >= until:
                continue
            self.env.flush_all()
            # In SQL: a newsletter's follow-up looks at every message of it.
            self.env.cr.execute(
                SQL(
                    """
                    SELECT m.id FROM gobysend_message m
                     WHERE m.campaign_id = %s AND NOT m.is_test AND m.state IN ('sent', 'delivered')
                       AND m.sent_at <= %s AND %s AND %s AND %s
                     ORDER BY m.id
                    """,
                    campaign.engagement_campaign_id.id,
                    until,
                    SQL("m.campaign_step_id = %s", campaign.engagement_step_id.id)
                    if campaign.engagement_step_id
                    else SQL("TRUE"),
                    SQL("m.sent_at > %s", campaign.engagement_cursor) if campaign.engagement_cursor else SQL("TRUE"),
                    SQL(SUBSCRIBED.format(alias="m"), campaign.workspace_id.id),
                )
            )
            messages = self.env["gobysend.message"].sudo().browse([row[0] for row in self.env.cr.fetchall()])
            if messages:
                campaign._start_journeys([self._engagement_entry(message, "not_opened") for message in messages])
            # In SQL: the cursor is the engine's bookkeeping, no change of the campaign's settings.
            self.env.cr.execute(
                "UPDATE gobysend_campaign SET engagement_cursor = %s WHERE id = %s", (until, campaign.id)
            )
            campaign.invalidate_recordset(["engagement_cursor"])
        return True
