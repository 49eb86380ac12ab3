"""A campaign's workflow as JSON: its trigger settings, audience, steps tree and inline message
templates, to move a workflow from one workspace (or database) to another.

Fields are taken from the models themselves: every stored field a user may set (plain values,
references, the A/B test's variants) is exported, so that a field a new step kind adds travels
too. References to other records are written by name (with their XML id when they have one)
and matched again by name *inside the target workspace* on import, with the importing user's
rights: an import never points at another workspace's channel, segment or attribute. What
cannot be matched is left empty and reported.
"""

import json

from odoo.exceptions import UserError, ValidationError
from odoo.models import MAGIC_COLUMNS

from . import kinds

FORMAT = "gobysend.workflow"
VERSION = 1
# A workflow of a few hundred steps is well under this; anything larger is not a workflow.
MAX_SIZE = 2 * 1024 * 1024
MAX_STEPS = 1000

PLAIN_TYPES = {"char", "text", "html", "selection", "integer", "float", "boolean", "monetary"}
# Campaign fields that are its state or its own bookkeeping, not its settings.
CAMPAIGN_SKIPPED = {
    "workspace_id",
    "state",
    "active",
    "color",
    "scheduled_at",
    "filter_user_id",
    "automation_id",
    "cron_id",
    "step_ids",
    "journey_ids",
    "message_ids",
    "activity_ids",
    "message_follower_ids",
    "website_message_ids",
    "rating_ids",
}
# A webhook step's signing secret stays in its database: an imported step gets a new one.
STEP_SKIPPED = {
    "campaign_id",
    "workspace_id",
    "parent_id",
    "parent_path",
    "child_ids",
    "branch",
    "sequence",
    "hook_secret",
}
TEMPLATE_FIELDS = ("name", "channel_type", "subject", "body")


# The lines that belong to a record and travel with it (the A/B test's message variants).
LINES = {"gobysend.campaign.step": {"variant_ids"}}


def _settable(model, skipped):
    """The fields of ``model`` a user sets (stored, not read-only), in a stable order."""
    names = []
    for name, field in sorted(model._fields.items()):
        if name in skipped or name in MAGIC_COLUMNS or not field.store or field.readonly or field.related:
            continue
        if field.type == "one2many" and name not in LINES.get(model._name, ()):
            continue
        if field.type in PLAIN_TYPES or field.type in ("many2one", "many2many", "one2many"):
            names.append(name)
    return names


# ----------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------


def _reference(record):
    """How a record is named in the JSON: its name, its model for a model, with its XML id."""
    if not record:
        return None
    if record._name == "ir.model":
        return {"model": record.model}
    if record._name == "ir.model.fields":
        return {"model": record.model, "field": record.name}
    reference = {"name": record.display_name}
    if record._name == "gobysend.channel":
        # Matched by name on import, else by kind: another workspace's "SMS" has another name.
        reference["channel_type"] = record.channel_type
    xmlid = record.sudo().get_external_id().get(record.id)  # sudo: reading an XML id only
    if xmlid and not xmlid.startswith("__"):
        reference["xmlid"] = xmlid
    return reference


def _export_record(record, skipped, inline=None):
    values = {}
    for name in _settable(record, skipped):
        field = record._fields[name]
        value = record[name]
        if field.type == "many2one":
            if inline and name in inline:
                values[name] = inline[name](value) if value else None
            else:
                values[name] = _reference(value)
        elif field.type == "many2many":
            values[name] = [_reference(item) for item in value]
        elif field.type == "one2many":
            inverse = field.inverse_name
            values[name] = [
                _export_record(item, {inverse, "workspace_id"}, inline={"template_id": _export_template})
                for item in value.sorted(lambda item: (item._fields.get("sequence") and item.sequence, item.id))
            ]
        else:
            values[name] = value if value is not False or field.type == "boolean" else None
    return values


def _export_template(template):
    return {name: template[name] or None for name in TEMPLATE_FIELDS}


def export_campaign(campaign):
    """The campaign's workflow as a JSON-able dict."""
    campaign.ensure_one()
    steps = campaign.step_ids.sorted(lambda step: (step.sequence, step.id))
    # Steps are numbered in the order of the file (each step, then its branches), which an
    # import reproduces: an export of the imported workflow numbers them the same.
    keys = {}

    def number(parent, branch):
        for step in steps.filtered(lambda step: step.parent_id == parent and (step.branch or "") == branch):
            keys[step.id] = len(keys) + 1
            for child_branch in sorted({child.branch or "" for child in steps if child.parent_id == step}):
                number(step, child_branch)

    number(steps.browse(), "")

    def export_step(step):
        values = _export_record(step, STEP_SKIPPED, inline={"template_id": _export_template})
        # A step referring to another step of the workflow (the message a condition checks)
        # refers to it by its key in this file.
        for name, field in step._fields.items():
            if name in values and field.type == "many2one" and field.comodel_name == step._name:
                values[name] = keys.get(step[name].id)
        values["key"] = keys[step.id]
        branches = {}
        for child in steps.filtered(lambda child: child.parent_id == step):
            branches.setdefault(child.branch or "", []).append(export_step(child))
        if branches:
            values["branches"] = dict(sorted(branches.items()))
        return values

    return {
        "format": FORMAT,
        "version": VERSION,
        "campaign": dict(_export_record(campaign, CAMPAIGN_SKIPPED), name=campaign.name),
        "steps": [export_step(step) for step in steps if not step.parent_id],
    }


def dumps(campaign):
    return json.dumps(export_campaign(campaign), indent=2, ensure_ascii=False, sort_keys=True)


# ----------------------------------------------------------------------
# Import
# ----------------------------------------------------------------------


class Importer:
    """Creates a draft campaign from a workflow's JSON in ``workspace``, with the user's rights."""

    def __init__(self, env, workspace):
        self.env = env
        self.workspace = workspace
        self.unmatched = []  # sentences: what was left empty

    def _error(self, reason):
        raise UserError(self.env._("The workflow file cannot be imported: %(reason)s", reason=reason))

    def parse(self, raw):
        if isinstance(raw, bytes):
            if len(raw) > MAX_SIZE:
                self._error(self.env._("it is larger than %(size)s MB.", size=MAX_SIZE // (1024 * 1024)))
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError:
                self._error(self.env._("it is not UTF-8 text."))
        if len(raw) > MAX_SIZE:
            self._error(self.env._("it is larger than %(size)s MB.", size=MAX_SIZE // (1024 * 1024)))
        try:
            data = json.loads(raw)
        except ValueError as error:
            self._error(self.env._("it is not JSON (%(error)s).", error=str(error)))
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            self._error(self.env._("it is not a Gobysend workflow (“format” is not “%(format)s”).", format=FORMAT))
        if data.get("version") != VERSION:
            self._error(
                self.env._(
                    "its version %(version)s is not supported (this database reads version %(supported)s).",
                    version=data.get("version"),
                    supported=VERSION,
                )
            )
        if not isinstance(data.get("campaign"), dict):
            self._error(self.env._("“campaign” must be an object."))
        if not isinstance(data.get("steps"), list):
            self._error(self.env._("“steps” must be a list."))
        return data

    def _match(self, model_name, reference, where):
        """The record of ``model_name`` that ``reference`` names, inside the target workspace."""
        if reference in (None, False):
            return False
        Model = self.env[model_name]
        if not isinstance(reference, dict):
            self._error(self.env._("%(where)s: a reference must be an object with a name.", where=where))
        if model_name == "ir.model":
            found = Model.search([("model", "=", str(reference.get("model")))], limit=1)
        elif model_name == "ir.model.fields":
            found = Model.search(
                [("model", "=", str(reference.get("model"))), ("name", "=", str(reference.get("field")))], limit=1
            )
        else:
            found = Model.browse()
            workspace_bound = "workspace_id" in Model._fields
            if reference.get("xmlid") and not workspace_bound:
                found = self.env.ref(str(reference["xmlid"]), raise_if_not_found=False) or Model.browse()
                found = found if found._name == model_name else Model.browse()
            if not found and reference.get("name"):
                domain = [(Model._rec_name or "name", "=", str(reference["name"]))]
                if workspace_bound:
                    domain.append(("workspace_id", "=", self.workspace.id))
                found = Model.search(domain, limit=1)
            if found and workspace_bound and found.workspace_id != self.workspace:
                found = Model.browse()
            if not found and model_name == "gobysend.channel" and reference.get("channel_type"):
                found = Model.search(
                    [
                        ("workspace_id", "=", self.workspace.id),
                        ("channel_type", "=", str(reference["channel_type"])),
                        ("state", "!=", "disabled"),
                    ],
                    limit=1,
                )
                if found:
                    self.unmatched.append(
                        self.env._(
                            "%(where)s: no channel “%(name)s” here; “%(channel)s” is used instead.",
                            where=where,
                            name=reference.get("name"),
                            channel=found.display_name,
                        )
                    )
                    return found.id
        if not found:
            self.unmatched.append(
                self.env._(
                    "%(where)s: no %(model)s “%(name)s” here; left empty.",
                    where=where,
                    model=self.env["ir.model"]._get(model_name).name,
                    name=reference.get("name") or reference.get("model") or reference.get("field") or "?",
                )
            )
            return False
        return found.id

    def _template(self, values, where):
        if not values:
            return False
        if not isinstance(values, dict) or not values.get("name"):
            self._error(self.env._("%(where)s: a message template needs a name.", where=where))
        template = {name: values.get(name) for name in TEMPLATE_FIELDS if values.get(name) is not None}
        return self.env["gobysend.message.template"].create(dict(template, workspace_id=self.workspace.id)).id

    def _values(self, Model, data, skipped, where, inline=()):
        """Create values for ``Model`` from ``data`` (a dict of the JSON), unknown keys refused."""
        settable = set(_settable(Model, skipped))
        values = {}
        for name, value in data.items():
            if name in ("key", "branches") and Model._name == "gobysend.campaign.step":
                continue
            if name not in settable and not (name == "name" and "name" in Model._fields):
                self._error(self.env._("%(where)s: unknown field “%(field)s”.", where=where, field=name))
            field = Model._fields[name]
            label = f"{where}, {field.string}"
            if name in inline:
                values[name] = self._template(value, label)
            elif field.type == "many2one" and field.comodel_name == "gobysend.campaign.step":
                continue  # resolved once every step exists
            elif field.type == "many2one":
                values[name] = self._match(field.comodel_name, value, label)
            elif field.type == "many2many":
                if not isinstance(value, list):
                    self._error(self.env._("%(where)s must be a list.", where=label))
                ids = [self._match(field.comodel_name, item, label) for item in value]
                values[name] = [(6, 0, [record_id for record_id in ids if record_id])]
            elif field.type == "one2many":
                if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
                    self._error(self.env._("%(where)s must be a list of objects.", where=label))
                Lines = self.env[field.comodel_name]
                values[name] = [
                    (0, 0, self._values(Lines, item, {field.inverse_name, "workspace_id"}, label, ("template_id",)))
                    for item in value
                ]
            elif field.type == "selection" and value is not None:
                allowed = [key for key, _label in field._description_selection(self.env)]
                if value not in allowed:
                    self._error(
                        self.env._(
                            "%(where)s: “%(value)s” is not one of %(allowed)s.",
                            where=label,
                            value=value,
                            allowed=", ".join(allowed),
                        )
                    )
                values[name] = value
            elif value is None:
                values[name] = False
            elif field.type in ("integer", "float", "monetary"):
                if isinstance(value, bool) or not isinstance(value, int | float):
                    self._error(self.env._("%(where)s must be a number.", where=label))
                values[name] = value
            elif field.type == "boolean":
                values[name] = bool(value)
            else:
                if not isinstance(value, str):
                    self._error(self.env._("%(where)s must be text.", where=label))
                values[name] = value
        return values

    def create_campaign(self, data, name=None):
        Campaign = self.env["gobysend.campaign"]
        values = self._values(Campaign, data["campaign"], CAMPAIGN_SKIPPED, self.env._("Campaign"))
        trigger = values.get("trigger_kind")
        if trigger and trigger not in kinds.TRIGGERS:
            self._error(self.env._("unknown trigger “%(kind)s”.", kind=trigger))
        values.update(workspace_id=self.workspace.id, name=name or values.get("name") or self.env._("Imported"))
        try:
            with self.env.cr.savepoint():
                campaign = Campaign.create(values)
        except ValidationError as error:
            self._error(error.args[0])
        Step = self.env["gobysend.campaign.step"]
        created = {}  # the file's step key -> step
        references = []  # (step, field, key of the step referred to)
        count = 0

        def create_steps(items, parent, branch, where):
            nonlocal count
            if not isinstance(items, list):
                self._error(self.env._("%(where)s: the steps must be a list.", where=where))
            for sequence, item in enumerate(items, start=1):
                count += 1
                if count > MAX_STEPS:
                    self._error(self.env._("it has more than %(count)s steps.", count=MAX_STEPS))
                label = self.env._("Step %(number)s", number=count)
                if not isinstance(item, dict):
                    self._error(self.env._("%(where)s must be an object.", where=label))
                kind = item.get("kind")
                if kind not in kinds.STEPS:
                    self._error(self.env._("%(where)s: unknown step kind “%(kind)s”.", where=label, kind=kind))
                values = self._values(Step, item, STEP_SKIPPED, label, ("template_id",))
                # A step referring to a step made before it (the message a condition checks)
                # gets it now, for its checks; the others once every step exists.
                later = []
                for name, field in Step._fields.items():
                    key = item.get(name)
                    if field.type == "many2one" and field.comodel_name == Step._name and key is not None:
                        if key in created:
                            values[name] = created[key].id
                        elif name != "parent_id":
                            later.append((name, key))
                values.update(
                    campaign_id=campaign.id,
                    parent_id=parent.id or False,
                    branch=branch or False,
                    sequence=sequence * 10,
                )
                try:
                    with self.env.cr.savepoint():
                        step = Step.create(values)
                except ValidationError as error:
                    self._error(self.env._("%(where)s: %(reason)s", where=label, reason=error.args[0]))
                if item.get("key") is not None:
                    created[item["key"]] = step
                references.extend((step, name, key) for name, key in later)
                branches = item.get("branches") or {}
                if not isinstance(branches, dict):
                    self._error(self.env._("%(where)s: “branches” must be an object.", where=label))
                for branch_name, children in sorted(branches.items()):
                    create_steps(children, step, branch_name, label)

        create_steps(data["steps"], Step, False, self.env._("Steps"))
        for step, name, key in references:
            if key not in created:
                self._error(self.env._("a step refers to step %(key)s, which is not in the file.", key=key))
            step[name] = created[key]
        return campaign
