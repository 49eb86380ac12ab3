from odoo.exceptions import ValidationError
from odoo.tools import SQL
from odoo.tools.translate import LazyTranslate

from .. import STEPS, TRIGGERS, TriggerKind, register

_lt = LazyTranslate(__name__)


@register(TRIGGERS)
class BulkTrigger(TriggerKind):
    """All customers, all leads, or both, with no conditions: in-app banners and pop-ups,
    free of tokens.

    A customer is a contact (or a person of a company) with a confirmed sales order or a posted
    customer invoice; a lead is the contact of an open CRM lead or opportunity (not won, not
    archived). Both are searched with the rights of whoever set the campaign up, among the
    workspace's contacts."""

    key = "bulk"
    label = _lt("Bulk (in-app)")
    icon = "fa-bullhorn"
    sequence = 10
    uses_audience = True
    ends_by_itself = True
    fields = ("bulk_audience", "scheduled_at")
    help = _lt(
        "In-app banners and pop-ups for all customers, all leads or both, with no conditions; free of tokens. "
        "Customers: contacts with a confirmed sales order or a posted customer invoice. Leads: contacts of an open "
        "CRM lead or opportunity (not won, not archived). Only the workspace's contacts are reached, and only those "
        "you can see."
    )

    def validate(self, campaign):
        for step in campaign.step_ids:
            kind = STEPS.get(step.kind)
            if kind and kind.sends and step.channel_id and step.channel_id.channel_type != "inapp":
                raise ValidationError(
                    campaign.env._(
                        "Bulk campaigns deliver in-app messages: step “%(step)s” must use an in-app channel.",
                        step=step.display_name,
                    )
                )

    def launch(self, campaign):
        campaign._begin_fan_out()

    def audience_domain(self, campaign):
        Partner = campaign._contacts_model()
        parts = []
        if campaign.bulk_audience in ("customers", "both"):
            parts.append(self._customers(Partner))
        if campaign.bulk_audience in ("leads", "both"):
            parts.append(self._leads(Partner))
        parts = [part for part in parts if part is not None]
        if not parts:
            return [("id", "=", 0)]
        domain = parts[0]
        for part in parts[1:]:
            domain = ["|", *domain, *part]
        return domain

    @staticmethod
    def _in(query, column):
        return [("commercial_partner_id", "in", query.subselect(SQL.identifier(query.table, column)))]

    def _customers(self, Partner):
        env = Partner.env
        clauses = []
        if "sale.order" in env:
            orders = env["sale.order"]._search([("state", "=", "sale")])
            clauses.append(self._in(orders, "partner_id"))
        if "account.move" in env:
            invoices = env["account.move"]._search(
                [("move_type", "in", ("out_invoice", "out_receipt")), ("state", "=", "posted")]
            )
            clauses.append(self._in(invoices, "partner_id"))
        if not clauses:
            return [("id", "=", 0)]
        domain = clauses[0]
        for clause in clauses[1:]:
            domain = ["|", *domain, *clause]
        # A customer is the company and its people: a company's order reaches its contacts.
        return domain

    def _leads(self, Partner):
        env = Partner.env
        if "crm.lead" not in env:
            return [("id", "=", 0)]
        leads = env["crm.lead"]._search(
            [("active", "=", True), ("partner_id", "!=", False), ("stage_id.is_won", "=", False)]
        )
        return self._in(leads, "partner_id")
