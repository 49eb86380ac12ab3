from odoo import _, api, fields, models

GOBYSEND_USER = "gobysend_automation.group_gobysend_user"


class CrmLead(models.Model):
    _inherit = "crm.lead"

    # The campaigns a lead is in: the journeys of its contact, and those the lead itself
    # started (added to a campaign from the lead, or fired by a campaign watching leads) even
    # before it had a contact. Of the user's workspaces only (record rules).
    gobysend_journey_ids = fields.Many2many(
        "gobysend.journey", compute="_compute_gobysend_journeys", string="Journeys", groups=GOBYSEND_USER
    )
    gobysend_journey_count = fields.Integer(
        compute="_compute_gobysend_journeys", string="Journey Count", groups=GOBYSEND_USER
    )
    # Opportunities created by a workflow step: "journey-<journey>-<step>-<iteration>", unique,
    # so that a step never creates two for the same journey, step and iteration.
    gobysend_step_key = fields.Char(readonly=True, copy=False, groups=GOBYSEND_USER)

    def init(self):
        super().init()
        self.env.cr.execute(
            """
            CREATE UNIQUE INDEX IF NOT EXISTS crm_lead_gobysend_step_key_uniq
                ON crm_lead (gobysend_step_key) WHERE gobysend_step_key IS NOT NULL
            """
        )

    def _gobysend_journey_domain(self):
        return [
            "|",
            ("partner_id", "in", self.partner_id.ids),
            "&",
            ("res_model", "=", "crm.lead"),
            ("res_id", "in", self.ids),
        ]

    @api.depends("partner_id")
    @api.depends_context("uid")
    def _compute_gobysend_journeys(self):
        leads = self.filtered("id")
        Journey = self.env["gobysend.journey"]
        journeys = Journey.search(leads._gobysend_journey_domain()) if leads else Journey
        for lead in self:
            mine = (
                journeys.filtered(
                    lambda journey, lead=lead: (
                        (lead.partner_id and journey.partner_id == lead.partner_id)
                        or (journey.res_model == "crm.lead" and journey.res_id == lead.id)
                    )
                )
                if lead.id
                else Journey
            )
            lead.gobysend_journey_ids = mine
            lead.gobysend_journey_count = len(mine)

    def action_gobysend_view_journeys(self):
        self.ensure_one()
        return {
            "type": "ir.actions.act_window",
            "name": _("Journeys of %(name)s", name=self.display_name),
            "res_model": "gobysend.journey",
            "view_mode": "list,form",
            "views": [(False, "list"), (False, "form")],
            "domain": self._gobysend_journey_domain(),
        }
