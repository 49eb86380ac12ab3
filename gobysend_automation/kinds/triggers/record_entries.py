"""What a record-triggered campaign does with the records its automation rule hands over.

In the writer's transaction (a salesperson saving a lead, an order being confirmed) the rule
hands the records over (``hand_over``) with their watched fields' old values; just before the
transaction commits, a precommit hook keeps those whose watched fields really changed and notes
them with one insert into ``gobysend.record.entry`` (``note_pending``), waking the engine's job
when none is pending. That is all the writer pays: however many records one write or one
transaction changed, one query, and nothing is sent or created for the campaign before it
commits. A change rolled back to a savepoint takes its hand-over with it: Odoo clears the
precommit hooks and their data with the savepoint.

The engine's advancing job then turns the notes into journeys in its own transactions
(``enter_noted``, ``enter_records``): the record still there and matching the "after" filter
with the rights of who set the campaign's filters, its contact found or brought into the
workspace, its values read for the templates.

Trust: the records count only when the user who set the campaign's filters can see them and
they match the "after" filter with that user's rights; the contact they lead to must be visible
to that user too. The templates see what that user can read of the record.
"""

import collections
import datetime
import functools
import json
import logging
import re

from odoo import SUPERUSER_ID, api, fields, tools
from odoo.exceptions import MissingError, UserError, ValidationError
from odoo.tools import SQL
from odoo.tools.safe_eval import safe_eval

from ...journeys import PENDING_JOB_STATES
from .. import TRIGGERS

_logger = logging.getLogger(__name__)

# Where the records handed over wait for the precommit hook (``cr.precommit.data``).
PENDING_KEY = "gobysend.record_entries"
# Field types whose values the templates get as they are.
SCALAR_TYPES = ("char", "text", "selection", "integer", "float", "monetary", "boolean", "date", "datetime")
# Longest text of a field the templates get (a description or a note is cut there).
MAX_TEXT = 500
# Most display names of a many2many field's old value the templates get.
MAX_NAMES = 20
# Fields no template needs: who created or last wrote the record.
SKIPPED_FIELDS = ("create_uid", "write_uid")
# Notes turned into journeys per transaction of the engine.
NOTED_BATCH = 1000


# ----------------------------------------------------------------------
# In the writer's transaction
# ----------------------------------------------------------------------


def hand_over(campaign, records, watched=None, old_values=False):
    """Note ``records``, fired by ``campaign``'s rule, with the old values of the fields written
    (``old_values``, by default from the rule's context; None on creation) for the precommit
    hook. ``watched`` are the names of the campaign's required fields (read when not given)."""
    if not records:
        return
    cr = records.env.cr
    pending = cr.precommit.data.get(PENDING_KEY)
    if pending is None:
        pending = cr.precommit.data[PENDING_KEY] = {}
        cr.precommit.add(functools.partial(note_pending, records.env(user=SUPERUSER_ID, context={}, su=True)))
    if watched is None:
        # sudo: the names of the campaign's own required fields.
        watched = tuple(campaign.sudo().trigger_field_ids.mapped("name"))
    if old_values is False:
        old_values = records.env.context.get("old_values")
    noted = pending.setdefault((campaign.id, records._name, tuple(watched), records.env.uid), {})
    for record_id in records.ids:
        old = None if old_values is None else old_values.get(record_id, {})
        entry = noted.get(record_id)
        if entry is None:
            noted[record_id] = {"created": old is None, "old": dict(old or {})}
        else:
            # Written again in the same transaction: the values before the first change count.
            for name, value in (old or {}).items():
                entry["old"].setdefault(name, value)


def note_pending(env):
    """The precommit hook: one insert of the records whose watched fields changed, and the
    engine's job woken when none is pending already."""
    pending = env.cr.precommit.data.pop(PENDING_KEY, None) or {}
    rows = []
    for (campaign_id, model_name, watched, writer_uid), noted in pending.items():
        Model = env[model_name].with_context(active_test=False)
        for record_id, entry in noted.items():
            record = Model.browse(record_id)
            try:
                if entry["created"]:
                    changes = [name for name in watched if record[name]]
                else:
                    old = entry["old"]
                    changes = [name for name in watched if name in old and record[name] != old[name]]
            except MissingError:
                continue  # created or changed, then deleted in the same transaction
            if changes:
                old = {
                    name: raw_value(Model._fields[name], entry["old"][name]) for name in watched if name in entry["old"]
                }
                rows.append((campaign_id, writer_uid, model_name, record_id, entry["created"], old, changes))
    if not rows:
        return
    Journey = env["gobysend.journey"]
    # One statement for every note of the transaction, and in the same round trip whether the
    # engine's job is already pending (then it will find them, and the writer queues nothing).
    env.cr.execute(
        SQL(
            """
            WITH noted AS (
                INSERT INTO gobysend_record_entry (campaign_id, writer_uid, res_model, res_id, created, old_values,
                                                   changes, noted_at)
                     VALUES %s
            )
            SELECT EXISTS (SELECT 1 FROM queue_job WHERE identity_key = %s AND state IN %s)
            """,
            SQL(", ").join(
                SQL(
                    "(%s, %s, %s, %s, %s, %s::jsonb, %s::jsonb, now() at time zone 'UTC')",
                    campaign_id,
                    writer_uid,
                    model_name,
                    record_id,
                    created,
                    json.dumps(old),
                    json.dumps(changes),
                )
                for campaign_id, writer_uid, model_name, record_id, created, old, changes in rows
            ),
            Journey._advance_identity(0),
            PENDING_JOB_STATES,
        )
    )
    if not env.cr.fetchone()[0]:
        Journey._enqueue_advance(lanes=1)
        # The transaction commits right after its precommit hooks: nothing may stay unwritten.
        env.flush_all()


def raw_value(field, value):
    """``value`` of ``field`` as the record holds it, as JSON data: related records by id."""
    if field.type == "many2one":
        return value.id or False
    if field.type in ("many2many", "one2many"):
        return value.ids[:MAX_NAMES]
    return plain_value(field, value)


def old_values_shown(Model, olds):
    """{record id: its old values as the templates show them} for ``olds`` ({record id: the
    old values ``note_pending`` wrote}): related records by their names, read once for all."""
    related = collections.defaultdict(set)
    for old in olds.values():
        for name, value in old.items():
            field = Model._fields.get(name)
            if field is not None and field.type in ("many2one", "many2many", "one2many") and value:
                related[name].update(value if isinstance(value, list) else [value])
    names = {}
    for name, ids in related.items():
        # sudo: names only, as read() shows a related record's name to whoever reads the field.
        targets = Model.env[Model._fields[name].comodel_name].sudo().browse(sorted(ids)).exists()
        names[name] = {target.id: record_name(target) for target in targets}
    shown = {}
    for record_id, old in olds.items():
        values = shown[record_id] = {}
        for name, value in old.items():
            field = Model._fields.get(name)
            if field is None:
                continue
            if field.type == "many2one":
                values[name] = names.get(name, {}).get(value, "") if value else ""
            elif field.type in ("many2many", "one2many"):
                values[name] = [names[name][target] for target in value or [] if target in names.get(name, {})]
            else:
                values[name] = value
    return shown


# ----------------------------------------------------------------------
# In the engine's transactions
# ----------------------------------------------------------------------


def enter_noted(registry, limit=NOTED_BATCH):
    """Turn the records noted by writers into journeys, ``limit`` notes a transaction, until
    none is left; return how many notes were handled. Notes locked by another server are
    skipped: it handles them."""
    handled = 0
    while True:
        with registry.cursor() as cr:
            cr.execute(
                """
                SELECT id, campaign_id, writer_uid, res_model, res_id, created, old_values, changes
                  FROM gobysend_record_entry ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED
                """,
                (limit,),
            )
            rows = cr.fetchall()
            if not rows:
                return handled
            env = api.Environment(cr, SUPERUSER_ID, {})
            # A record noted by two transactions starts two journeys: the notes of one campaign
            # and writer go in rounds where each record appears once.
            rounds = collections.defaultdict(list)
            for _id, campaign_id, writer_uid, res_model, res_id, created, old, changes in rows:
                group = rounds[campaign_id, writer_uid or SUPERUSER_ID, res_model]
                for noted in group:
                    if res_id not in noted:
                        break
                else:
                    noted = {}
                    group.append(noted)
                noted[res_id] = {"created": created, "old": old or {}, "changes": changes or []}
            for (campaign_id, writer_uid, res_model), group in rounds.items():
                campaign = env(user=writer_uid, su=True)["gobysend.campaign"].browse(campaign_id).exists()
                if not campaign or campaign.model_name != res_model:
                    continue
                for noted in group:
                    try:
                        with cr.savepoint():
                            enter_records(campaign, noted)
                    except UserError as error:
                        # A campaign set up wrongly loses these records' journeys, not the others'.
                        env.invalidate_all(flush=False)
                        _logger.warning(
                            "Campaign %s started no journeys for %s records: %s", campaign_id, len(noted), error
                        )
            cr.execute("DELETE FROM gobysend_record_entry WHERE id = ANY(%s)", ([row[0] for row in rows],))
            handled += len(rows)


def enter_records(campaign, noted):
    """Start ``campaign``'s journeys for the records ``noted`` ({record id: {"created", "old",
    "changes"}} as ``note_pending`` wrote them); return the new journeys' ids."""
    kind = TRIGGERS.get(campaign.trigger_kind)
    if campaign.state != "running" or not campaign.active or not kind or not kind.record_based:
        return []
    Model = kind.records_model(campaign)
    if Model is None:
        return []
    writer_uid = campaign.env.uid
    # The "after" filter again, now with the rights of who set it: the rule evaluated it as the
    # writer, who may see more. Its text is plain data (``records.parse_filter``).
    after = safe_eval(campaign.filter_domain or "[]", {"uid": writer_uid}) if campaign.filter_domain else []
    records = Model.search(
        [("id", "in", [record_id for record_id, entry in noted.items() if entry["changes"]]), *after], order="id"
    )
    if not records:
        return []
    contacts = resolve_contacts(campaign, records)
    records = records.browse([record_id for record_id in records.ids if record_id in contacts])
    if not records:
        return []
    snapshots = record_values(records, template_record_fields(campaign))
    olds = old_values_shown(Model, {record.id: noted[record.id]["old"] for record in records})
    entries = [
        {
            "partner_id": contacts[record.id],
            "res_model": records._name,
            "res_id": record.id,
            "context": {
                "record": snapshots[record.id],
                "old": olds[record.id],
                "changes": noted[record.id]["changes"],
            },
        }
        for record in records
    ]
    return campaign.env["gobysend.journey"]._enter(campaign, entries, run=False)


# ----------------------------------------------------------------------
# What the templates see
# ----------------------------------------------------------------------


# ``record.name`` or ``record["name"]`` in a template; any other use of ``record`` (a loop over
# it, a key computed at render time) needs the whole record.
RECORD_USE_RE = re.compile(r"\brecord\b(?:\.(\w+)|\[\s*[\"'](\w+)[\"']\s*\])?")


def template_record_fields(campaign):
    """The fields of ``record`` the campaign's messages use, or None when they may use any: the
    writer's transaction then reads only those (a lead has a hundred fields)."""
    names = set()
    for step in campaign.step_ids:
        sources = [step.subject, step.body, step.template_id.subject, step.template_id.body]
        if "variant_ids" in step._fields:
            sources += [text for variant in step.variant_ids for text in (variant.subject, variant.body)]
            sources += [
                text for variant in step.variant_ids for text in (variant.template_id.subject, variant.template_id.body)
            ]
        for source in sources:
            for match in RECORD_USE_RE.finditer(source or ""):
                name = match.group(1) or match.group(2)
                if not name:
                    return None
                names.add(name)
    return names


def readable_fields(Model, wanted=None):
    """The stored scalar and many2one fields of ``Model`` its user may read (among ``wanted``
    when given)."""
    return [
        name
        for name, field in Model._fields.items()
        if field.store
        and (field.type in SCALAR_TYPES or field.type == "many2one")
        and name not in SKIPPED_FIELDS
        and (wanted is None or name in wanted)
        and field.is_accessible(Model.env)
    ]


def record_values(records, wanted=None):
    """{record id: the record as plain data}: scalar fields as they are (texts cut, dates as
    text) and the name of the record each many2one field names, as its user reads them.

    The names are a related record's own name (``_rec_name``), not its computed display name,
    and are read without prefetching the rest of its row: the writer's transaction pays for
    them, and a contact's or a user's display name costs more than the rest of the hand-over."""
    names = readable_fields(records, wanted)
    scalars = [name for name in names if records._fields[name].type != "many2one"]
    values = {}
    for row in records.read([*scalars, "display_name"]):
        values[row["id"]] = {
            name: value if name == "display_name" else plain_value(records._fields[name], value, read=True)
            for name, value in row.items()
        }
    for name in names:
        if name in scalars:
            continue
        # sudo: names only, as read() shows a related record's name to whoever reads the field.
        targets = records.mapped(name).sudo().with_context(prefetch_fields=False)
        shown = {target.id: record_name(target) for target in targets}
        for record in records:
            values[record.id][name] = shown.get(record[name].id, "")
    return values


def record_name(record):
    rec_name = record._rec_name
    if rec_name and rec_name in record._fields and record._fields[rec_name].type == "char":
        return record[rec_name] or ""
    return record.display_name or ""


def plain_value(field, value, read=False):
    """``value`` of ``field`` (as ``read`` gives it, or as the record holds it) as plain data."""
    if field.type == "many2one":
        if read:
            return value[1] if value else ""
        return record_name(value.sudo()) if value else ""  # sudo: a name, as read() shows it
    if field.type in ("many2many", "one2many"):
        return [record.sudo().display_name for record in value[:MAX_NAMES]]  # sudo: names, as above
    if (value is False or value is None) and field.type != "boolean":
        return ""  # an empty field prints as nothing, not as "None"
    if isinstance(value, datetime.datetime):
        return fields.Datetime.to_string(value)
    if isinstance(value, datetime.date):
        return fields.Date.to_string(value)
    if isinstance(value, str):
        return value[:MAX_TEXT]
    if isinstance(value, int | float | bool):
        return value
    return str(value)[:MAX_TEXT]


# ----------------------------------------------------------------------
# From a record to its contact
# ----------------------------------------------------------------------


def partner_path_fields(Model, path):
    """The fields of ``path`` from ``Model`` to ``res.partner`` (none for ``id`` on contacts
    themselves); raise ``ValidationError`` naming what is wrong."""
    env = Model.env
    if path == "id":
        if Model._name == "res.partner":
            return []
        raise ValidationError(
            env._("“id” leads to a contact only on Contacts; choose the field of the contact instead.")
        )
    current = Model
    chain = []
    for name in path.split("."):
        field = current._fields.get(name)
        if field is None or field.type != "many2one" or not field.is_accessible(env):
            raise ValidationError(
                env._(
                    "“%(path)s” does not lead from %(model)s to a contact: %(where)s has no readable "
                    "many-to-one field “%(field)s”.",
                    path=path,
                    model=Model._description,
                    where=current._description,
                    field=name,
                )
            )
        chain.append(field)
        current = env[field.comodel_name]
        if not current.has_access("read"):
            raise ValidationError(
                env._(
                    "“%(path)s” does not lead from %(model)s to a contact: %(user)s cannot read %(where)s.",
                    path=path,
                    model=Model._description,
                    user=env.user.name,
                    where=current._description,
                )
            )
    if current._name != "res.partner":
        raise ValidationError(
            env._(
                "“%(path)s” leads from %(model)s to %(target)s, not to a contact.",
                path=path,
                model=Model._description,
                target=current._description,
            )
        )
    return chain


def follow_partner_path(records, path):
    """{record id: partner id} along ``path``, with the rights of ``records``' user: a step
    through a record that user cannot see leads nowhere."""
    if path == "id":
        return {record.id: record.id for record in records}
    reached = {record.id: record for record in records}
    for position, name in enumerate(path.split(".")):
        if position and reached:
            here = next(iter(reached.values())).browse()
            visible = set(here.search([("id", "in", list({rec.id for rec in reached.values()}))]).ids)
            reached = {record_id: rec for record_id, rec in reached.items() if rec.id in visible}
        reached = {record_id: rec[name] for record_id, rec in reached.items()}
        reached = {record_id: rec for record_id, rec in reached.items() if rec}
    return {record_id: partner.id for record_id, partner in reached.items()}


def resolve_contacts(campaign, records):
    """{record id: partner id} for ``records`` (with the rights of who set the campaign's
    filters): the contact along the path to the contact, else the contact of the record's email
    address (found or created in the workspace), when that user can see it and it is, or may
    become, one of the workspace's contacts."""
    found = {}
    if campaign.partner_path:
        found = follow_partner_path(records, campaign.partner_path.strip())
    if campaign.email_path:
        field_name = campaign.email_path.strip()
        emails = {
            record.id: tools.email_normalize(record[field_name] or "")
            for record in records
            if record.id not in found and record[field_name]
        }
        found.update(contacts_by_email(campaign, records, {rid: email for rid, email in emails.items() if email}))
    if not found:
        return {}
    # Archived contacts are left alone (active_test): nobody is written to through them.
    Partner = records.env["res.partner"].with_context(active_test=True)
    visible = set(Partner.search([("id", "in", list(set(found.values())))]).ids)
    members = workspace_members(campaign, visible)
    return {record_id: partner_id for record_id, partner_id in found.items() if partner_id in members}


def contacts_by_email(campaign, records, emails):
    """{record id: partner id} for ``emails`` ({record id: normalised address}): the workspace's
    contact with that address, else a contact this workspace created before, else a new one
    owned by the workspace. Contacts of Odoo users, companies and other workspaces are never
    adopted, as the tracking API's identify does not adopt them."""
    if not emails:
        return {}
    env = campaign.env
    workspace = campaign.workspace_id
    Ingest = env["gobysend.ingest"]
    addresses = sorted(set(emails.values()))
    found = Ingest._find_partner_ids(workspace, [{"id": None, "email": email, "phone": None} for email in addresses])
    by_email = {email: found["email", email] for email in addresses if ("email", email) in found}
    unknown = [email for email in addresses if email not in by_email]
    if unknown:
        # sudo: looks only for contacts this workspace created, by their address.
        Partner = env["res.partner"].sudo()
        earlier = Partner.search(
            [("email_normalized", "in", unknown), ("gobysend_origin_workspace_id", "=", workspace.id)], order="id"
        )
        for partner in earlier:
            if partner.email_normalized not in by_email and not Ingest._is_odoo_account(partner):
                by_email[partner.email_normalized] = partner.id
        new = [email for email in unknown if email not in by_email]
        if new:
            env["gobysend.ingest"]._claim_identifiers(workspace, [f"email:{email}" for email in new])
            names = {}
            for record in records:
                email = emails.get(record.id)
                if email in new and email not in names:
                    names[email] = (record["contact_name"] if "contact_name" in record._fields else None) or email
            created = Partner.with_context(mail_create_nolog=True, mail_create_nosubscribe=True).create(
                [{"name": names[email], "email": email, "gobysend_origin_workspace_id": workspace.id} for email in new]
            )
            by_email.update(zip(new, created.ids, strict=True))
    return {record_id: by_email[email] for record_id, email in emails.items() if email in by_email}


def workspace_members(campaign, partner_ids):
    """Those of ``partner_ids`` that are the workspace's contacts, subscribing those that have no
    subscription yet and may get one: not the partner of an internal user or of a company of this
    database (the business's own people), nor a contact another workspace created. A contact whose
    subscription was archived stays out."""
    if not partner_ids:
        return set()
    env = campaign.env
    workspace = campaign.workspace_id
    # sudo: the subscriptions of this workspace, which the engine reads for every trigger.
    Subscription = env["gobysend.subscription"].sudo().with_context(active_test=False)
    existing = Subscription.search([("workspace_id", "=", workspace.id), ("partner_id", "in", list(partner_ids))])
    members = {subscription.partner_id.id for subscription in existing if subscription.active}
    unknown = set(partner_ids) - set(existing.partner_id.ids)
    newcomers = sorted(unknown - not_adoptable(env, workspace, unknown)) if unknown else []
    if newcomers:
        env["gobysend.ingest"]._claim_identifiers(workspace, [f"partner:{partner_id}" for partner_id in newcomers])
        # The contact is the business's customer of a record in Odoo: subscribed, like a contact a
        # user adds, with the record as the consent's source; a double opt-in workspace asks them
        # to confirm first (the subscription model does).
        Subscription.with_context(mail_create_nolog=True, mail_create_nosubscribe=True).create(
            [{"workspace_id": workspace.id, "partner_id": partner_id, "source": "record"} for partner_id in newcomers]
        )
        members.update(newcomers)
    return members


def not_adoptable(env, workspace, partner_ids):
    """Those of ``partner_ids`` a record may not bring into ``workspace``."""
    ids = list(partner_ids)
    # sudo: who owns each partner; only ids are read.
    staff = (
        env["res.users"]
        .sudo()
        .with_context(active_test=False)
        .search([("partner_id", "in", ids), ("share", "=", False)])
    )
    companies = env["res.company"].sudo().with_context(active_test=False).search([("partner_id", "in", ids)])
    others = (
        env["res.partner"]
        .sudo()
        .with_context(active_test=False)
        .search(
            [
                ("id", "in", ids),
                ("gobysend_origin_workspace_id", "!=", False),
                ("gobysend_origin_workspace_id", "!=", workspace.id),
            ]
        )
    )
    return set(staff.partner_id.ids) | set(companies.partner_id.ids) | set(others.ids)
