from odoo import api, fields, models


class GobysendSegmentSnapshot(models.Model):
    """A segment's size on one day, with the contacts that entered and left it that day."""

    _name = "gobysend.segment.snapshot"
    _description = "Gobysend Segment Size"
    _order = "date desc, id desc"
    _rec_name = "date"

    segment_id = fields.Many2one("gobysend.segment", required=True, ondelete="cascade", readonly=True, index=True)
    workspace_id = fields.Many2one("gobysend.workspace", required=True, ondelete="cascade", readonly=True, index=True)
    date = fields.Date(required=True, readonly=True)
    member_count = fields.Integer(string="Members", readonly=True, aggregator="max")
    entered_count = fields.Integer(string="Entered", readonly=True)
    left_count = fields.Integer(string="Left", readonly=True)

    _sql_constraints = [("segment_date_uniq", "unique(segment_id, date)", "A segment has one size per day.")]

    @api.model
    def _record(self, segment, entered, left, now):
        """Write today's size of ``segment``, adding ``entered``/``left`` to today's counts.

        An upsert in SQL: the daily cron and rebuilds on other servers may write the same day's
        row at the same moment, and the ORM cannot express INSERT ... ON CONFLICT DO UPDATE.
        """
        self.env.cr.execute(
            """
            INSERT INTO gobysend_segment_snapshot
                   (segment_id, workspace_id, date, member_count, entered_count, left_count,
                    create_uid, create_date, write_uid, write_date)
            SELECT s.id, s.workspace_id, %(date)s, s.member_count, %(entered)s, %(left)s,
                   %(uid)s, %(now)s, %(uid)s, %(now)s
              FROM gobysend_segment s WHERE s.id = %(segment)s
                ON CONFLICT (segment_id, date) DO UPDATE
               SET member_count = EXCLUDED.member_count,
                   entered_count = gobysend_segment_snapshot.entered_count + EXCLUDED.entered_count,
                   left_count = gobysend_segment_snapshot.left_count + EXCLUDED.left_count,
                   write_uid = EXCLUDED.write_uid, write_date = EXCLUDED.write_date
            """,
            {
                "segment": segment.id,
                "date": fields.Date.context_today(segment.with_context(tz=segment.workspace_id.tz), now),
                "entered": entered,
                "left": left,
                "uid": self.env.uid,
                "now": now,
            },
        )
        self.invalidate_model()
