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
        env = step.env
        leads = [row.res_id for row in rows if row.res_model == "crm.lead" and row.res_id]
        # sudo: the leads that fired this campaign's journeys, moved as the campaign says
        alive = batch.env["crm.lead"].sudo().browse(leads).exists()
        if alive:
            alive.write({"stage_id": step.lead_stage_id.id})
        outcomes = []
        for row in rows:
            if row.res_model != "crm.lead" or not row.res_id:
                outcomes.append(Outcome.done(reason=env._("No lead fired this journey.")))
            elif row.res_id not in alive.ids:
                # The journey outlives its lead: the step is skipped, the journey goes on.
                outcomes.append(Outcome.done(reason=env._("Skipped: the lead that fired this journey was deleted.")))
            else:
                outcomes.append(Outcome.done())
        return outcomes
