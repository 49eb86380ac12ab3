import contextlib
import contextvars
import copy
import functools

from odoo import _, api, fields, models
from odoo.fields import Command
from odoo.tools import SQL
from odoo.tools.sql import column_exists, create_column, table_exists

from ..tools import count_related, related_list_action

GOBYSEND_USER = "gobysend_automation.group_gobysend_user"
# What ``init`` adds to Odoo's contacts table, and uninstalling removes: the indexes of the
# columns that contacts are looked up by, and the trigger (and its function) that makes a new
# contact without a parent its own commercial entity as it is inserted.
PARTNER_LOOKUP_INDEXES = {
    column: f"res_partner_gobysend_{column}_idx" for column in ("email_normalized", "phone_sanitized")
}
OWN_ENTITY_TRIGGER = "gobysend_partner_own_commercial_entity"

# The defaults found so far by ``default_get`` while ``reusing_defaults`` is in force:
# {(id of the environment, names asked): (environment, defaults or None, names of their
# values that hold lists or dicts)}.
_REUSED_DEFAULTS = contextvars.ContextVar("gobysend_reused_partner_defaults", default=None)


@contextlib.contextmanager
def reusing_defaults():
    """Within this block, ``res.partner.default_get`` asked again for the same fields in the
    same environment gives the defaults it found the first time, when they are the same from
    one call to the next; so does ``_add_missing_default_values`` for values of the same names.

    Odoo's ``create`` asks for the defaults of each new record on its own, and a partner's
    cost more than the rest of its creation by our bulk identify: they are found by walking
    all the fields of the model, through the overrides of every installed addon. A default
    that changes from one call to the next (a sequence, a random value) is still asked for
    each record; finding that out costs it one value (a sequence skips one number per call
    of ``create``). A default that sets a relation to nothing is left out: a new record has
    none, and each such value cost the record a pass through the relation's writing."""
    token = _REUSED_DEFAULTS.set({})
    try:
        yield
    finally:
        _REUSED_DEFAULTS.reset(token)


# What a default of a new record's x2many field that sets no related record looks like.
EMPTY_RELATION = ([], [Command.set([])], [Command.clear()])


def _found_once(key, env, find, keep, complete=dict):
    """What ``find()`` gives for ``key`` (defaults of ``env``), found once while
    ``reusing_defaults`` is in force, when two calls give the same: its part that ``keep``
    selects is kept, and each caller gets ``complete`` of a copy of it. Otherwise, or when
    ``keep`` gives None (it cannot be reused), ``find`` is called each time. Each entry keeps
    its environment, so that the environment's id is not reused meanwhile."""
    reused = _REUSED_DEFAULTS.get()
    if key not in reused:
        first = find()
        second = find()
        kept = keep(first) if first == second else None
        if kept is None:
            reused[key] = (env, None, ())
            return second
        mutable = tuple(name for name, value in kept.items() if isinstance(value, list | tuple | dict))
        reused[key] = (env, kept, mutable)
    _env, kept, mutable = reused[key]
    if kept is None:
        return find()
    # Callers change the dict they get (``_add_missing_default_values`` adds the values),
    # and could change the lists in it.
    values = dict(kept)
    for name in mutable:
        values[name] = copy.deepcopy(values[name])
    return complete(values)


class ResPartner(models.Model):
    _inherit = "res.partner"

    gobysend_birthday = fields.Date(string="Birthday")
    # Lets a write of a contact that no workspace has ever had skip the segment change queue
    # without asking the database: the flag is read with the contact's other columns, so it is
    # usually in the ORM cache already. Set when a subscription is created and never cleared, so
    # False always means "in no workspace"; a stale True only costs the queue's own check.
    gobysend_ever_subscribed = fields.Boolean(string="Ever Subscribed to a Workspace", readonly=True, copy=False)
    # The workspace whose tracking API created this contact: the only one whose API may change
    # the contact's own fields once other workspaces share it. Empty for every other partner,
    # so that the column costs nothing to contacts made elsewhere in Odoo. For administrators
    # only: members of other workspaces sharing the contact must not read that workspace's name.
    gobysend_origin_workspace_id = fields.Many2one(
        "gobysend.workspace",
        string="Created by Workspace",
        readonly=True,
        copy=False,
        index="btree_not_null",
        ondelete="set null",
        groups="base.group_system",
    )
    # The profile is for Gobysend users only: other users reading a partner (exports, RPC reads
    # of all fields) must not trip over models they have no access to.
    gobysend_subscription_ids = fields.One2many(
        "gobysend.subscription", "partner_id", string="Gobysend Workspaces", groups=GOBYSEND_USER
    )
    gobysend_attribute_value_ids = fields.One2many(
        "gobysend.attribute.value", "partner_id", string="Attributes", groups=GOBYSEND_USER
    )
    gobysend_event_ids = fields.One2many("gobysend.event", "partner_id", string="Activity", groups=GOBYSEND_USER)
    gobysend_device_ids = fields.One2many("gobysend.device", "partner_id", string="Devices", groups=GOBYSEND_USER)
    # Every attribute of the contact in one exportable column ("tier: gold; points: 1200"), so
    # that Odoo's own export takes them along with the contact's fields. In the workspace of the
    # context's ``gobysend_workspace_id`` (set by a segment's member list), else in all the
    # user's workspaces.
    gobysend_attributes = fields.Char(
        string="Gobysend Attributes", compute="_compute_gobysend_attributes", groups=GOBYSEND_USER
    )
    gobysend_event_count = fields.Integer(compute="_compute_gobysend_counts", string="Events", groups=GOBYSEND_USER)
    gobysend_device_count = fields.Integer(
        compute="_compute_gobysend_counts", string="Device Count", groups=GOBYSEND_USER
    )
    gobysend_subscription_count = fields.Integer(
        compute="_compute_gobysend_counts", string="Workspace Count", groups=GOBYSEND_USER
    )
    gobysend_segment_membership_ids = fields.One2many(
        "gobysend.segment.membership",
        "partner_id",
        string="Segments",
        domain=[("left_at", "=", False)],
        groups=GOBYSEND_USER,
    )
    # Every entry into and exit from a segment: the contact's transitions, as workflows see them.
    gobysend_segment_history_ids = fields.One2many(
        "gobysend.segment.membership", "partner_id", string="Segment History", groups=GOBYSEND_USER
    )
    # The contact's runs through campaigns, of the user's workspaces (record rules).
    gobysend_journey_ids = fields.One2many("gobysend.journey", "partner_id", string="Journeys", groups=GOBYSEND_USER)
    gobysend_journey_count = fields.Integer(
        compute="_compute_gobysend_counts", string="Journey Count", groups=GOBYSEND_USER
    )

    @api.model
    def default_get(self, fields_list):
        if _REUSED_DEFAULTS.get() is None:
            return super().default_get(fields_list)
        # A default that sets a relation to nothing is not kept (see ``reusing_defaults``).
        return _found_once(
            (id(self.env), tuple(fields_list)),
            self.env,
            functools.partial(super().default_get, fields_list),
            keep=lambda defaults: {
                name: value
                for name, value in defaults.items()
                if not (self._fields[name].type in ("one2many", "many2many") and value in EMPTY_RELATION)
            },
        )

    @api.model
    def _add_missing_default_values(self, values):
        if _REUSED_DEFAULTS.get() is None:
            return super()._add_missing_default_values(values)
        # Which fields a new record misses, and so the defaults it is given, depend on the
        # names of its values only (a properties field, whose defaults depend on the values,
        # is left to Odoo). Odoo finds them record by record, walking all the fields of the
        # model: found once per set of names here.
        return _found_once(
            ("missing", id(self.env), frozenset(values)),
            self.env,
            functools.partial(super()._add_missing_default_values, values),
            keep=lambda completed: (
                None
                if any(field.type == "properties" for field in self._fields.values())
                else {name: value for name, value in completed.items() if name not in values}
            ),
            complete=lambda added: {**added, **values},
        )

    def _auto_init(self):
        if not column_exists(self.env.cr, "res_partner", "gobysend_ever_subscribed"):
            # Created and filled here rather than by the ORM: contacts subscribed before the
            # flag existed must have it, and one UPDATE per table does it on any number of them.
            create_column(self.env.cr, "res_partner", "gobysend_ever_subscribed", "boolean")
            for table in ("gobysend_subscription", "gobysend_segment_membership"):
                if table_exists(self.env.cr, table):
                    self.env.cr.execute(
                        SQL(
                            "UPDATE res_partner SET gobysend_ever_subscribed = true "
                            "WHERE id IN (SELECT partner_id FROM %s)",
                            SQL.identifier(table),
                        )
                    )
        return super()._auto_init()

    def init(self):
        super().init()
        # The tracking API and imports look contacts up by address and number, a batch at a
        # time (``= ANY(...)``); Odoo indexes email_normalized for ``ilike`` only (trigram) and
        # phone_sanitized not at all, so each lookup read every partner.
        for column, index in PARTNER_LOOKUP_INDEXES.items():
            self.env.cr.execute(
                SQL(
                    "CREATE INDEX IF NOT EXISTS %s ON res_partner (%s) WHERE %s IS NOT NULL",
                    SQL.identifier(index),
                    SQL.identifier(column),
                    SQL.identifier(column),
                )
            )
        # A contact without a parent is its own commercial entity (Odoo's
        # ``_compute_commercial_partner``). Odoo writes that after the insert, as an update of
        # the row just inserted: every index of the table is written again (two of them
        # trigram indexes of phone numbers) and each new contact leaves a dead row behind for
        # the vacuum. This trigger writes it in the insert itself; Odoo's compute finds the
        # same value. Bulk identify and imports then skip the update
        # (``gobysend.ingest._compute_commercial_partners``).
        trigger = SQL.identifier(OWN_ENTITY_TRIGGER)
        self.env.cr.execute(
            SQL(
                """
                CREATE OR REPLACE FUNCTION %(trigger)s() RETURNS trigger LANGUAGE plpgsql AS $$
                BEGIN
                    NEW.commercial_partner_id := NEW.id;
                    RETURN NEW;
                END
                $$;
                DROP TRIGGER IF EXISTS %(trigger)s ON res_partner;
                CREATE TRIGGER %(trigger)s BEFORE INSERT ON res_partner FOR EACH ROW
                    WHEN (NEW.parent_id IS NULL AND NEW.commercial_partner_id IS NULL)
                    EXECUTE FUNCTION %(trigger)s();
                """,
                trigger=trigger,
            )
        )

    @api.depends_context("uid")
    def _compute_gobysend_counts(self):
        # Counted under the current user's record rules: a user sees the activity of their
        # own workspaces only.
        for model, field in (
            ("gobysend.event", "gobysend_event_count"),
            ("gobysend.device", "gobysend_device_count"),
            ("gobysend.subscription", "gobysend_subscription_count"),
            ("gobysend.journey", "gobysend_journey_count"),
        ):
            counts = count_related(self, model, "partner_id")
            for partner in self:
                partner[field] = counts.get(partner, 0)

    def _compute_gobysend_attributes(self):
        domain = [("partner_id", "in", self.ids)]
        workspace_id = self.env.context.get("gobysend_workspace_id")
        if workspace_id:
            domain.append(("workspace_id", "=", workspace_id))
        # Read under the user's record rules: values of the workspaces they are a member of.
        values = self.env["gobysend.attribute.value"].search(domain, order="partner_id, id")
        texts = {}
        for value in values.sorted(lambda value: (value.partner_id.id, value.workspace_id.id, value.key)):
            texts.setdefault(value.partner_id.id, []).append(f"{value.key}: {value.value_display}")
        for partner in self:
            partner.gobysend_attributes = "; ".join(texts.get(partner.id, []))

    def write(self, vals):
        result = super().write(vals)
        # Every app writes contacts: only a change that can move a contact into or out of a
        # segment queues it for re-evaluation, so that other apps' writes cost no query.
        Segment = self.env["gobysend.segment"]
        if not Segment._get_watched_partner_fields().isdisjoint(vals):
            Segment._mark_dirty(self._gobysend_maybe_subscribed().ids, "contact")
        return result

    def _gobysend_maybe_subscribed(self):
        """These contacts less those the ORM cache already knows no workspace ever had; the
        others are left to the queue's own check, which costs the same query a read would."""
        field = self._fields["gobysend_ever_subscribed"]
        return self.filtered(lambda partner: self.env.cache.get(partner, field, None) is not False)

    def _gobysend_flag_subscribed(self):
        """Remember that these contacts were subscribed to a workspace. In SQL rather than
        through ``write``: subscribing someone is no edit of the contact, and must neither
        change its last-modified date nor run other apps' automations on contact changes."""
        self.env.cr.execute(
            """
            UPDATE res_partner SET gobysend_ever_subscribed = true
             WHERE id = ANY(%s) AND gobysend_ever_subscribed IS NOT TRUE
            """,
            (self.ids,),
        )
        self.invalidate_recordset(["gobysend_ever_subscribed"])

    def _gobysend_action(self, model, name):
        self.ensure_one()
        return related_list_action(self, model, "partner_id", name)

    def action_gobysend_view_events(self):
        return self._gobysend_action("gobysend.event", _("Activity of %(name)s", name=self.display_name))

    def action_gobysend_view_devices(self):
        return self._gobysend_action("gobysend.device", _("Devices of %(name)s", name=self.display_name))

    def action_gobysend_view_journeys(self):
        action = self._gobysend_action("gobysend.journey", _("Journeys of %(name)s", name=self.display_name))
        action["context"] = {}  # journeys are started by campaigns, not created by hand
        return action

    def action_gobysend_view_subscriptions(self):
        return self._gobysend_action("gobysend.subscription", _("Workspaces of %(name)s", name=self.display_name))
