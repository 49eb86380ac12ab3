from odoo import fields, models


class GobysendSegmentMembership(models.Model):
    """A stretch of time during which a contact was a member of a segment.

    A row is opened when the contact enters and closed (``left_at``) when it leaves; entering
    again opens a new row, so the history of every contact's memberships stays queryable.
    Rows are written by ``gobysend.segment._apply_membership`` only.

    These rows are the record of segment transitions: each row is one "entered" transition
    (``entered_at``) and, once closed, one "left" transition (``left_at``), and the database
    guarantees each happens once (see ``init``). Workflows that react to entering or leaving
    a segment read them from here.

    No columns beyond what a transition needs: every foreign key costs a lookup per inserted
    row, a large part of the first build of a segment of a hundred thousand contacts. So no
    create/write user and date (``entered_at`` and ``left_at`` are the row's history), and
    the workspace is the segment's, not a column of its own.
    """

    _name = "gobysend.segment.membership"
    _description = "Gobysend Segment Membership"
    _log_access = False
    _order = "entered_at desc, id desc"
    _rec_name = "partner_id"

    segment_id = fields.Many2one("gobysend.segment", required=True, ondelete="cascade", readonly=True)
    workspace_id = fields.Many2one(related="segment_id.workspace_id")
    partner_id = fields.Many2one("res.partner", string="Contact", required=True, ondelete="cascade", readonly=True)
    entered_at = fields.Datetime(string="Entered On", required=True, readonly=True)
    left_at = fields.Datetime(string="Left On", readonly=True)
    is_current = fields.Boolean(string="Current", compute="_compute_is_current", search="_search_is_current")

    def init(self):
        # Databases installed before kept the columns this model no longer stores, with their
        # indexes and foreign keys, which every insert would still pay for (Odoo keeps a column
        # it no longer stores).
        self.env.cr.execute(
            """
            ALTER TABLE gobysend_segment_membership
                DROP COLUMN IF EXISTS workspace_id,
                DROP COLUMN IF EXISTS create_uid,
                DROP COLUMN IF EXISTS create_date,
                DROP COLUMN IF EXISTS write_uid,
                DROP COLUMN IF EXISTS write_date
            """
        )
        # At most one open membership per contact and segment: the database itself refuses a
        # second "entered" transition, even from two servers rebuilding at the same moment.
        self.env.cr.execute(
            """
            CREATE UNIQUE INDEX IF NOT EXISTS gobysend_segment_membership_open_uniq
                ON gobysend_segment_membership (segment_id, partner_id) WHERE left_at IS NULL
            """
        )
        # The contact's segments, on the partner form and in the incremental update, which
        # finds a batch of contacts' segments from this index alone.
        self.env.cr.execute("DROP INDEX IF EXISTS gobysend_segment_membership_partner_idx")
        self.env.cr.execute(
            """
            CREATE INDEX IF NOT EXISTS gobysend_segment_membership_partner_segment_idx
                ON gobysend_segment_membership (partner_id, segment_id) WHERE left_at IS NULL
            """
        )

        # Campaigns started by leaving a segment ask which rows an evaluation closed, by segment
        # and moment (see gobysend.campaign._start_segment_journeys); closed rows only.
        self.env.cr.execute(
            """
            CREATE INDEX IF NOT EXISTS gobysend_segment_membership_left_idx
                ON gobysend_segment_membership (segment_id, left_at) WHERE left_at IS NOT NULL
            """
        )

    def _compute_is_current(self):
        for membership in self:
            membership.is_current = not membership.left_at

    def _search_is_current(self, operator, value):
        if operator not in ("=", "!="):
            return NotImplemented
        return [("left_at", "=" if (operator == "=") == bool(value) else "!=", False)]
