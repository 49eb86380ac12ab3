from odoo.exceptions import ValidationError
from odoo.tools.translate import LazyTranslate

from .. import STEPS, Outcome, StepKind, register

_lt = LazyTranslate(__name__)


@register(STEPS)
class LeadStageStep(StepKind):
    """Move the CRM lead that fired the journey to a stage (MQL → SQL → customer)."""

    key = "lead_stage"
    label = _lt("Move the lead to a stage")
    icon = "fa-filter"
    sequence = 65
    fields = ("lead_stage_id",)

    def validate(self, step):
        if not step.lead_stage_id:
            raise ValidationError(step.env._("Step “%(step)s”: choose the stage.", step=step.display_name))

    def summary(self, step):
        return step.lead_stage_id.display_name or ""

    def run(self, batch, step, rows):
        leads = [row.res_id for row in rows if row.res_model == "crm.lead" and row.res_id]
        if leads:
            # sudo: the leads that fired this campaign's journeys, moved as the campaign says
            batch.env["crm.lead"].sudo().browse(leads).exists().write({"stage_id": step.lead_stage_id.id})
        return [
            Outcome.done(reason=None if row.res_model == "crm.lead" else step.env._("No lead fired this journey."))
            for row in rows
        ]
