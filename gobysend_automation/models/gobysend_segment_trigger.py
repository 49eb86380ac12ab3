import collections

from odoo import _, api, fields, models
from odoo.exceptions import ValidationError
from odoo.osv import expression

# The module's records behind the rules that follow related records (see
# ``_sync_related_watchers``), by trigger: ``segment_watch_<trigger>_<model>``.
WATCH_XMLID_PREFIX = "segment_watch_"
WATCH_TRIGGERS = ("on_create_or_write", "on_unlink")
WATCH_ACTION_CODE = "env['gobysend.segment']._mark_related_contacts_dirty(records, env.context.get('old_values'))"


class GobysendSegment(models.Model):
    """Segments start the journeys of the campaigns fired by entering or leaving them, and
    follow the records their contact filters name.

    A contact filter may reach other records of a contact (``opportunity_ids.stage_id.is_won``,
    ``sale_order_ids.state``): a change of such a record changes no field of the contact, so the
    contact write hook (``res.partner.write``) never sees it. For each model reached so, through
    a one2many field of contacts, the segments own two ``base.automation`` rules (on create or
    write of the fields the filters name, and on deletion) that queue the records' contacts for
    the incremental update, which runs every minute, instead of waiting for the daily refresh.
    """

    _inherit = "gobysend.segment"

    def _evaluate_membership(self, partner_ids=None, now=None):
        Campaign = self.env["gobysend.campaign"]
        if not Campaign._get_segment_campaigns(self.id):
            return super()._evaluate_membership(partner_ids, now)
        now = now or fields.Datetime.now()
        # The rows this evaluation opens are those after the last one now: no other evaluation
        # of this segment runs meanwhile (it holds the segment's lock, see ``_try_lock``).
        self.env.cr.execute("SELECT COALESCE(max(id), 0) FROM gobysend_segment_membership")
        last_row = self.env.cr.fetchone()[0]
        entered, left, members = super()._evaluate_membership(partner_ids, now)
        if entered or left:
            Campaign._start_segment_journeys(self, now, last_row, partner_ids)
        return entered, left, members

    def _get_users(self):
        campaigns = (
            self.env["gobysend.campaign"]
            .sudo()  # sudo: only the names of this segment's workspace's campaigns, for the refusal
            .with_context(active_test=False)
            .search([("trigger_segment_id", "=", self.id)])
        )
        return super()._get_users() + [
            _("campaign “%(campaign)s”", campaign=campaign.display_name) for campaign in campaigns
        ]

    @api.model
    def _forget_watched_partner_fields(self):
        super()._forget_watched_partner_fields()
        self._sync_related_watchers()

    # ------------------------------------------------------------------
    # Related records named by contact filters
    # ------------------------------------------------------------------

    @api.model
    def _get_watched_related_fields(self):
        """{model name: field names} of the records reached from contacts through a one2many
        field by the contact filters of active segments: the field linking them to the contact,
        and the fields the filters test on them (those of the first step past the contact)."""
        # Superuser to see every workspace's segments: only model and field names leave here.
        segments = self.sudo().with_context(active_test=True).search([])
        watched = collections.defaultdict(set)
        Partner = self.env["res.partner"]
        for condition in segments.condition_ids._leaf_conditions(set()):
            if condition.kind != "domain":
                continue
            try:
                domain = condition._get_contact_filter()
            except ValidationError:
                continue
            for leaf in domain:
                if expression.is_operator(leaf) or leaf in (expression.TRUE_LEAF, expression.FALSE_LEAF):
                    continue
                path, operator, value = leaf
                names = path.split(".")
                field = Partner._fields.get(names[0])
                if field is None or field.type != "one2many" or field.comodel_name == "res.partner":
                    continue
                comodel = self.env[field.comodel_name]
                tested = {field.inverse_name}
                if len(names) > 1:
                    tested.add(names[1])
                if operator in ("any", "not any") and isinstance(value, list | tuple):
                    tested.update(
                        sub[0].split(".")[0]
                        for sub in value
                        if isinstance(sub, list | tuple) and len(sub) == 3 and isinstance(sub[0], str)
                    )
                if isinstance(field.domain, list):
                    # The one2many's own domain (opportunities: type = opportunity).
                    tested.update(
                        sub[0].split(".")[0]
                        for sub in field.domain
                        if isinstance(sub, list | tuple) and len(sub) == 3 and isinstance(sub[0], str)
                    )
                if comodel._active_name:
                    tested.add(comodel._active_name)
                watched[comodel._name].update(self._stored_sources(comodel, tested))
        return {model: frozenset(names) for model, names in watched.items() if names}

    @api.model
    def _stored_sources(self, model, names):
        """``names`` with each field that is not stored replaced by the stored fields of ``model``
        it is computed from: only a write of a stored field tells a rule that it changed."""
        found = set()
        pending = list(names)
        seen = set()
        while pending:
            name = pending.pop()
            if name in seen:
                continue
            seen.add(name)
            field = model._fields.get(name)
            if field is None:
                continue
            if field.store:
                found.add(name)
            pending.extend(path.split(".")[0] for path in self.pool.field_depends.get(field, ()))
        return found

    @api.model
    def _sync_related_watchers(self):
        """Make the segments' rules follow exactly the related records their filters name: one
        pair of rules per model, created, updated or deleted as filters change. Rules are
        written only when something differs: creating one reloads the models' hooks."""
        wanted = self._get_watched_related_fields()
        # sudo: the rules are the segments' own, with fixed code that only queues contacts for
        # re-evaluation; managers cannot edit automation rules themselves.
        Automation = self.env["base.automation"].sudo().with_context(active_test=False)
        Data = self.env["ir.model.data"].sudo()
        existing = {
            data.name: Automation.browse(data.res_id)
            for data in Data.search(
                [
                    ("module", "=", "gobysend_automation"),
                    ("model", "=", "base.automation"),
                    ("name", "=like", f"{WATCH_XMLID_PREFIX}%"),
                ]
            )
        }
        keep = set()
        for model_name, names in sorted(wanted.items()):
            model = self.env["ir.model"].sudo()._get(model_name)  # sudo: the model of the rules, see above
            trigger_fields = (
                self.env["ir.model.fields"].sudo().search([("model", "=", model_name), ("name", "in", sorted(names))])
            )
            for trigger in WATCH_TRIGGERS:
                xmlid = f"{WATCH_XMLID_PREFIX}{trigger}_{model_name.replace('.', '_')}"
                keep.add(xmlid)
                automation = existing.get(xmlid, Automation).exists()
                field_ids = trigger_fields if trigger == "on_create_or_write" else trigger_fields.browse()
                if automation:
                    if automation.trigger_field_ids != field_ids or not automation.active:
                        automation.write({"trigger_field_ids": [(6, 0, field_ids.ids)], "active": True})
                    continue
                automation = Automation.create(
                    {
                        "name": _("Gobysend: segments follow changes of %(model)s", model=model.name),
                        "model_id": model.id,
                        "trigger": trigger,
                        "trigger_field_ids": [(6, 0, field_ids.ids)],
                    }
                )
                # Created on its own: server actions refuse to be created through another
                # record's commands in sudo mode (``_allow_sudo_commands``).
                self.env["ir.actions.server"].sudo().create(
                    {
                        "name": _("Gobysend: update segments of the contacts of %(model)s", model=model.name),
                        "model_id": model.id,
                        "usage": "base_automation",
                        "base_automation_id": automation.id,
                        "state": "code",
                        "code": WATCH_ACTION_CODE,
                    }
                )
                Data._update_xmlids(
                    [{"xml_id": f"gobysend_automation.{xmlid}", "record": automation, "noupdate": True}]
                )
        stale = Automation.browse()
        for xmlid, automation in existing.items():
            if xmlid not in keep:
                stale |= automation.exists()
        if stale:
            actions = stale.action_server_ids
            stale.unlink()
            actions.exists().unlink()

    @api.model
    def _mark_related_contacts_dirty(self, records, old_values=None):
        """Queue the contacts of ``records`` (of a model a contact filter reaches) for the
        incremental update; with ``old_values`` (a write), also the contacts they had before."""
        links = {
            field.inverse_name
            for field in self.env["res.partner"]._fields.values()
            if field.type == "one2many" and field.comodel_name == records._name and field.inverse_name
        }
        partner_ids = set()
        for link in links:
            if link not in records._fields or records._fields[link].type != "many2one":
                continue
            partner_ids.update(records.sudo()[link].ids)  # sudo: only ids, queued for our own evaluation
            for record_id in records.ids:
                old = (old_values or {}).get(record_id, {}).get(link)
                if old:
                    partner_ids.update(old.ids)
        self._mark_dirty(list(partner_ids), "contact")
