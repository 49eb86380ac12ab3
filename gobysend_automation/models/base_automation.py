import contextvars
from collections import defaultdict, namedtuple

from odoo import api, fields, models, tools
from odoo.osv import expression
from odoo.tools.safe_eval import safe_eval

from odoo.addons.base_automation.models.base_automation import CREATE_TRIGGERS, WRITE_TRIGGERS

from ..kinds.triggers import record_entries

# What the engine needs of a campaign's own rule, kept in the registry cache.
CampaignRule = namedtuple("CampaignRule", "campaign_id model trigger watched before after")

# Where a transaction keeps the records it created, per model, with the watched computed fields
# that got their first values (``cr.precommit.data``).
CREATED_KEY = "gobysend.created_records"
# Set while Odoo installs its patches: the campaigns' rules are left to ours.
_INSTALLING_ODOO_PATCHES = contextvars.ContextVar("gobysend_installing_odoo_patches", default=False)


class BaseAutomation(models.Model):
    """Odoo's automation rules, looked up from a cache; campaigns' own rules run lean.

    Every write of a model with an automation rule, and every recomputation of one of its stored
    computed fields, searches the rules of that model and trigger: a dozen searches for one stage
    change of a CRM lead. Campaigns fired by records changing own such rules on busy models, so
    the lookup is answered from a registry cache, cleared whenever a rule is created, changed or
    deleted (on every server: clearing the registry cache is signalled to the other workers).

    A campaign's rule (``gobysend_campaign_id``) is Odoo's rule for everything a user sees and
    sets (model, trigger, watched fields, "before" and "after" filters, active or not), but Odoo
    does not run it: its patches of ``create``, ``write`` and of every stored computed field's
    computation read old values and evaluate filters for every rule on every write, and run the
    rule's server action through its evaluation machinery for each record — for a lead's stage
    change, more than the change itself costs. The engine installs lighter patches on the
    rules' models instead (``_register_hook``): they act only when a watched field is written or
    recomputed, evaluate the rule's "before" filter with the rights of who set the campaign's
    filters (a workspace member's filter must not see through records that member cannot see)
    and its "after" filter as Odoo does, as a first sort the engine checks again with those
    rights, and hand the records that changed over to the campaign, as the server action's one
    line would. They do not stamp the records' "Last Action" date: that date tells the
    business's own time-based rules what they did, and a campaign noting a record did nothing to
    it.
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

    # ------------------------------------------------------------------
    # Looking rules up
    # ------------------------------------------------------------------

    @api.model
    @tools.ormcache("model_name", "triggers")
    def _get_automation_ids(self, model_name, triggers):
        domain = [
            ("model_name", "=", model_name),
            ("trigger", "in", list(triggers)),
            ("gobysend_campaign_id", "=", False),
        ]
        # sudo: as Odoo's own lookup; only the ids leave the cache.
        return tuple(self.with_context(active_test=True).sudo().search(domain).ids)

    def _get_actions(self, records, triggers):
        if "__action_done" not in self._context:
            self = self.with_context(__action_done={})
        return self.browse(self._get_automation_ids(records._name, tuple(triggers)))

    @api.model
    def _read_campaign_rules(self):
        """{rule id: CampaignRule} of the active rules campaigns own."""
        # sudo: the campaigns' own rules, read as Odoo's own lookup reads rules.
        rules = self.sudo().with_context(active_test=True).search([("gobysend_campaign_id", "!=", False)])
        return {
            rule.id: CampaignRule(
                rule.gobysend_campaign_id.id,
                rule.model_name,
                rule.trigger,
                tuple(rule.trigger_field_ids.mapped("name")),
                rule.filter_pre_domain or False,
                rule.filter_domain or False,
            )
            for rule in rules
        }

    @api.model
    @tools.ormcache()
    def _get_campaign_rules(self):
        return self._read_campaign_rules()

    @api.model
    @tools.ormcache("model_name", "kind")
    def _get_campaign_rules_of(self, model_name, kind):
        """The campaign rules of ``model_name`` fired on creation (``kind`` "create") or on
        change ("write"), and the names of the fields they watch."""
        triggers = CREATE_TRIGGERS if kind == "create" else WRITE_TRIGGERS
        rules = tuple(
            rule
            for rule in self._get_campaign_rules().values()
            if rule.model == model_name and rule.trigger in triggers
        )
        return rules, frozenset(name for rule in rules for name in rule.watched)

    @api.model
    def _search(self, domain, *args, **kwargs):
        if _INSTALLING_ODOO_PATCHES.get():
            domain = expression.AND([domain, [("gobysend_campaign_id", "=", False)]])
        return super()._search(domain, *args, **kwargs)

    # ------------------------------------------------------------------
    # The patches
    # ------------------------------------------------------------------

    def _register_hook(self):
        token = _INSTALLING_ODOO_PATCHES.set(True)
        try:
            result = super()._register_hook()
        finally:
            _INSTALLING_ODOO_PATCHES.reset(token)
        self._patch_campaign_models(self._read_campaign_rules())
        return result

    def _patch_campaign_models(self, rules):
        models_of = defaultdict(set)
        for rule in rules.values():
            if rule.model in self.env:
                models_of[rule.model].add(rule.trigger)
        for model_name, triggers in models_of.items():
            ModelClass = self.env.registry[model_name]
            # Also for rules on changes only: the first values a new record gets are no change.
            _patch(ModelClass, "create", _make_create())
            if triggers & set(WRITE_TRIGGERS):
                # The fields watched when the patches are installed: a rule changed, activated or
                # deactivated installs them again (``_update_registry``), on every server.
                watched = frozenset(
                    name
                    for rule in rules.values()
                    if rule.model == model_name and rule.trigger in WRITE_TRIGGERS
                    for name in rule.watched
                )
                computed = frozenset(
                    field for field in self.env[model_name]._fields.values() if field.compute and field.store
                )
                _patch(ModelClass, "write", _make_write(watched))
                if any(field.name in watched for field in computed):
                    _patch(ModelClass, "_compute_field_value", _make_compute_field_value(watched))

    # ------------------------------------------------------------------
    # Keeping the caches and patches true
    # ------------------------------------------------------------------

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


def _patch(ModelClass, name, method):
    method.origin = getattr(ModelClass, name)
    setattr(ModelClass, name, method)


def _filtered(records, domain_text):
    """``records`` meeting a rule's "after" filter, evaluated as Odoo evaluates it (superuser
    rights, the writer's ``uid``), on the values the write left in the cache: a first sort only,
    which reaches no journey by itself. The engine checks the filter again with the rights of
    who set it before it starts anything (``record_entries.enter_records``). The campaign's
    filters are plain data (``kinds/triggers/records.py``)."""
    if not domain_text or not records:
        return records
    domain = safe_eval(domain_text, {"uid": records.env.uid})
    return records.sudo().filtered_domain(domain).with_env(records.env)


def _filtered_before(records, rule):
    """``records`` meeting ``rule``'s "before" filter now, before they change, with the rights of
    who set the campaign's filters and the writer's ``uid`` (as the engine checks the "after"
    filter): the filter may follow relations to records that user cannot see, which must not
    make a record match. One query, when the rule has a "before" filter."""
    if not rule.before or not records:
        return records
    # sudo: who set the campaign's filters, read from the campaign that owns the rule. Read
    # here rather than kept with the cached rule: it changes with the campaign, not the rule.
    author = records.env["gobysend.campaign"].sudo().browse(rule.campaign_id).filter_user_id
    if not author:
        return records.browse()
    domain = safe_eval(rule.before, {"uid": records.env.uid})
    # with_user: the rights of who set the filter, not the writer's nor the superuser's.
    Model = records.with_user(author.id).with_context(active_test=False)
    matching = set(Model.search([("id", "in", records.ids), *domain]).ids)
    return records.filtered(lambda record: record.id in matching)


def _hand_over_changed(records, rules, old_values):
    for rule in rules:
        picked = _filtered(records, rule.after)
        if old_values is not None:
            picked = picked.filtered(
                lambda record, rule=rule: any(
                    name in old_values.get(record.id, {}) and record[name] != old_values[record.id][name]
                    for name in rule.watched
                )
            )
        if picked:
            campaign = records.env["gobysend.campaign"].browse(rule.campaign_id)
            record_entries.hand_over(campaign, picked, watched=rule.watched, old_values=old_values)


def _make_create():
    @api.model_create_multi
    def create(self, vals_list, **kwargs):
        records = create.origin(self, vals_list, **kwargs)
        created = self.env.cr.precommit.data.setdefault(CREATED_KEY, {}).setdefault(self._name, {})
        for record_id in records.ids:
            created[record_id] = set()
        rules, _watched = self.env["base.automation"]._get_campaign_rules_of(self._name, "create")
        if rules:
            _hand_over_changed(records, rules, None)
        return records

    return create


def _make_write(watched):
    def write(self, vals, **kwargs):
        if not self or watched.isdisjoint(vals):
            return write.origin(self, vals, **kwargs)
        rules, watched_now = self.env["base.automation"]._get_campaign_rules_of(self._name, "write")
        written = watched_now.intersection(vals)
        if not written:
            return write.origin(self, vals, **kwargs)
        rules = [rule for rule in rules if written.intersection(rule.watched)]
        records = self.filtered("id")
        before = {rule: _filtered_before(records, rule) for rule in rules}
        old_values = {record.id: {name: record[name] for name in written} for record in records}
        result = write.origin(self, vals, **kwargs)
        for rule in rules:
            _hand_over_changed(before[rule], [rule], old_values)
        return result

    return write


def _make_compute_field_value(watched):
    # A watched field may be a stored computed one (a lead's stage follows its team).
    def _compute_field_value(self, field):
        computed = [f.name for f in self.pool.field_computed[field] if f.store and f.name in watched]
        if not computed:
            return _compute_field_value.origin(self, field)
        rules, watched_now = self.env["base.automation"]._get_campaign_rules_of(self._name, "write")
        computed = [name for name in computed if name in watched_now]
        records = self.filtered("id") if computed else self.browse()
        created = self.env.cr.precommit.data.get(CREATED_KEY, {}).get(self._name) if records else None
        if created:
            # The first values of a record created in this transaction are its creation, which
            # the rules on creation see, not a change.
            fresh = set()
            for record_id in set(records.ids) & created.keys():
                if not created[record_id].issuperset(computed):
                    fresh.add(record_id)
                    created[record_id].update(computed)
            records = records.filtered(lambda record: record.id not in fresh)
        if not records:
            return _compute_field_value.origin(self, field)
        rules = [rule for rule in rules if set(computed).intersection(rule.watched)]
        before = {rule: _filtered_before(records, rule) for rule in rules}
        old_values = {record.id: {name: record[name] for name in computed} for record in records}
        result = _compute_field_value.origin(self, field)
        for rule in rules:
            _hand_over_changed(before[rule], [rule], old_values)
        return result

    return _compute_field_value
