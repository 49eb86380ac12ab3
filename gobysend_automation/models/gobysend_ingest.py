"""Customer activity coming into a workspace: the service behind the tracking API.

Every public method takes a workspace (already authorised by the caller) and plain JSON-like
payloads, validates all of the input before writing anything, and raises ``InvalidInput``
naming the offending field. The HTTP routers, imports and tests all call these methods.
"""

import json
import logging
import re

from psycopg2 import IntegrityError, errorcodes
from psycopg2.extras import execute_values

from odoo import _, api, fields, models, tools
from odoo.tools import SQL

from ..exceptions import ContactNotWritable, InvalidInput, UnknownContact, UnknownDevice
from ..kinds.steps.wait_event import wake_waiting
from ..tools import coerce_attribute_value, find_nul_character, infer_attribute_type, parse_timestamp
from .gobysend_attribute import KEY_RE, STANDARD_KEYS
from .gobysend_attribute_value import VALUE_FIELDS
from .gobysend_device import PLATFORMS
from .gobysend_subscription import CHANNELS

_logger = logging.getLogger(__name__)

MAX_BATCH_ITEMS = 1000
MAX_NAME_LENGTH = 200
MAX_TEXT_LENGTH = 2048
BATCH_TYPES = ("identify", "track", "page", "device")
# How a contact is looked up, in order of precedence: the same as ``_find_subscription``.
CONTACT_KEYS = (("id", "external_id"), ("email", "email_normalized"), ("phone", "phone_sanitized"))
# The standard key (as the API names it) of each partner field that standard keys write.
STANDARD_KEY_OF_FIELD = {field: key for key, field in STANDARD_KEYS.items()}
# Push tokens as FCM, APNs and web push hand them out: printable ASCII without spaces (white
# space around them is dropped).
DEVICE_TOKEN_PATTERN = r"^[ \t\r\n]*[!-~]+[ \t\r\n]*$"
DEVICE_TOKEN_RE = re.compile(DEVICE_TOKEN_PATTERN)


class ConcurrentContactCreation(Exception):
    """Another request created the same contact at the same moment; retrying finds it."""


class GobysendIngest(models.AbstractModel):
    _name = "gobysend.ingest"
    _description = "Gobysend Activity Ingestion"

    def init(self):
        # The identifiers under which the API created contacts, per workspace: a meeting point that
        # makes two requests creating the same contact at once collide (see ``_claim_new_contact``).
        # Unlogged: a crash only forgets claims of contacts that exist by then, and lookups find those.
        self.env.cr.execute(
            """
            CREATE UNLOGGED TABLE IF NOT EXISTS gobysend_contact_claim (
                workspace_id integer NOT NULL,
                identifier varchar NOT NULL,
                claimed_at timestamp NOT NULL,
                PRIMARY KEY (workspace_id, identifier)
            )
            """
        )

    # ------------------------------------------------------------------
    # Contacts
    # ------------------------------------------------------------------

    @api.model
    def _check_storable(self, payload, path=""):
        """Refuse text that PostgreSQL cannot store, before it fails a whole request or batch."""
        field = find_nul_character(payload, path)
        if field:
            raise InvalidInput(field, _("Text cannot contain NUL characters (\\u0000)."))

    @api.model
    def _read_contact_ref(self, workspace, payload):
        """Return the normalised identifiers of a payload: {"id", "email", "phone"} (None when absent)."""
        self._check_storable({key: payload.get(key) for key in ("id", "email", "phone")})
        ref = {"id": None, "email": None, "phone": None}
        external_id = payload.get("id")
        if external_id is not None:
            if isinstance(external_id, int) and not isinstance(external_id, bool):
                external_id = str(external_id)
            if not isinstance(external_id, str) or not external_id.strip():
                raise InvalidInput("id", _("The customer id must be a non-empty string."))
            if len(external_id) > MAX_NAME_LENGTH:
                raise InvalidInput("id", _("The customer id is longer than %(max)s characters.", max=MAX_NAME_LENGTH))
            ref["id"] = external_id.strip()
        email = payload.get("email")
        if email is not None:
            normalized = tools.email_normalize(email) if isinstance(email, str) else False
            if not normalized:
                raise InvalidInput("email", _("“%(email)s” is not a valid email address.", email=email))
            ref["email"] = normalized
        phone = payload.get("phone")
        if phone is not None:
            if not isinstance(phone, str):
                raise InvalidInput("phone", _("A phone number must be a string."))
            ref["phone"] = workspace._normalize_phone(phone)
        if not any(ref.values()):
            raise InvalidInput("id", _("Identify the contact with one of id, email or phone."))
        return ref

    @api.model
    def _find_subscription(self, workspace, ref):
        """The workspace's subscription matching ``ref``, trying id, then email, then phone."""
        subscriptions = self.env["gobysend.subscription"].sudo().with_context(active_test=False)
        for key, domain_field in (
            ("id", "external_id"),
            ("email", "partner_id.email_normalized"),
            ("phone", "partner_id.phone_sanitized"),
        ):
            if ref[key]:
                found = subscriptions.search(
                    [("workspace_id", "=", workspace.id), (domain_field, "=", ref[key])], limit=1
                )
                if found:
                    return found
        return subscriptions

    @api.model
    def _find_partner_ids(self, workspace, refs):
        """``_find_subscription`` for many refs at once, in one query per identifier kind.

        Returns {(key, value): partner id} for the identifiers found; ``_match_contact`` picks
        one ref's contact from it. The hot path of event ingestion: plain SQL, because the ORM
        would cost a search and a record fetch per event.
        """
        found = {}
        unmatched = list(refs)
        if not unmatched:
            return found
        self.env["gobysend.subscription"].flush_model(["workspace_id", "partner_id", "external_id"])
        self.env["res.partner"].flush_model(["email_normalized", "phone_sanitized"])
        for key, column in CONTACT_KEYS:
            values = list({ref[key] for ref in unmatched if ref[key]})
            if not values:
                continue
            table = "s" if key == "id" else "p"
            # Among several matches, the newest subscription wins, as in the model's _order.
            self.env.cr.execute(
                SQL(
                    """
                    SELECT DISTINCT ON (%(column)s) %(column)s, s.partner_id
                      FROM gobysend_subscription s
                      JOIN res_partner p ON p.id = s.partner_id
                     WHERE s.workspace_id = %(workspace_id)s AND %(column)s = ANY(%(values)s)
                  ORDER BY %(column)s, s.create_date DESC, s.id DESC
                    """,
                    column=SQL.identifier(table, column),
                    workspace_id=workspace.id,
                    values=values,
                )
            )
            found.update(((key, value), partner_id) for value, partner_id in self.env.cr.fetchall())
            unmatched = [ref for ref in unmatched if not any((k, ref[k]) in found for k, _c in CONTACT_KEYS)]
        return found

    @api.model
    def _match_contact(self, ref, found):
        """The partner id of ``ref`` among ``found`` (see ``_find_partner_ids``), or raise."""
        for key, _column in CONTACT_KEYS:
            if ref[key] and (key, ref[key]) in found:
                return found[key, ref[key]]
        raise self._unknown_contact(ref)

    @api.model
    def _unknown_contact(self, ref):
        field = next(key for key in ("id", "email", "phone") if ref[key])
        return UnknownContact(
            field,
            _(
                "No contact with %(field)s “%(value)s” in this workspace; identify it first.",
                field=field,
                value=ref[field],
            ),
        )

    @api.model
    def _get_subscription(self, workspace, payload):
        """The subscription a non-identify call is about; unknown contacts are refused."""
        ref = self._read_contact_ref(workspace, payload)
        subscription = self._find_subscription(workspace, ref)
        if not subscription:
            raise self._unknown_contact(ref)
        return subscription

    @api.model
    def _get_contact(self, workspace, payload):
        """The contact (partner) a track, page or device call is about; unknown contacts are refused."""
        ref = self._read_contact_ref(workspace, payload)
        partner_id = self._match_contact(ref, self._find_partner_ids(workspace, [ref]))
        return self.env["res.partner"].sudo().browse(partner_id)

    @api.model
    def _read_contact_refs(self, workspace, items, start):
        """The contact refs of the run of track/page items that starts at ``start``, and their
        contacts found in bulk: ({index: ref, or the InvalidInput it raised}, found)."""
        refs = {}
        for index in range(start, len(items)):
            item = items[index]
            if not isinstance(item, dict) or item.get("type") not in ("track", "page"):
                break
            try:
                refs[index] = self._read_contact_ref(workspace, item)
            except InvalidInput as error:
                refs[index] = error
        found = self._find_partner_ids(workspace, [ref for ref in refs.values() if isinstance(ref, dict)])
        return refs, found

    @api.model
    def identify(self, workspace, payload):
        """Create or update a contact and its attributes. Returns {"contact_id", "created"}."""
        self._check_storable(payload)
        ref = self._read_contact_ref(workspace, payload)
        attributes = payload.get("attributes") or {}
        if not isinstance(attributes, dict):
            raise InvalidInput("attributes", _("Attributes must be a JSON object of key/value pairs."))
        partner_vals, attribute_values = self._prepare_attributes(workspace, attributes)
        if ref["email"]:
            partner_vals.setdefault("email", ref["email"])
        if ref["phone"]:
            partner_vals.setdefault("phone", ref["phone"])

        subscription = self._find_subscription(workspace, ref)
        created = not subscription
        try:
            with self.env.cr.savepoint():
                if created:
                    self._claim_new_contact(workspace, ref)
                    subscription = self._create_subscription(workspace, ref, partner_vals)
                elif ref["id"] and subscription.external_id != ref["id"]:
                    if subscription.external_id:
                        raise InvalidInput(
                            "id",
                            _(
                                "This contact already has the customer id “%(current)s”; it cannot also be “%(new)s”.",
                                current=subscription.external_id,
                                new=ref["id"],
                            ),
                        )
                    subscription.external_id = ref["id"]
                partner = subscription.partner_id
                changed = {
                    key: value for key, value in partner_vals.items() if not self._same_value(partner, key, value)
                }
                if changed:
                    refusal = self._contact_write_refusal(workspace, partner)
                    if refusal:
                        field = STANDARD_KEY_OF_FIELD[next(iter(changed))]
                        raise ContactNotWritable(f"attributes.{field}" if field in attributes else field, refusal)
                    # sudo: the partner was just checked to be this workspace's own contact.
                    partner.sudo().write(changed)
                self._write_attribute_values(workspace, partner, attribute_values)
                self.env.flush_all()
        except IntegrityError as error:
            if error.pgcode != errorcodes.UNIQUE_VIOLATION:
                raise
            raise ConcurrentContactCreation(str(error)) from error
        return {"contact_id": subscription.partner_id.id, "created": created}

    @api.model
    def _same_value(self, partner, field_name, value):
        """Whether writing ``value`` would leave ``partner``'s field as it is: an email or phone
        written differently but naming the same address or number counts as the same."""
        if field_name == "email" and value:
            return partner.email_normalized == value
        if field_name == "phone" and value:
            return partner.phone_sanitized == value
        current = partner[field_name]
        # Many2one values (country_id) arrive as ids.
        return (current.id if isinstance(current, models.BaseModel) else current) == value

    @api.model
    def _claim_new_contact(self, workspace, ref):
        """Make requests that create the same new contact at the same moment collide.

        Each identifier of the new contact is claimed in ``gobysend_contact_claim``. A second
        request claiming one of them waits for the first to end; once the first has committed,
        PostgreSQL refuses the second with a serialization failure (its snapshot cannot see the
        first's contact), and the router runs it again on a fresh snapshot, where it finds the
        contact. Plain SQL: the ORM has no ``ON CONFLICT``.
        """
        self.env.cr.execute(
            """
            INSERT INTO gobysend_contact_claim (workspace_id, identifier, claimed_at)
                 SELECT %s, identifier, now() at time zone 'UTC' FROM unnest(%s::varchar[]) AS identifier
            ON CONFLICT (workspace_id, identifier) DO UPDATE SET claimed_at = EXCLUDED.claimed_at
            """,
            (workspace.id, sorted(f"{key}:{ref[key]}" for key in ("id", "email", "phone") if ref[key])),
        )

    @api.model
    def _is_odoo_account(self, partner):
        """Whether ``partner`` stands for an Odoo user (internal or portal, archived ones too) or
        for a company of this database: contacts that sign in, reset passwords and send
        invoices, which the tracking API never rewrites nor adopts."""
        # sudo: only counts; an API request runs as the endpoint's user, who cannot read users.
        users = self.env["res.users"].sudo().with_context(active_test=False)
        companies = self.env["res.company"].sudo().with_context(active_test=False)
        return bool(
            users.search_count([("partner_id", "=", partner.id)], limit=1)
            or companies.search_count([("partner_id", "=", partner.id)], limit=1)
        )

    @api.model
    def _contact_write_refusal(self, workspace, partner):
        """Why the tracking API of ``workspace`` may not change ``partner``'s own fields (name,
        email, phone...), or None when it may.

        It may for a contact the workspace owns: one its API created, or one made elsewhere in
        Odoo that a manager subscribed to this workspace alone. A contact shared by several
        workspaces changes only through the workspace that created it; the others keep their
        own values in attributes.
        """
        if not partner.active:
            return _("This contact is archived in Odoo; its own fields cannot be changed through the API.")
        if self._is_odoo_account(partner):
            return _(
                "This contact is an Odoo user or company; its own fields cannot be changed through the API. "
                "Store the value in an attribute of another name instead."
            )
        # sudo: reads the creator of a contact this workspace holds, a field for administrators only.
        origin = partner.sudo().gobysend_origin_workspace_id
        if origin:
            if origin != workspace:
                return _(
                    "This contact was created through another workspace, which alone changes its own fields; "
                    "store the value in an attribute of another name instead."
                )
            return None
        shared = (
            self.env["gobysend.subscription"]
            .sudo()
            .with_context(active_test=False)
            .search_count([("partner_id", "=", partner.id), ("workspace_id", "!=", workspace.id)], limit=1)
        )
        if shared:
            return _(
                "This contact comes from elsewhere in Odoo and is shared by several workspaces; its own fields "
                "cannot be changed through the API. Store the value in an attribute of another name instead."
            )
        return None

    @api.model
    def _create_subscription(self, workspace, ref, partner_vals):
        """Subscribe a new contact: a partner that this workspace's API created before (and has
        since lost its subscription), or else a new partner. Any other partner with the same
        email or phone (an Odoo user, a company, a contact of another workspace or of the CRM)
        is left alone: a key of one workspace adopts nobody else's contact."""
        partners = self.env["res.partner"].sudo()
        partner = partners.browse()
        for key, field_name in (("email", "email_normalized"), ("phone", "phone_sanitized")):
            if ref[key] and not partner:
                partner = partners.search(
                    [(field_name, "=", ref[key]), ("gobysend_origin_workspace_id", "=", workspace.id)],
                    order="id",
                    limit=1,
                )
        if partner and self._is_odoo_account(partner):
            partner = partners.browse()
        if not partner:
            name = partner_vals.get("name") or ref["email"] or ref["phone"] or ref["id"]
            partner = partners.with_context(mail_create_nolog=True, mail_create_nosubscribe=True).create(
                dict(partner_vals, name=name, gobysend_origin_workspace_id=workspace.id)
            )
        return (
            self.env["gobysend.subscription"]
            .sudo()
            .with_context(mail_create_nolog=True, mail_create_nosubscribe=True)
            .create({"workspace_id": workspace.id, "partner_id": partner.id, "external_id": ref["id"], "source": "api"})
        )

    @api.model
    def _prepare_attributes(self, workspace, attributes):
        """Validate ``attributes``; return (partner field values, [(attribute key, type, value)])."""
        partner_vals = {}
        typed_values = []
        known = {
            attribute.key: attribute
            for attribute in self.env["gobysend.attribute"]
            .sudo()
            .search([("workspace_id", "=", workspace.id), ("key", "in", list(attributes))])
        }
        for key, value in attributes.items():
            field_name = f"attributes.{key}"
            if key in STANDARD_KEYS:
                partner_vals.update(self._standard_attribute_value(workspace, key, value, field_name))
                continue
            if not isinstance(key, str) or not KEY_RE.match(key):
                raise InvalidInput(
                    field_name,
                    _(
                        "“%(key)s” is not a valid attribute key: use lowercase letters, digits and underscores.",
                        key=key,
                    ),
                )
            if value is None:
                typed_values.append((key, known[key].value_type if key in known else None, None))
                continue
            value_type = known[key].value_type if key in known else infer_attribute_type(value)
            if not value_type:
                raise InvalidInput(
                    field_name,
                    _("Attribute values must be text, numbers, booleans or dates, not %(value)r.", value=value),
                )
            typed_values.append((key, value_type, coerce_attribute_value(value_type, value, field_name)))
        return partner_vals, typed_values

    @api.model
    def _standard_attribute_value(self, workspace, key, value, field_name):
        if value is None or value == "":
            if key in ("name",):
                raise InvalidInput(field_name, _("A contact's name cannot be emptied."))
            return {STANDARD_KEYS[key]: False}
        if key == "email":
            normalized = tools.email_normalize(value) if isinstance(value, str) else False
            if not normalized:
                raise InvalidInput(field_name, _("“%(email)s” is not a valid email address.", email=value))
            return {"email": normalized}
        if key == "phone":
            return {"phone": workspace._normalize_phone(value, field_name=field_name)}
        if key == "birthday":
            return {"gobysend_birthday": coerce_attribute_value("date", value, field_name)}
        if key == "country_code":
            country = self.env["res.country"].sudo().browse()
            if isinstance(value, str) and len(value.strip()) == 2:
                country = country.search([("code", "=", value.strip().upper())], limit=1)
            if not country:
                raise InvalidInput(field_name, _("“%(code)s” is not a known ISO country code.", code=value))
            return {"country_id": country.id}
        if key == "language":
            code = str(value).replace("-", "_")
            languages = self.env["res.lang"].sudo().search([("active", "=", True)])
            match = languages.filtered(lambda lang: lang.code.lower() == code.lower()) or languages.filtered(
                lambda lang: lang.code.split("_")[0].lower() == code.split("_")[0].lower()
            )
            if not match:
                raise InvalidInput(
                    field_name, _("The language “%(code)s” is not installed in this database.", code=value)
                )
            return {"lang": match[0].code}
        if not isinstance(value, str):
            raise InvalidInput(field_name, _("“%(key)s” must be text.", key=key))
        if len(value) > MAX_TEXT_LENGTH:
            raise InvalidInput(field_name, _("“%(key)s” is too long.", key=key))
        if key == "name" and not value.strip():
            raise InvalidInput(field_name, _("A contact's name cannot be emptied."))
        return {STANDARD_KEYS[key]: value.strip()}

    @api.model
    def _write_attribute_values(self, workspace, partner, typed_values):
        if not typed_values:
            return
        attributes = self.env["gobysend.attribute"].sudo()
        by_key = {
            attribute.key: attribute
            for attribute in attributes.search(
                [("workspace_id", "=", workspace.id), ("key", "in", [k for k, _t, _v in typed_values])]
            )
        }
        new = [
            {"workspace_id": workspace.id, "key": key, "value_type": value_type, "auto_created": True}
            for key, value_type, value in typed_values
            if key not in by_key and value is not None
        ]
        for attribute in attributes.create(new):
            by_key[attribute.key] = attribute
        existing = {
            value.attribute_id.id: value
            for value in self.env["gobysend.attribute.value"]
            .sudo()
            .search([("partner_id", "=", partner.id), ("attribute_id", "in", [a.id for a in by_key.values()])])
        }
        to_create = []
        for key, _value_type, value in typed_values:
            attribute = by_key.get(key)
            if not attribute:
                continue  # clearing an attribute that never existed
            current = existing.get(attribute.id)
            if value is None:
                if current:
                    current.unlink()
                continue
            column = VALUE_FIELDS[attribute.value_type]
            if current:
                if current[column] != value:
                    current[column] = value
            else:
                to_create.append({"attribute_id": attribute.id, "partner_id": partner.id, column: value})
        self.env["gobysend.attribute.value"].sudo().create(to_create)

    # ------------------------------------------------------------------
    # Events and page views
    # ------------------------------------------------------------------

    @api.model
    def _prepare_event(self, workspace, payload, kind, partner_id=None):
        """Validate one track/page payload into a row for ``gobysend_event``."""
        self._check_storable(payload)
        if kind == "page":
            url = payload.get("url")
            if not isinstance(url, str) or not url.strip():
                raise InvalidInput("url", _("A page view needs the page's URL."))
            if len(url) > MAX_TEXT_LENGTH:
                raise InvalidInput("url", _("The URL is longer than %(max)s characters.", max=MAX_TEXT_LENGTH))
            name = payload.get("name") or "page_view"
        else:
            url = None
            name = payload.get("name")
        if not isinstance(name, str) or not name.strip():
            raise InvalidInput("name", _("An event needs a name, such as “order_completed”."))
        if len(name) > MAX_NAME_LENGTH:
            raise InvalidInput("name", _("The event name is longer than %(max)s characters.", max=MAX_NAME_LENGTH))
        properties = payload.get("properties")
        if properties is not None and not isinstance(properties, dict):
            raise InvalidInput("properties", _("Properties must be a JSON object."))
        try:
            json.dumps(properties, allow_nan=False)
        except ValueError:
            raise InvalidInput("properties", _("Properties cannot hold NaN or infinite numbers.")) from None
        message_id = payload.get("message_id")
        if message_id is not None:
            if isinstance(message_id, int) and not isinstance(message_id, bool):
                message_id = str(message_id)
            if not isinstance(message_id, str) or not message_id.strip() or len(message_id) > MAX_NAME_LENGTH:
                raise InvalidInput(
                    "message_id", _("The message id must be a non-empty string of at most 200 characters.")
                )
        texts = {}
        for field_name in ("title", "referrer"):
            value = payload.get(field_name)
            if value is not None and (not isinstance(value, str) or len(value) > MAX_TEXT_LENGTH):
                raise InvalidInput(
                    field_name, _("“%(field)s” must be text of at most 2048 characters.", field=field_name)
                )
            texts[field_name] = value if kind == "page" else None
        timestamp = parse_timestamp(payload.get("timestamp"))
        if partner_id is None:
            partner_id = self._get_contact(workspace, payload).id
        return {
            "partner_id": partner_id,
            "name": name.strip(),
            "kind": kind,
            "timestamp": timestamp,
            "properties": properties,
            "message_id": message_id,
            "url": url,
            "title": texts["title"],
            "referrer": texts["referrer"],
        }

    @api.model
    def _insert_events(self, workspace, rows):
        """Store validated event rows; return one (event id, duplicate) pair per row.

        Plain SQL for two reasons the ORM cannot serve: ``ON CONFLICT DO NOTHING`` makes a
        retried delivery (same message id) a no-op even when two deliveries race, and one
        multi-row INSERT keeps large batches at database speed.
        """
        if not rows:
            return []
        self.env.flush_all()
        now = fields.Datetime.now()
        uid = self.env.uid
        returned = execute_values(
            self.env.cr._obj,
            """
            INSERT INTO gobysend_event (workspace_id, partner_id, name, kind, timestamp, properties, message_id,
                                        url, title, referrer, create_uid, create_date, write_uid, write_date)
            VALUES %s
            ON CONFLICT (workspace_id, message_id) DO NOTHING
            RETURNING id, message_id
            """,
            [
                (
                    workspace.id,
                    row["partner_id"],
                    row["name"],
                    row["kind"],
                    row["timestamp"],
                    json.dumps(row["properties"]) if row["properties"] is not None else None,
                    row["message_id"],
                    row["url"],
                    row["title"],
                    row["referrer"],
                    uid,
                    now,
                    uid,
                    now,
                )
                for row in rows
            ],
            template="(%s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s, %s, %s)",
            page_size=len(rows),
            fetch=True,
        )
        # RETURNING lists the inserted rows in VALUES order; skipped rows all carry a message id.
        results = []
        position = 0
        seen = set()
        for row in rows:
            message_id = row["message_id"]
            if position < len(returned) and returned[position][1] == message_id and message_id not in seen:
                results.append((returned[position][0], False))
                position += 1
            else:
                results.append((None, True))
            if message_id is not None:
                seen.add(message_id)
        duplicates = [
            row["message_id"] for row, (event_id, _dup) in zip(rows, results, strict=True) if event_id is None
        ]
        if duplicates:
            self.env.cr.execute(
                "SELECT message_id, id FROM gobysend_event WHERE workspace_id = %s AND message_id = ANY(%s)",
                (workspace.id, duplicates),
            )
            existing = dict(self.env.cr.fetchall())
            results = [
                (event_id or existing.get(row["message_id"]), duplicate)
                for row, (event_id, duplicate) in zip(rows, results, strict=True)
            ]
        self.env["gobysend.event"].invalidate_model()
        # Segments re-evaluate these contacts in the background, never in this request.
        self.env["gobysend.segment"]._mark_dirty(
            [row["partner_id"] for row, (_event_id, duplicate) in zip(rows, results, strict=True) if not duplicate],
            "activity",
        )
        # Event campaigns start their journeys for these events (in the background, after commit).
        self.env["gobysend.campaign"]._start_event_journeys(workspace, rows, results)
        # Journeys waiting for one of these events go on now rather than at their time-out.
        wake_waiting(self.env, workspace.id, {row["partner_id"] for row in rows}, {row["name"] for row in rows})
        return results

    @api.model
    def track(self, workspace, payload, kind="event"):
        """Record one event (or page view). Returns {"event_id", "contact_id", "duplicate"}."""
        row = self._prepare_event(workspace, payload, kind)
        ((event_id, duplicate),) = self._insert_events(workspace, [row])
        return {"event_id": event_id, "contact_id": row["partner_id"], "duplicate": duplicate}

    @api.model
    def page(self, workspace, payload):
        return self.track(workspace, payload, kind="page")

    # ------------------------------------------------------------------
    # Devices and consent
    # ------------------------------------------------------------------

    @api.model
    def register_device(self, workspace, payload):
        self._check_storable(payload)
        token = payload.get("token")
        if not isinstance(token, str) or len(token) > MAX_TEXT_LENGTH or not DEVICE_TOKEN_RE.fullmatch(token):
            raise InvalidInput(
                "token",
                _(
                    "A device needs its push token: at most %(max)s printable ASCII characters, without spaces.",
                    max=MAX_TEXT_LENGTH,
                ),
            )
        platform = payload.get("platform")
        if platform not in dict(PLATFORMS):
            raise InvalidInput(
                "platform", _("The platform must be one of ios, android or web, not %(value)r.", value=platform)
            )
        partner = self._get_contact(workspace, payload)
        device = self.env["gobysend.device"].sudo()._claim(workspace, partner, token.strip(), platform)
        return {"device_id": device.id, "contact_id": partner.id}

    @api.model
    def remove_device(self, workspace, token):
        """Deactivate a device; removing an already removed one is a retry and succeeds again."""
        self._check_storable(token, "token")
        token = token.strip() if isinstance(token, str) else token
        device = (
            self.env["gobysend.device"]
            .sudo()
            .with_context(active_test=False)
            .search([("workspace_id", "=", workspace.id), ("token", "=", token)], limit=1)
        )
        if not device:
            raise UnknownDevice("token", _("No device with this token in this workspace."))
        if device.active:
            device.action_remove()
        return {"device_id": device.id, "active": False}

    @api.model
    def unsubscribe(self, workspace, payload, source="api"):
        self._check_storable(payload)
        channel = payload.get("channel")
        if channel not in CHANNELS and channel != "all":
            raise InvalidInput(
                "channel", _("The channel must be one of email, sms, zalo, push or all, not %(value)r.", value=channel)
            )
        subscription = self._get_subscription(workspace, payload)
        for name in CHANNELS if channel == "all" else (channel,):
            subscription._set_consent(name, "unsubscribed", source)
        return {"contact_id": subscription.partner_id.id, "channel": channel, "state": "unsubscribed"}

    # ------------------------------------------------------------------
    # Batch
    # ------------------------------------------------------------------

    @api.model
    def batch(self, workspace, items):
        """Process up to 1000 mixed items; one result per item, so one bad item sinks nothing else.

        Consecutive track/page items are validated one by one, their contacts looked up together
        and their events stored with a single INSERT; identify and device items run in order
        inside their own savepoint, so a track item after an identify of a new contact finds it.
        """
        if not isinstance(items, list):
            raise InvalidInput("batch", _("“batch” must be a list of items."))
        if len(items) > MAX_BATCH_ITEMS:
            raise InvalidInput(
                "batch",
                _(
                    "A batch holds at most %(max)s items; this one has %(count)s.",
                    max=MAX_BATCH_ITEMS,
                    count=len(items),
                ),
            )
        results = [None] * len(items)
        pending = []  # (index, row) of validated events waiting for one INSERT

        def flush_events():
            if pending:
                stored = self._insert_events(workspace, [row for _index, row in pending])
                for (index, row), (event_id, duplicate) in zip(pending, stored, strict=True):
                    results[index] = {
                        "index": index,
                        "status": "ok",
                        "event_id": event_id,
                        "contact_id": row["partner_id"],
                        "duplicate": duplicate,
                    }
                pending.clear()

        # Contacts of the current run of track/page items, looked up together; an identify or
        # device item may create or change contacts, so it ends the run.
        run_refs, run_found = {}, {}
        for index, item in enumerate(items):
            try:
                if not isinstance(item, dict):
                    raise InvalidInput("type", _("Each batch item must be a JSON object."))
                item_type = item.get("type")
                if item_type not in BATCH_TYPES:
                    raise InvalidInput(
                        "type",
                        _(
                            "The item type must be one of identify, track, page or device, not %(value)r.",
                            value=item_type,
                        ),
                    )
                if item_type in ("track", "page"):
                    if index not in run_refs:
                        run_refs, run_found = self._read_contact_refs(workspace, items, index)
                    ref = run_refs[index]
                    if isinstance(ref, InvalidInput):
                        raise ref
                    partner_id = self._match_contact(ref, run_found)
                    pending.append(
                        (
                            index,
                            self._prepare_event(
                                workspace, item, "page" if item_type == "page" else "event", partner_id
                            ),
                        )
                    )
                    continue
                flush_events()
                run_refs, run_found = {}, {}
                with self.env.cr.savepoint():
                    if item_type == "identify":
                        result = self.identify(workspace, item)
                    else:
                        result = self.register_device(workspace, item)
                results[index] = dict(result, index=index, status="ok")
            except InvalidInput as error:
                results[index] = {
                    "index": index,
                    "status": "error",
                    "errors": [
                        {"loc": ["batch", index, error.field], "msg": error.message, "type": type(error).__name__}
                    ],
                }
        flush_events()
        return results
