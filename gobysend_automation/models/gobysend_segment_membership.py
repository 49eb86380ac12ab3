from odoo import fields, models


class GobysendSegmentMembership(models.Model):
    """A stretch of time during which a contact was a member of a segment.

    A row is opened when the contact enters and closed (``left_at``) when it leaves; entering
    again opens a new row, so the history of every contact's memberships stays queryable.
    Rows are written by ``gobysend.segment._apply_membership`` only.

    No create/write user and date columns: ``entered_at`` and ``left_at`` are the row's
    history, and the foreign keys to users would cost a lookup per row on every bulk
    insert, a large part of the first build of a segment of a hundred thousand contacts.
    """

    _name = "gobysend.segment.membership"
    _description = "Gobysend Segment Membership"
    _log_access = False
    _order = "entered_at desc, id desc"
    _rec_name = "partner_id"

    segment_id = fields.Many2one("gobysend.segment", required=True, ondelete="cascade", readonly=True)
    workspace_id = fields.Many2one("gobysend.workspace", required=True, ondelete="cascade", readonly=True, index=True)
    partner_id = fields.Many2one("res.partner", string="Contact", required=True, ondelete="cascade", readonly=True)
    entered_at = fields.Datetime(string="Entered On", required=True, readonly=True)
    left_at = fields.Datetime(string="Left On", readonly=True)
    is_current = fields.Boolean(string="Current", compute="_compute_is_current", search="_search_is_current")

    def init(self):
        # At most one open membership per contact and segment: the database itself refuses a
        # second "entered" transition, even from two servers rebuilding at the same moment.
        self.env.cr.execute(
            """
            CREATE UNIQUE INDEX IF NOT EXISTS gobysend_segment_membership_open_uniq
                ON gobysend_segment_membership (segment_id, partner_id) WHERE left_at IS NULL
            """
        )
        # The contact's segments, on the partner form and in the incremental update.
        self.env.cr.execute(
            """
            CREATE INDEX IF NOT EXISTS gobysend_segment_membership_partner_idx
                ON gobysend_segment_membership (partner_id) WHERE left_at IS NULL
            """
        )

    def _compute_is_current(self):
        for membership in self:
            membership.is_current = not membership.left_at

    def _search_is_current(self, operator, value):
        if operator not in ("=", "!="):
            return NotImplemented
        return [("left_at", "=" if (operator == "=") == bool(value) else "!=", False)]
