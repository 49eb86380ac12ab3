from odoo import _, api, fields, models
from odoo.exceptions import UserError, ValidationError
from odoo.tools import SQL


class GobysendSegment(models.Model):
    """Static segments (lists): members are added and removed by hand, by an import or by a
    workflow step, never by conditions. Their members are membership rows like any segment's,
    so campaigns started by entering or leaving a segment, audiences and "in a segment"
    conditions treat a list as they treat a segment."""

    _inherit = "gobysend.segment"

    segment_type = fields.Selection(
        [("dynamic", "Conditions"), ("static", "List")],
        string="Kind of Segment",
        required=True,
        default="dynamic",
        help="Conditions: the contacts that meet them, kept up to date. List: contacts added and removed by "
        "hand, by an import or by a workflow step.",
    )

    @api.constrains("segment_type", "condition_ids")
    def _check_list_has_no_conditions(self):
        for segment in self:
            if segment.segment_type == "static" and segment.condition_ids:
                raise ValidationError(
                    _(
                        "Segment “%(segment)s” is a list: its members are added by hand, by import or by workflows, "
                        "so it has no conditions. Remove them, or make it a segment of conditions.",
                        segment=segment.display_name,
                    )
                )

    def write(self, vals):
        result = super().write(vals)
        if vals.get("segment_type") == "dynamic":
            self._request_rebuild()
        return result

    def _rebuild(self, now=None):
        # A list is never evaluated: its members are those put in it.
        return super(GobysendSegment, self.filtered(lambda segment: segment.segment_type != "static"))._rebuild(now)

    @api.model
    def _get_due_segments(self, now=None):
        return super()._get_due_segments(now).filtered(lambda segment: segment.segment_type != "static")

    def _apply_membership(self, partner_ids=None, now=None):
        if self.segment_type == "static":
            return 0, 0
        return super()._apply_membership(partner_ids, now)

    def _evaluate_membership(self, partner_ids=None, now=None):
        if self.segment_type == "static":
            return 0, 0, self.member_count
        return super()._evaluate_membership(partner_ids, now)

    # ------------------------------------------------------------------
    # Changing a list's members
    # ------------------------------------------------------------------

    def _change_list_members(self, add=(), remove=(), now=None):
        """Add the contacts ``add`` to this list and take ``remove`` out of it; return
        (entered, left) counts. Only contacts of the list's workspace (an active subscription)
        enter; a contact already in the list stays as it is. Each change opens or closes one
        membership row, the rows that start the campaigns of the list (entered / left).

        In SQL: a step or an import puts thousands of contacts into a list at a time, and the
        ORM has no INSERT ... ON CONFLICT; the partial unique index of open memberships makes
        adding the same contact twice, even from two transactions, a no-op."""
        self.ensure_one()
        if self.segment_type != "static":
            raise UserError(
                _(
                    "“%(segment)s” is a segment of conditions: its members follow them. Only lists take contacts "
                    "by hand.",
                    segment=self.display_name,
                )
            )
        now = now or fields.Datetime.now()
        add = sorted({partner_id for partner_id in add if partner_id})
        remove = sorted({partner_id for partner_id in remove if partner_id} - set(add))
        if not add and not remove:
            return 0, 0
        self.env.flush_all()
        # The rows this change opens are those after the last one now (see _start_segment_journeys).
        self.env.cr.execute("SELECT COALESCE(max(id), 0) FROM gobysend_segment_membership")
        last_row = self.env.cr.fetchone()[0]
        self.env.cr.execute(
            SQL(
                """
                WITH closed AS (
                    UPDATE gobysend_segment_membership m
                       SET left_at = %(now)s
                     WHERE m.segment_id = %(segment)s AND m.left_at IS NULL AND m.partner_id = ANY(%(remove)s)
                 RETURNING 1
                ),
                opened AS (
                    INSERT INTO gobysend_segment_membership (segment_id, partner_id, entered_at)
                    SELECT %(segment)s, s.partner_id, %(now)s
                      FROM gobysend_subscription s
                     WHERE s.workspace_id = %(workspace)s AND s.active AND s.partner_id = ANY(%(add)s)
                     ORDER BY s.partner_id
                        ON CONFLICT (segment_id, partner_id) WHERE left_at IS NULL DO NOTHING
                 RETURNING 1
                )
                SELECT (SELECT count(*) FROM opened), (SELECT count(*) FROM closed)
                """,
                now=now,
                segment=self.id,
                workspace=self.workspace_id.id,
                add=add,
                remove=remove,
            )
        )
        entered, left = self.env.cr.fetchone()
        if entered or left:
            self.env.cr.execute(
                "UPDATE gobysend_segment SET member_count = COALESCE(member_count, 0) + %s WHERE id = %s",
                (entered - left, self.id),
            )
            self.invalidate_recordset(["member_count"])
            self.env["gobysend.segment.membership"].invalidate_model()
            self.env["gobysend.segment.snapshot"]._record(self, entered, left, now)
            self.env["gobysend.campaign"]._start_segment_journeys(self, now, last_row, add + remove)
            # Segments whose conditions name this list ("in a segment") look at these contacts again.
            self._mark_dirty(add + remove, "contact")
        return entered, left
