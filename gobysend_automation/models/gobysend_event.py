import json

from odoo import api, fields, models
from odoo.tools import SQL

EVENT_KINDS = [("event", "Event"), ("page", "Page View")]
# Events written by segments of earlier versions, which recorded transitions as events (now
# the membership rows are that record); they are not the contact's own activity.
INTERNAL_EVENTS = ("segment_entered", "segment_left")


class GobysendEvent(models.Model):
    """Something a contact did, as reported by the business's systems. Append-only."""

    _name = "gobysend.event"
    _inherit = ["gobysend.workspace.bound"]
    _description = "Gobysend Event"
    _order = "timestamp desc, id desc"

    # Not indexed alone: the indexes below and the message id constraint all start with it.
    workspace_id = fields.Many2one("gobysend.workspace", required=True, ondelete="cascade")
    partner_id = fields.Many2one("res.partner", string="Contact", required=True, ondelete="cascade")
    name = fields.Char(required=True)
    kind = fields.Selection(EVENT_KINDS, required=True, default="event")
    timestamp = fields.Datetime(required=True, default=fields.Datetime.now)
    properties = fields.Json()
    properties_text = fields.Text(string="Properties (JSON)", compute="_compute_properties_text")
    message_id = fields.Char(
        string="Message ID", help="The sender's idempotency id: a retried delivery is stored once."
    )
    url = fields.Char(string="URL")
    title = fields.Char()
    referrer = fields.Char()

    _sql_constraints = [
        ("message_id_uniq", "unique(workspace_id, message_id)", "An event with this message id was already received.")
    ]

    def init(self):
        # Databases installed before kept the workspace's own index, which every insert paid
        # for and no query needed (Odoo keeps an index it no longer declares).
        self.env.cr.execute("DROP INDEX IF EXISTS gobysend_event__workspace_id_index")
        # Behaviour conditions ask "what did this contact do, and when" within a workspace.
        # Segment transitions of earlier versions are left out: they are not the contact's own
        # activity (no condition counts them as such).
        # Conditions always filter on the event name, which lets PostgreSQL use it; the
        # predicate is written as the ORM writes "not in" (with "OR name IS NULL", although
        # the column is required) so that the planner recognises it in that filter too.
        self.env.cr.execute("DROP INDEX IF EXISTS gobysend_event_contact_name_time_idx")
        self.env.cr.execute(
            SQL(
                """
                CREATE INDEX IF NOT EXISTS gobysend_event_activity_idx
                    ON gobysend_event (workspace_id, partner_id, name, timestamp)
                 WHERE name NOT IN %s OR name IS NULL
                """,
                INTERNAL_EVENTS,
            )
        )

    def _compute_properties_text(self):
        for event in self:
            event.properties_text = (
                json.dumps(event.properties, indent=2, ensure_ascii=False) if event.properties else ""
            )

    @api.model_create_multi
    def create(self, vals_list):
        events = super().create(vals_list)
        # Segments re-evaluate these contacts in the background (the API path marks them in
        # ``gobysend.ingest._insert_events``).
        self.env["gobysend.segment"]._mark_dirty(events.partner_id.ids, "activity")
        return events
