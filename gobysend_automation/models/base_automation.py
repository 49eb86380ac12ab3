from collections import namedtuple

from odoo import api, fields, models, tools

from ..kinds.triggers import record_entries

# What the engine needs of a campaign's own rule, kept in the registry cache.
CampaignRule = namedtuple("CampaignRule", "campaign_id watched has_before has_after")


class BaseAutomation(models.Model):
    """Odoo's automation rules, looked up from a cache; campaigns' own rules run lean.

    Every write of a model with an automation rule, and every recomputation of one of its stored
    computed fields, searches the rules of that model and trigger: a dozen searches for one stage
    change of a CRM lead. Campaigns fired by records changing own such rules on busy models, so
    the lookup is answered from a registry cache, cleared whenever a rule is created, changed or
    deleted (on every server: clearing the registry cache is signalled to the other workers).

    A campaign's rule (``gobysend_campaign_id``) is also run from that cache: its filters, watched
    fields and campaign are known without reading the rule, and the records it picks are handed
    over to the campaign directly — what its server action's one line does, without evaluating
    that line per record. It does not stamp the records' "Last Action" date: that date tells
    the business's own time-based rules what they did, and a campaign noting a record did
    nothing to it.
    """

    _inherit = "base.automation"

    gobysend_campaign_id = fields.Many2one(
        "gobysend.campaign",
        string="Campaign",
        readonly=True,
        # Deleting a campaign deletes its rule through Odoo (``gobysend.campaign.unlink``), which
        # also takes the rule's hooks off the model.
        ondelete="set null",
        help="The Gobysend campaign that owns this rule and starts journeys from it.",
    )

    @api.model
    @tools.ormcache("model_name", "triggers")
    def _get_automation_ids(self, model_name, triggers):
        domain = [("model_name", "=", model_name), ("trigger", "in", list(triggers))]
        # sudo: as Odoo's own lookup; only the ids leave the cache.
        return tuple(self.with_context(active_test=True).sudo().search(domain).ids)

    def _get_actions(self, records, triggers):
        if "__action_done" not in self._context:
            self = self.with_context(__action_done={})
        return self.browse(self._get_automation_ids(records._name, tuple(triggers)))

    @api.model
    @tools.ormcache()
    def _get_campaign_rules(self):
        """{rule id: CampaignRule} of the active rules campaigns own."""
        # sudo: the campaigns' own rules, read as Odoo's own lookup reads rules.
        rules = self.sudo().search([("gobysend_campaign_id", "!=", False)])
        return {
            rule.id: CampaignRule(
                rule.gobysend_campaign_id.id,
                tuple(rule.trigger_field_ids.mapped("name")),
                bool(rule.filter_pre_domain),
                bool(rule.filter_domain),
            )
            for rule in rules
        }

    def _campaign_rule(self):
        return self._get_campaign_rules().get(self.id) if len(self) == 1 else None

    def _filter_pre(self, records, feedback=False):
        rule = self._campaign_rule()
        if rule and not rule.has_before:
            return records
        return super()._filter_pre(records, feedback=feedback)

    def _filter_post_export_domain(self, records, feedback=False):
        rule = self._campaign_rule()
        if rule and not rule.has_after:
            return records, None
        return super()._filter_post_export_domain(records, feedback=feedback)

    def _process(self, records, domain_post=None):
        rule = self._campaign_rule()
        if not rule:
            return super()._process(records, domain_post=domain_post)
        # As Odoo's own: a rule acts once per record in a chain of writes and recomputations.
        automation_done = self._context.get("__action_done", {})
        records_done = automation_done.get(self, records.browse())
        records -= records_done
        if not records:
            return
        if not self.env.context.get("__action_feedback"):
            automation_done = dict(automation_done)
            self = self.with_context(__action_done=automation_done)
        old_values = self._context.get("old_values")
        if old_values is not None and rule.watched:
            # As Odoo's ``_check_trigger_fields``: only the records whose watched fields changed.
            records = records.filtered(lambda record: _watched_changed(record, rule.watched, old_values))
        automation_done[self] = records_done + records
        if records:
            campaign = self.env["gobysend.campaign"].browse(rule.campaign_id)
            record_entries.hand_over(campaign, records, watched=rule.watched, old_values=old_values)

    @api.model_create_multi
    def create(self, vals_list):
        automations = super().create(vals_list)
        self.env.registry.clear_cache()
        return automations

    def write(self, vals):
        result = super().write(vals)
        self.env.registry.clear_cache()
        return result

    def unlink(self):
        result = super().unlink()
        self.env.registry.clear_cache()
        return result


def _watched_changed(record, watched, old_values):
    old = old_values.get(record.id, {})
    return any(name in old and record[name] != old[name] for name in watched)
