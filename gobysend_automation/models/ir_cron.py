from odoo import fields, models

from .. import kinds


class IrCron(models.Model):
    _inherit = "ir.cron"

    def _reschedule_later(self, job):
        """After a periodic campaign's run, its next call is the campaign's next local run time.

        Odoo moves a next call by the cron's interval in UTC: across a daylight-saving change the
        local time of the run would move by an hour, and a run on the 31st would slip to the 28th
        after February. The run cannot set it itself: the scheduler holds the cron's row while
        the job runs."""
        super()._reschedule_later(job)
        # sudo: finds the campaign owning this scheduled action, in whichever workspace.
        campaign = (
            self.env["gobysend.campaign"]
            .sudo()
            .with_context(active_test=False)
            .search([("cron_id", "=", job["id"]), ("trigger_kind", "=", "periodic")], limit=1)
        )
        if campaign and campaign.period:
            nextcall = kinds.TRIGGERS["periodic"].next_run(campaign, fields.Datetime.now())
            self.env.cr.execute("UPDATE ir_cron SET nextcall = %s WHERE id = %s", (nextcall, job["id"]))
            self.invalidate_model(["nextcall"])
