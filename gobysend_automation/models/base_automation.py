from odoo import api, models, tools


class BaseAutomation(models.Model):
    """Odoo's automation rules, looked up from a cache.

    Every write of a model with an automation rule, and every recomputation of one of its stored
    computed fields, searches the rules of that model and trigger: a dozen searches for one stage
    change of a CRM lead. Campaigns fired by records changing own such rules on busy models, so
    the lookup is answered from a registry cache, cleared whenever a rule is created, changed or
    deleted (on every server: clearing the registry cache is signalled to the other workers).
    """

    _inherit = "base.automation"

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
