from odoo import api, fields, models
from odoo.exceptions import UserError
from odoo.tools import SQL

from .. import journeys


class GobysendCampaignStep(models.Model):
    """Removing steps from a workflow that journeys are going through.

    A removed step goes with the steps on its branches. The journeys standing at any of them
    (due, waiting or being advanced) go on with the step that follows the removed step, the one
    they would have reached after it (and after its branches); when nothing follows it, they
    exit. They move in one statement, with their rows locked: a batch of the engine cannot claim
    them meanwhile, and a batch that holds them already makes the removal wait and then refuse,
    so that no journey is moved under a running batch. Test journeys move the same way.
    """

    _inherit = "gobysend.campaign.step"

    def _removed_with_branches(self):
        """These steps and every step on their branches, at any depth."""
        return self.with_context(active_test=False).search([("id", "child_of", self.ids)])

    def _removal_plan(self):
        """``[(top step, steps removed with it, the step its journeys go to)]`` for the steps
        ``self`` about to be removed; the target is empty when the journeys exit."""
        removed = self._removed_with_branches()
        plan = []
        for top in removed.filtered(lambda step: not (step.parent_id & removed)):
            target = top._next_step()
            while target and target in removed:
                target = target._next_step()
            plan.append((top, top._removed_with_branches(), target))
        return plan

    def _journeys_standing_at(self, steps, lock=False):
        """``[(id, state)]`` of the journeys still going at ``steps``; with ``lock``, their rows
        are locked for this transaction (waiting for a batch that holds them to end)."""
        self.env.flush_all()
        # SQL: the ORM cannot lock rows; the engine itself moves journeys in SQL.
        self.env.cr.execute(
            SQL(
                "SELECT id, state FROM gobysend_journey WHERE step_id = ANY(%s) AND state IN %s ORDER BY id %s",
                steps.ids,
                journeys.ACTIVE_STATES,
                SQL("FOR NO KEY UPDATE") if lock else SQL(),
            )
        )
        return self.env.cr.fetchall()

    def _removal_message(self, count, target):
        if not count:
            return self.env._("No journey is at this step.")
        if target:
            return self.env._(
                "%(count)s journeys waiting here will move to “%(step)s”.", count=count, step=target.display_name
            )
        return self.env._("%(count)s journeys waiting here will exit: no step follows this one.", count=count)

    @api.model
    def workflow_removal_preview(self, step_ids):
        """What removing the steps ``step_ids`` does to the journeys at them, in sentences the
        editor shows before it deletes them: ``{"count": n, "message": str}``."""
        steps = self.browse(step_ids).exists()
        steps.check_access("unlink")
        # sudo: counts only, of the journeys of steps the user may delete.
        sudo_self = self.sudo()
        count = 0
        messages = []
        for _top, removed, target in steps._removal_plan():
            standing = len(sudo_self._journeys_standing_at(removed))
            count += standing
            if standing:
                messages.append(self._removal_message(standing, target))
        return {"count": count, "message": " ".join(messages) or self._removal_message(0, None)}

    def _move_journeys_off(self):
        """Move the journeys standing at the steps ``self`` (and their branches) on, or exit them."""
        # sudo: the engine's own bookkeeping of the campaign's journeys; the user removes steps
        # of a campaign they may write (checked by unlink), and only its journeys move.
        Journey = self.env["gobysend.journey"].sudo()
        now = fields.Datetime.now()
        moved = False
        for top, removed, target in self.sudo()._removal_plan():
            standing = self._journeys_standing_at(removed, lock=True)
            if any(state == "running" for _id, state in standing):
                raise UserError(
                    self.env._(
                        "Journeys at step “%(step)s” are being advanced right now; try again in a minute.",
                        step=top.display_name,
                    )
                )
            ids = [journey_id for journey_id, _state in standing]
            if not ids:
                continue
            if target:
                # The journey takes up the next step as a new position: due now, no wait begun.
                self.env.cr.execute(
                    """
                    UPDATE gobysend_journey SET step_id = %s, state = 'active', wake_at = %s, wait_until = NULL,
                           write_date = %s
                     WHERE id = ANY(%s)
                    """,
                    [target.id, now, now, ids],
                )
                moved = True
            else:
                self.env.cr.execute(
                    """
                    UPDATE gobysend_journey j
                       SET state = 'exited', reason = %s, ended_at = %s, wake_at = NULL, wait_until = NULL,
                           write_date = %s,
                           entry_key = CASE WHEN c.reentry = 'once_at_a_time' THEN NULL ELSE j.entry_key END
                      FROM gobysend_campaign c
                     WHERE c.id = j.campaign_id AND j.id = ANY(%s)
                    """,
                    [
                        self.env._("Its step “%(step)s” was removed from the workflow.", step=top.display_name),
                        now,
                        now,
                        ids,
                    ],
                )
        Journey.invalidate_model()
        if moved:
            Journey._enqueue_advance(lanes=1)

    def unlink(self):
        self._move_journeys_off()
        return super().unlink()


class GobysendCampaign(models.Model):
    _inherit = "gobysend.campaign"

    @api.onchange("step_ids")
    def _onchange_step_ids_removal(self):
        """Steps taken out of the form's list are deleted on save: say first what happens to the
        journeys standing at them."""
        kept = {step._origin.id for step in self.step_ids if step._origin}
        removed = self._origin.step_ids.filtered(lambda step: step.id not in kept)
        if not removed:
            return None
        preview = self.env["gobysend.campaign.step"].workflow_removal_preview(removed.ids)
        if not preview["count"]:
            return None
        return {"warning": {"title": self.env._("Journeys at Removed Steps"), "message": preview["message"]}}
