from odoo.exceptions import ValidationError
from odoo.tools.translate import LazyTranslate

from ... import templating
from ...exceptions import InvalidInput
from .. import STEPS, Outcome, StepKind, register

_lt = LazyTranslate(__name__)


@register(STEPS)
class OpportunityStep(StepKind):
    """Create a CRM opportunity for the contact, for its salesperson (or a chosen user or team).

    One per journey, step and iteration: the opportunity carries that key, unique in the
    database, and a batch run again (after a crash, or by a second server) finds it."""

    key = "opportunity"
    label = _lt("Create an opportunity")
    icon = "fa-handshake-o"
    sequence = 66
    fields = ("opportunity_name", "opportunity_user_id", "opportunity_team_id", "opportunity_revenue")

    def validate(self, step):
        if not (step.opportunity_name or "").strip():
            raise ValidationError(step.env._("Step “%(step)s”: give the opportunity a name.", step=step.display_name))
        try:
            templating.check_syntax(step.opportunity_name, "opportunity_name")
        except InvalidInput as error:
            raise ValidationError(
                step.env._("Step “%(step)s”: %(reason)s", step=step.display_name, reason=error.message)
            ) from None
        if step.opportunity_revenue < 0:
            raise ValidationError(
                step.env._("Step “%(step)s”: the expected revenue cannot be negative.", step=step.display_name)
            )

    def summary(self, step):
        owner = step.opportunity_user_id.name or step.opportunity_team_id.name or step.env._("the salesperson")
        return f"{step.opportunity_name or ''} → {owner}"

    def run(self, batch, step, rows):
        env = batch.env
        keys = {row.id: f"journey-{row.id}-{step.id}-{row.iteration}" for row in rows}
        Lead = env["crm.lead"].sudo()  # sudo: the engine creates opportunities for every workspace's journeys
        existing = set(
            Lead.with_context(active_test=False)
            .search([("gobysend_step_key", "in", list(keys.values()))])
            .mapped("gobysend_step_key")
        )
        workspace = step.campaign_id.workspace_id.sudo()  # sudo: the name the templates see
        Partner = env["res.partner"].sudo()  # sudo: the journeys' contacts, read for their salesperson
        Message = env["gobysend.message"].sudo()  # sudo: renders the name as messages are rendered
        outcomes = {}
        values = []
        for row in rows:
            if keys[row.id] in existing:
                outcomes[row.id] = Outcome.done(reason=env._("The opportunity was created before."))
                continue
            partner = Partner.browse(row.partner_id)
            try:
                _subject, name = Message._render_for(
                    workspace, partner, None, None, step.opportunity_name, context=row.context
                )
            except templating.TemplateRenderError as error:
                outcomes[row.id] = Outcome.fail(str(error))
                continue
            user = step.opportunity_user_id or partner.user_id or partner.commercial_partner_id.user_id
            vals = {
                "name": (name or "").strip() or partner.name,
                "type": "opportunity",
                "partner_id": partner.id,
                # Explicitly nobody without a salesperson: the default would be the engine's user.
                "user_id": user.id or False,
                "expected_revenue": step.opportunity_revenue,
                "gobysend_step_key": keys[row.id],
            }
            if step.opportunity_team_id:
                vals["team_id"] = step.opportunity_team_id.id
            values.append(vals)
            outcomes[row.id] = Outcome.done()
        if values:
            Lead.with_context(mail_create_nosubscribe=True, mail_create_nolog=True).create(values)
        return [outcomes[row.id] for row in rows]
