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

from odoo.addons.base.models.res_partner import Partner as BasePartner

from ..exceptions import ContactNotWritable, InvalidInput, UnknownContact, UnknownDevice
from ..kinds.steps.goal import convert_on_events
from ..kinds.steps.wait_event import wake_waiting
from ..tools import (
    E164_RE,
    PLAIN_EMAIL_RE,
    any_of,
    coerce_attribute_value,
    fewer_collections,
    find_nul_character,
    infer_attribute_type,
    keys_of,
    normalize_email,
    normalize_phone,
    parse_timestamp,
    pg_array,
)
from .gobysend_attribute import KEY_RE, STANDARD_KEYS
from .gobysend_attribute_value import VALUE_FIELDS
from .gobysend_device import PLATFORMS
from .gobysend_segment import CHANGES
from .gobysend_subscription import BLACKLIST_FLAGS, BLACKLISTS, CHANNELS, initial_consent_records
from .res_partner import reusing_defaults

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
# A partner's images resized from the one it is given (``image.mixin``): none without one.
RESIZED_IMAGE_FIELDS = ("image_1024", "image_512", "image_256", "image_128")
# The computed fields of a new contact that ``_add_values_known_on_creation`` may give.
KNOWN_ON_CREATION = ("phone_sanitized", "email_normalized", "complete_name", "commercial_company_name", "partner_share")
# The column type of each attribute value type, for the arrays that bulk writes send.
VALUE_SQL_TYPES = {
    "string": "varchar",
    "number": "float8",
    "boolean": "boolean",
    "date": "date",
    "datetime": "timestamp",
}


class ConcurrentContactCreation(Exception):
    """Another request created the same contact at the same moment; retrying finds it."""


class GobysendIngest(models.AbstractModel):
    _name = "gobysend.ingest"
    _description = "Gobysend Activity Ingestion"

    def init(self):
        # The identifiers under which the API created contacts, per workspace: a meeting point that
        # makes two requests creating the same contact at once collide (see ``_claim_new_contact``).
        # An import's chunk claims the identifiers of all its rows with the import and the row
        # (see ``gobysend.contact.import._drop_rows_of_other_chunks``): a later row of the file
        # naming the same contact is a duplicate. Unlogged: a crash only forgets claims of
        # contacts that exist by then, and lookups find those.
        self.env.cr.execute(
            """
            CREATE UNLOGGED TABLE IF NOT EXISTS gobysend_contact_claim (
                workspace_id integer NOT NULL,
                identifier varchar NOT NULL,
                claimed_at timestamp NOT NULL,
                PRIMARY KEY (workspace_id, identifier)
            );
            ALTER TABLE gobysend_contact_claim ADD COLUMN IF NOT EXISTS import_id integer,
                                               ADD COLUMN IF NOT EXISTS row_number integer
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
    def _known_phone_numbers(self, payloads):
        """The phone numbers of ``payloads`` written as E.164 that a contact already has as its
        sanitized number, in one query.

        Odoo sanitizes a contact's phone with the same library and checks (a possible and valid
        number, E.164), so such a number needs no parsing again: parsing and validating is the
        largest cost of reading a payload, and integrations mostly send their known contacts."""
        numbers = {
            payload["phone"]
            for payload in payloads
            if isinstance(payload, dict)
            and isinstance(payload.get("phone"), str)
            and E164_RE.fullmatch(payload["phone"])
        }
        if not numbers:
            return frozenset()
        self.env["res.partner"].flush_model(["phone_sanitized"])
        # Plain SQL over every contact, of any workspace or company: the answer only spares the
        # parsing, the caller's result is the same either way.
        self.env.cr.execute(
            SQL(
                "SELECT DISTINCT phone_sanitized FROM res_partner WHERE phone_sanitized = %s",
                any_of(numbers, "varchar"),
            )
        )
        return frozenset(row[0] for row in self.env.cr.fetchall())

    @api.model
    def _read_contact_ref(self, workspace, payload, region=None, checked=False, known_phones=frozenset()):
        """Return the normalised identifiers of a payload: {"id", "email", "phone"} (None when absent).
        ``region`` is the workspace's phone region, ``checked`` that the payload is storable:
        callers reading many payloads pass both once, and the numbers already known to be valid
        E.164 (``_known_phone_numbers``)."""
        if not checked:
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
            normalized = normalize_email(email)
            if not normalized:
                raise InvalidInput("email", _("“%(email)s” is not a valid email address.", email=email))
            ref["email"] = normalized
        phone = payload.get("phone")
        if phone is not None:
            if not isinstance(phone, str):
                raise InvalidInput("phone", _("A phone number must be a string."))
            if phone in known_phones:
                ref["phone"] = phone
            else:
                ref["phone"] = normalize_phone(phone, region or workspace._get_phone_region())
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
        one ref's contact from it. The hot path of event ingestion.
        """
        return {key: row[1] for key, row in self._find_subscription_rows(workspace, refs).items()}

    @api.model
    def _find_subscription_rows(self, workspace, refs):
        """The subscriptions of many refs, in one query per identifier kind: {(key, value):
        (subscription id, partner id, customer id)}. Plain SQL, because the ORM would cost a
        search and a record fetch per contact on the hot paths of ingestion and imports."""
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
            # Joined with the batch's keys (``keys_of``), as in ``_find_adoptable_partners``.
            self.env.cr.execute(
                SQL(
                    """
                    SELECT DISTINCT ON (k.value) k.value, s.id, s.partner_id, s.external_id
                      FROM %(keys)s AS k(value)
                      JOIN gobysend_subscription s ON s.workspace_id = %(workspace_id)s
                      JOIN res_partner p ON p.id = s.partner_id
                     WHERE %(column)s = k.value
                  ORDER BY k.value, s.create_date DESC, s.id DESC
                    """,
                    column=SQL.identifier(table, column),
                    workspace_id=workspace.id,
                    keys=keys_of(values, "varchar"),
                )
            )
            found.update(((key, value), tuple(row)) for value, *row in self.env.cr.fetchall())
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
        end = start
        while end < len(items) and isinstance(items[end], dict) and items[end].get("type") in ("track", "page"):
            end += 1
        known_phones = self._known_phone_numbers(items[start:end])
        region = workspace._get_phone_region()
        for index in range(start, end):
            item = items[index]
            try:
                refs[index] = self._read_contact_ref(workspace, item, region=region, known_phones=known_phones)
            except InvalidInput as error:
                refs[index] = error
        found = self._find_partner_ids(workspace, [ref for ref in refs.values() if isinstance(ref, dict)])
        return refs, found

    @api.model
    def identify(self, workspace, payload):
        """Create or update a contact and its attributes. Returns {"contact_id", "created"}."""
        (result,) = self._identify_many(workspace, [payload])
        if isinstance(result, InvalidInput):
            raise result
        return result

    @api.model
    def _identify_many(self, workspace, payloads, source="api", consents=None, note=None, refs=None):
        """Identify many contacts at once, with the same outcome as identifying them one after
        the other: one result per payload, {"contact_id", "created"} or the ``InvalidInput``
        that refuses it, which writes nothing of that payload.

        The payloads are taken in rounds of items that cannot see each other's writes (no
        identifier, contact or newly typed attribute in common); each round looks its contacts
        up in one query per identifier kind, creates the missing partners with one ORM
        ``create`` and writes subscriptions, consent records and attribute values in one
        statement each. A payload that shares something with an earlier one of its round
        starts the next round, which sees what the earlier one wrote: duplicates in one batch
        resolve to one contact.

        ``consents`` ({payload index: {channel: state}}) sets consent per channel, logged with
        ``source`` and ``note`` as its proof; imports use it, the API does not. ``refs`` are the
        payloads' identifiers as ``_read_contact_ref`` read them already, if the caller did.
        """
        results = [None] * len(payloads)
        pending = list(range(len(payloads)))
        # One look for text PostgreSQL cannot store over all the payloads: mostly there is none,
        # and one encoding of the whole list costs less than one per payload. When there is,
        # each payload is looked at on its own, to refuse only those that hold it.
        storable = find_nul_character(payloads, "") is None
        while pending:
            pending = self._identify_round(
                workspace, payloads, pending, results, source, consents or {}, note, refs or {}, storable
            )
        return results

    @api.model
    def _read_identify(
        self, workspace, payload, known_types, region=None, ref=None, known_phones=frozenset(), storable=False
    ):
        """Validate one identify payload into the item a round works on; ``storable`` tells that
        its text was found free of NUL characters already."""
        if not isinstance(payload, dict):
            raise InvalidInput("type", _("Each batch item must be a JSON object."))
        if not storable:
            self._check_storable(payload)
        if ref is None:
            ref = self._read_contact_ref(workspace, payload, region=region, checked=True, known_phones=known_phones)
        attributes = payload.get("attributes") or {}
        if not isinstance(attributes, dict):
            raise InvalidInput("attributes", _("Attributes must be a JSON object of key/value pairs."))
        partner_vals, typed_values = self._prepare_attributes(workspace, attributes, known_types)
        if ref["email"]:
            partner_vals.setdefault("email", ref["email"])
        if ref["phone"]:
            partner_vals.setdefault("phone", ref["phone"])
        identifiers = {f"{key}:{ref[key]}" for key in ("id", "email", "phone") if ref[key]}
        # An address or number written by this item is one a later item may look the contact up by.
        for field_name in ("email", "phone"):
            if partner_vals.get(field_name):
                identifiers.add(f"{field_name}:{partner_vals[field_name]}")
        return {
            "ref": ref,
            "attributes": attributes,
            "partner_vals": partner_vals,
            "typed_values": typed_values,
            "identifiers": identifiers,
        }

    @api.model
    def _known_attribute_types(self, workspace, payloads):
        """{key: type} of the workspace's attributes that ``payloads`` name, in one query."""
        keys = {
            key
            for payload in payloads
            if isinstance(payload, dict) and isinstance(payload.get("attributes"), dict)
            for key in payload["attributes"]
            if isinstance(key, str) and key not in STANDARD_KEYS
        }
        if not keys:
            return {}
        # sudo: the types of this workspace's attributes only; the API's user cannot read them.
        attributes = self.env["gobysend.attribute"].sudo()
        return {
            attribute["key"]: attribute["value_type"]
            for attribute in attributes.search_read(
                [("workspace_id", "=", workspace.id), ("key", "in", list(keys))], ["key", "value_type"]
            )
        }

    @api.model
    def _identify_round(self, workspace, payloads, pending, results, source, consents, note, refs, storable=False):
        """Identify the longest run of ``pending`` payloads that are independent of each other;
        return the indexes left for the next round. ``storable``: the payloads hold no NUL
        character."""
        known_types = self._known_attribute_types(workspace, [payloads[index] for index in pending])
        known_phones = self._known_phone_numbers([payloads[index] for index in pending if index not in refs])
        region = workspace._get_phone_region()
        items, rest, taken, introduced = [], [], set(), {}
        for position, index in enumerate(pending):
            try:
                item = self._read_identify(
                    workspace, payloads[index], known_types, region, refs.get(index), known_phones, storable
                )
            except InvalidInput as error:
                results[index] = error
                continue
            new_types = {
                key: value_type
                for key, value_type, value in item["typed_values"]
                if key not in known_types and value is not None
            }
            # An attribute first seen earlier in this round gets that item's type when the item
            # succeeds: only the same inferred type makes the order irrelevant.
            if item["identifiers"] & taken or any(introduced.get(k, t) != t for k, t in new_types.items()):
                rest = pending[position:]
                break
            taken |= item["identifiers"]
            for key, value_type in new_types.items():
                introduced.setdefault(key, value_type)
            item["index"] = index
            item["consent"] = consents.get(index) or {}
            items.append(item)
        if not items:
            return rest

        found = self._find_subscription_rows(workspace, [item["ref"] for item in items])
        for item in items:
            ref = item["ref"]
            item["subscription"] = next(
                (found[key, ref[key]] for key, _column in CONTACT_KEYS if ref[key] and (key, ref[key]) in found), None
            )
        adoptable = self._find_adoptable_partners(
            workspace, [item["ref"] for item in items if not item["subscription"]]
        )
        targets = set()
        for position, item in enumerate(items):
            ref = item["ref"]
            item["adopt"] = None
            if not item["subscription"]:
                item["adopt"] = adoptable.get(("email", ref["email"])) or adoptable.get(("phone", ref["phone"]))
            target = item["subscription"][1] if item["subscription"] else item["adopt"]
            if target in targets:
                # Two items about one contact: the later one must see what the earlier one wrote.
                rest = [later["index"] for later in items[position:]] + rest
                del items[position:]
                break
            if target:
                targets.add(target)
            item["partner_id"] = target

        # sudo: reads the contacts this workspace's subscriptions (or its own earlier contacts)
        # point at, to compare the payloads with; nothing is written before the trust checks.
        partners = self.env["res.partner"].sudo().with_context(active_test=False).browse(list(targets))
        current = self._current_values(partners, {key for item in items for key in item["partner_vals"]})
        for item in items:
            partner_id = item["partner_id"]
            item["changed"] = {
                key: value
                for key, value in item["partner_vals"].items()
                if partner_id not in targets or not self._same_value(current, partner_id, key, value)
            }
        refusals = self._contact_write_refusals(
            workspace,
            partners.browse([item["partner_id"] for item in items if item["subscription"] and item["changed"]]),
        )
        accepted = []
        for item in items:
            ref, index = item["ref"], item["index"]
            subscription = item["subscription"]
            item["set_external_id"] = False
            if subscription and ref["id"] and subscription[2] != ref["id"]:
                if subscription[2]:
                    results[index] = InvalidInput(
                        "id",
                        _(
                            "This contact already has the customer id “%(current)s”; it cannot also be “%(new)s”.",
                            current=subscription[2],
                            new=ref["id"],
                        ),
                    )
                    continue
                item["set_external_id"] = True
            refusal = subscription and item["changed"] and refusals.get(item["partner_id"])
            if refusal:
                field = STANDARD_KEY_OF_FIELD[next(iter(item["changed"]))]
                results[index] = ContactNotWritable(
                    f"attributes.{field}" if field in item["attributes"] else field, refusal
                )
                continue
            accepted.append(item)
        try:
            with self.env.cr.savepoint():
                self._write_identified(workspace, accepted, source, note)
        except IntegrityError as error:
            if error.pgcode != errorcodes.UNIQUE_VIOLATION:
                raise
            raise ConcurrentContactCreation(str(error)) from error
        for item in accepted:
            results[item["index"]] = {"contact_id": item["partner_id"], "created": not item["subscription"]}
        return rest

    @api.model
    def _find_adoptable_partners(self, workspace, refs):
        """Partners that this workspace's API created and that have lost their subscription
        since, by the email and phone of ``refs``: {(key, value): partner id}, the oldest one
        per address, Odoo users' and companies' left out. Any other partner with the same email
        or phone (a user, a company, a contact of another workspace or of the CRM) is left
        alone: a key of one workspace adopts nobody else's contact."""
        found = {}
        self.env["res.partner"].flush_model(["email_normalized", "phone_sanitized", "active"])
        for key, column in (("email", "email_normalized"), ("phone", "phone_sanitized")):
            values = list({ref[key] for ref in refs if ref[key]})
            if not values:
                continue
            # Plain SQL: one query for the whole batch, where a search per address would cost one each.
            # Joined with the batch's addresses (``keys_of``): compared with ``= ANY``, while
            # PostgreSQL's statistics still counted a new workspace's contacts as few during
            # its first import, each of them was compared with every address of the batch,
            # 0.4 s per query at 30,000 contacts. For the same reason the workspace is
            # compared in a form that its index cannot serve: read through that index for each
            # address, the same contacts took 1.5 s per query.
            self.env.cr.execute(
                SQL(
                    """
                    SELECT DISTINCT ON (p.%(column)s) p.%(column)s, p.id
                      FROM %(keys)s AS k(value)
                      JOIN res_partner p ON p.%(column)s = k.value
                     WHERE p.gobysend_origin_workspace_id IS NOT DISTINCT FROM %(workspace_id)s AND p.active
                  ORDER BY p.%(column)s, p.id
                    """,
                    column=SQL.identifier(column),
                    workspace_id=workspace.id,
                    keys=keys_of(values, "varchar"),
                )
            )
            found.update(((key, value), partner_id) for value, partner_id in self.env.cr.fetchall())
        # As one by one: the partner found by email is the candidate even when it is an account.
        accounts = self._odoo_account_ids(set(found.values()))
        return {key: partner_id for key, partner_id in found.items() if partner_id not in accounts}

    @api.model
    def _write_identified(self, workspace, items, source, note):
        """Write what the accepted items of a round change: new partners, subscriptions and their
        consent records, customer ids, consent, the contacts' own fields, attribute values."""
        if not items:
            return
        self.env.flush_all()
        new_items = [item for item in items if not item["subscription"]]
        if not self.env.context.get("gobysend_identifiers_claimed"):
            self._claim_new_contacts(workspace, [item["ref"] for item in new_items])
        to_create = [item for item in new_items if not item["adopt"]]
        if to_create:
            # sudo: the API's user cannot create partners; these are new contacts of this
            # workspace, marked as created by it.
            # Through the ORM, in one call: other addons override res.partner's create. Without
            # the chatter's work on creation (no log message, no follower: as one by one), which
            # it otherwise does record by record.
            Partner = (
                self.env["res.partner"]
                .sudo()
                .with_context(mail_create_nolog=True, mail_create_nosubscribe=True, tracking_disable=True)
            )
            # The salesperson each new partner would get: its default, the same for all of them
            # (``_compute_user_id`` only copies a parent's, and these have none). Given once here,
            # the ORM neither computes it record by record before the insert nor at the flush.
            salesperson = Partner.default_get(["user_id"]).get("user_id", False)
            vals_list = [
                {
                    "user_id": salesperson,
                    **item["partner_vals"],
                    "name": item["partner_vals"].get("name")
                    or item["ref"]["email"]
                    or item["ref"]["phone"]
                    or item["ref"]["id"],
                    "gobysend_origin_workspace_id": workspace.id,
                    "gobysend_ever_subscribed": True,
                }
                for item in to_create
            ]
            persons = self._add_values_known_on_creation(vals_list, [item["ref"] for item in to_create])
            # Odoo's create syncs each new partner with its parent and children, and gives a
            # company its first contact's address. A person of no company has neither, and
            # each call was a round of record reads for nothing: it is left out, as Odoo
            # itself does when it loads records (``_load_records_create``).
            creating = Partner.with_context(_partners_skip_fields_sync=True) if persons else Partner
            # The defaults are asked once per set of given fields rather than once per contact.
            with reusing_defaults():
                partners = creating.create(vals_list).with_env(Partner.env)
            self._keep_values_known_on_creation(partners, vals_list)
            self._compute_commercial_partners(partners)
            for item, partner_id in zip(to_create, partners.ids, strict=True):
                item["partner_id"] = partner_id
                item["changed"] = {}
        self._insert_subscriptions(workspace, new_items, source, note)
        # sudo: the subscriptions found or created in this workspace for these very items.
        Subscription = self.env["gobysend.subscription"].sudo()
        # Known contacts given their customer id (found by their email or phone): one update.
        # Plain SQL, as the subscriptions are inserted: the id is no field that anything
        # tracks or computes from, and the ORM would write them one by one.
        naming = [(item["subscription"][0], item["ref"]["id"]) for item in items if item["set_external_id"]]
        if naming:
            self.env.cr.execute(
                """
                UPDATE gobysend_subscription s
                   SET external_id = t.external_id, write_uid = %s, write_date = %s
                  FROM unnest(%s::int[], %s::varchar[]) AS t(id, external_id)
                 WHERE s.id = t.id
                """,
                (
                    self.env.uid,
                    self.env.cr.now(),
                    pg_array([row[0] for row in naming]),
                    pg_array([row[1] for row in naming]),
                ),
            )
            Subscription.invalidate_model(["external_id", "write_uid", "write_date"])
        # The consent an import gives its known contacts: mostly a file imported again, whose
        # consent each contact holds already.
        consented = Subscription._set_consents(
            [
                (item["subscription"][0], channel, state)
                for item in items
                if item["subscription"]
                for channel, state in item["consent"].items()
            ],
            source,
            note=note,
        )
        # Contacts whose own fields change: grouped by the values they take, one write per group.
        by_change = {}
        for item in items:
            if item["changed"]:
                by_change.setdefault(tuple(item["changed"].items()), []).append(item["partner_id"])
        Partner = self.env["res.partner"].sudo().with_context(active_test=False)
        # Mostly one write per contact (its values are its own), through the ORM: other addons
        # override it. What each write reads of its contact (its children, for the commercial
        # fields) is read for all of them at the first, rather than contact by contact.
        prefetch = Partner.browse([partner_id for partner_ids in by_change.values() for partner_id in partner_ids])
        for changed, partner_ids in by_change.items():
            # sudo: each partner was checked to be this workspace's own contact (or is a new one).
            Partner.browse(partner_ids).with_prefetch(prefetch._prefetch_ids).write(dict(changed))
        valued = self._write_attribute_values_bulk(workspace, items)
        # The segments' change queue, once per contact for both changes: a new contact is
        # subscribed and given values in the same round, and so may be a known contact whose
        # consent changed.
        subscribed = {item["partner_id"] for item in new_items} | consented
        Segment = self.env["gobysend.segment"]
        Segment._mark_dirty(list(subscribed & valued), CHANGES["subscription"] | CHANGES["attribute"], subscribed=True)
        Segment._mark_dirty(list(subscribed - valued), "subscription", subscribed=True)
        Segment._mark_dirty(list(valued - subscribed), "attribute", subscribed=True)
        self.env.flush_all()
        self._add_to_blacklists(
            [item["partner_id"] for item in new_items if "email" in item["opted_out"]],
            [item["partner_id"] for item in new_items if "sms" in item["opted_out"]],
        )

    @api.model
    def _add_values_known_on_creation(self, vals_list, refs):
        """Add to each of ``vals_list`` the stored fields that Odoo computes for a new contact
        after inserting it, whose values the vals and the contact's validated identifiers
        (``refs``) already give: its sanitized number, its normalized address, and its full
        name, company name and shared flag as a person of no company. Computed
        again, each would cost a pass over the new partners and a column in the update that
        follows the insert. A value a default of the context gives (``default_phone``…) is not
        known here. Returns whether the new contacts are persons of no company."""
        context = self.env.context
        mobile_given = "default_mobile" in context
        # A new contact is a person of no company, unless a default (of the context, or one an
        # administrator set) gives it a parent, a company name or makes it a company. Such a
        # person's full name is its name, it has no company name and, with no user, it is
        # shared (``_compute_complete_name``, ``_compute_commercial_company_name``,
        # ``_compute_partner_share``).
        person = not any(self.env["res.partner"].default_get(["parent_id", "company_name", "is_company"]).values())
        for vals, ref in zip(vals_list, refs, strict=True):
            if person:
                vals["complete_name"] = vals["name"].strip()
                vals["commercial_company_name"] = False
                vals["partner_share"] = True
            # Odoo sanitizes the mobile first, then the phone: a contact without a mobile has
            # its phone's. A number validated here (possible, valid, E.164, with the same
            # library) is its own sanitized form; any other number is left to Odoo.
            if not mobile_given and "mobile" not in vals and ("phone" in vals or "default_phone" not in context):
                if not vals.get("phone"):
                    vals["phone_sanitized"] = False
                elif vals["phone"] == ref["phone"]:
                    vals["phone_sanitized"] = ref["phone"]
            # A plain address in lowercase is its own normalized form (``email_normalize``).
            if "email" in vals or "default_email" not in context:
                email = vals.get("email")
                if not email:
                    vals["email_normalized"] = False
                elif email == ref["email"] and email == email.lower() and PLAIN_EMAIL_RE.match(email):
                    vals["email_normalized"] = email
        return person

    @api.model
    def _keep_values_known_on_creation(self, partners, vals_list):
        """Spare ``partners`` (just created from ``vals_list``) the computation of the fields
        whose values ``_add_values_known_on_creation`` gave, in the database and the cache
        already, and of the resized images of those created without an image (none, stored as
        no attachment). As Odoo's own addons do for values they know (``remove_to_compute``)."""
        # Ids rather than records: a record made per contact costs more than the rest here.
        pairs = list(zip(partners.ids, vals_list, strict=True))
        without_image = partners.browse(
            []
            if "default_image_1920" in self.env.context
            else [partner_id for partner_id, vals in pairs if "image_1920" not in vals]
        )
        known = dict.fromkeys(RESIZED_IMAGE_FIELDS, without_image)
        for name in KNOWN_ON_CREATION:
            known[name] = partners.browse([partner_id for partner_id, vals in pairs if name in vals])
        for name, records in known.items():
            field = partners._fields.get(name)
            if field is not None and field.compute:
                self.env.remove_to_compute(field, records)

    @api.model
    def _compute_commercial_partners(self, partners):
        """Compute the commercial entity of the new ``partners`` that have no parent, all at
        once. The field is recursive (a contact's entity is its parent's), so Odoo computes it
        record by record, each call a round of the ORM's and the chatter's bookkeeping; a
        contact without a parent is its own entity, which involves no other record.

        Odoo's own method makes each of them its own entity, which the trigger of
        ``res.partner.init`` wrote in the insert already: Odoo's flush would write it again, in
        statements of a hundred contacts, each updating rows just inserted. Only rows the
        trigger did not write (it was removed from the database) are updated, all in one
        statement. Where an addon computes the field otherwise, or keeps each entity's contacts
        in a list, Odoo's compute method runs instead, once for the batch."""
        field = partners._fields["commercial_partner_id"]
        records = partners & self.env.records_to_compute(field)
        records = records.filtered(lambda partner: not partner.parent_id)
        if not records:
            return
        compute = getattr(type(records), field.compute) if isinstance(field.compute, str) else field.compute
        if compute is not BasePartner._compute_commercial_partner or self.pool.field_inverses[field]:
            field.compute_value(records)
            return
        self.env.cr.execute(
            SQL(
                """
                UPDATE res_partner SET commercial_partner_id = id
                 WHERE id = %s AND commercial_partner_id IS DISTINCT FROM id
                """,
                any_of(records.ids, "int4"),
            )
        )
        self.env.cache.update(records, field, records.ids)
        self.env.remove_to_compute(field, records)

    @api.model
    def _claim_new_contacts(self, workspace, refs):
        """Make requests that create the same new contact at the same moment collide.

        Each identifier of a new contact is claimed in ``gobysend_contact_claim``. A second
        request claiming one of them waits for the first to end; once the first has committed,
        PostgreSQL refuses the second with a serialization failure (its snapshot cannot see the
        first's contact), and the router runs it again on a fresh snapshot, where it finds the
        contact. Claimed in sorted order, so that two batches never wait for each other in a
        circle. Plain SQL: the ORM has no ``ON CONFLICT``.
        """
        self._claim_identifiers(
            workspace, {f"{key}:{ref[key]}" for ref in refs for key in ("id", "email", "phone") if ref[key]}
        )

    @api.model
    def _claim_identifiers(self, workspace, identifiers):
        """Claim ``identifiers`` ("email:…", "partner:<id>"…) in ``workspace`` for the current
        transaction (see ``_claim_new_contacts``), in sorted order."""
        if not identifiers:
            return
        self.env.cr.execute(
            """
            INSERT INTO gobysend_contact_claim (workspace_id, identifier, claimed_at)
                 SELECT %s, identifier, now() at time zone 'UTC' FROM unnest(%s::varchar[]) AS identifier
            ON CONFLICT (workspace_id, identifier) DO UPDATE SET claimed_at = EXCLUDED.claimed_at
            """,
            (workspace.id, pg_array(sorted(identifiers))),
        )

    @api.model
    def _cron_purge_contact_claims(self):
        """Forget the claims of a day ago and older: a claim only matters while the request or
        import chunk that made it runs, and every new contact left three of them behind. Those
        of an import still running stay: its later rows are checked against them."""
        self.env.cr.execute(
            """
            DELETE FROM gobysend_contact_claim c
             WHERE c.claimed_at < (now() at time zone 'UTC') - interval '1 day'
               AND NOT EXISTS (SELECT 1 FROM gobysend_contact_import i WHERE i.id = c.import_id AND i.state = 'running')
            """
        )
        _logger.info("Purged %s contact claims", self.env.cr.rowcount)
        return True

    @api.model
    def _claim_new_contact(self, workspace, ref):
        """``_claim_new_contacts`` for one contact (the campaign webhook, *Add to campaign*)."""
        self._claim_new_contacts(workspace, [ref])

    @api.model
    def _create_subscription(self, workspace, ref, partner_vals):
        """Subscribe one new contact outside a batch (a campaign webhook call): a partner that
        this workspace's API created before (and has since lost its subscription), or else a new
        partner. Any other partner with the same email or phone (an Odoo user, a company, a
        contact of another workspace or of the CRM) is left alone."""
        partners = self.env["res.partner"].sudo()  # sudo: this workspace's own contacts only, see below
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
            .sudo()  # sudo: the subscription of the contact just found or created in this workspace
            .with_context(mail_create_nolog=True, mail_create_nosubscribe=True)
            .create({"workspace_id": workspace.id, "partner_id": partner.id, "external_id": ref["id"], "source": "api"})
        )

    @api.model
    def _insert_subscriptions(self, workspace, items, source, note):
        """Subscribe the contacts of ``items`` (``partner_id`` set) to ``workspace``, with the
        consent records proving each channel's state, as ``gobysend.subscription.create`` does.

        Plain SQL: the ORM would create each subscription's consent records one by one
        through ``mail.thread``, which makes a batch of contacts cost a thousand statements.
        The rest of what ``create`` does follows: the contacts' subscribed flag, Odoo's
        blacklists for opt-outs, the double opt-in confirmation; the caller queues the contacts
        for the segments with the other changes of its round.
        """
        if not items:
            return
        # sudo: only to invalidate and browse the subscriptions inserted here, in this workspace.
        Subscription = self.env["gobysend.subscription"].sudo()
        pending_first = workspace.double_opt_in and not self.env.context.get("gobysend_skip_double_opt_in")
        states = []
        for item in items:
            row = {}
            for channel in CHANNELS:
                state = item["consent"].get(channel, "subscribed")
                # Nobody is subscribed to such a workspace before confirming.
                row[channel] = "pending" if pending_first and state == "subscribed" else state
            states.append(row)
        now = self.env.cr.now()
        self.env.cr.execute(
            """
            INSERT INTO gobysend_subscription (workspace_id, partner_id, external_id, email_state, sms_state,
                                               zalo_state, push_state, source, active,
                                               create_uid, create_date, write_uid, write_date)
                 SELECT %(workspace_id)s, partner_id, external_id, email_state, sms_state, zalo_state, push_state,
                        %(source)s, true, %(uid)s, %(now)s, %(uid)s, %(now)s
                   FROM unnest(%(partner_ids)s::int[], %(external_ids)s::varchar[], %(email)s::varchar[],
                               %(sms)s::varchar[], %(zalo)s::varchar[], %(push)s::varchar[])
                        AS t(partner_id, external_id, email_state, sms_state, zalo_state, push_state)
              RETURNING id, partner_id
            """,
            {
                "workspace_id": workspace.id,
                "source": source,
                "uid": self.env.uid,
                "now": now,
                "partner_ids": pg_array([item["partner_id"] for item in items]),
                "external_ids": pg_array([item["ref"]["id"] for item in items]),
                "email": pg_array([row["email"] for row in states]),
                "sms": pg_array([row["sms"] for row in states]),
                "zalo": pg_array([row["zalo"] for row in states]),
                "push": pg_array([row["push"] for row in states]),
            },
        )
        subscription_ids = {partner_id: subscription_id for subscription_id, partner_id in self.env.cr.fetchall()}
        log_rows = [
            (subscription_ids[item["partner_id"]], channel, state)
            for item, row in zip(items, states, strict=True)
            for channel, state in initial_consent_records(row)
        ]
        self.env.cr.execute(
            """
            INSERT INTO gobysend_consent_log (subscription_id, channel, state, source, note, create_uid, create_date)
                 SELECT subscription_id, channel, state, %(source)s, %(note)s, %(uid)s, %(now)s
                   FROM unnest(%(subscription_ids)s::int[], %(channels)s::varchar[], %(states)s::varchar[])
                        AS t(subscription_id, channel, state)
            """,
            {
                "source": source,
                "note": note,
                "uid": self.env.uid,
                "now": now,
                "subscription_ids": pg_array([row[0] for row in log_rows]),
                "channels": pg_array([row[1] for row in log_rows]),
                "states": pg_array([row[2] for row in log_rows]),
            },
        )
        Subscription.invalidate_model()
        self.env["gobysend.consent.log"].invalidate_model()
        subscriptions = Subscription.browse([subscription_ids[item["partner_id"]] for item in items])
        # New partners were created with the flag; adopted ones may lack it.
        self.env["res.partner"].browse(
            [item["partner_id"] for item in items if item["adopt"]]
        )._gobysend_flag_subscribed()
        for item, row in zip(items, states, strict=True):
            item["opted_out"] = [channel for channel in ("email", "sms") if row[channel] == "unsubscribed"]
        if pending_first:
            subscriptions.filtered(lambda s: s.email_state == "pending" and s.partner_id.email)._send_confirmation()

    @api.model
    def _add_to_blacklists(self, email_partner_ids, sms_partner_ids):
        """Put the addresses and numbers of new contacts that opted out into Odoo's email and
        phone blacklists, as a subscription created unsubscribed does one by one.

        Plain SQL, one statement per list: through ``mail.blacklist._add`` each entry costs a
        record and a chatter message, which made an import with opt-outs crawl. The consent
        records of the subscriptions are the proof of these opt-outs."""
        for partner_ids, (table, column, source) in zip(
            (email_partner_ids, sms_partner_ids), (BLACKLISTS["email"], BLACKLISTS["sms"]), strict=True
        ):
            if not partner_ids:
                continue
            self.env.cr.execute(
                SQL(
                    """
                    INSERT INTO %(table)s AS b (%(column)s, active, create_uid, create_date, write_uid, write_date)
                         SELECT DISTINCT p.%(source)s, true, %(uid)s, %(now)s, %(uid)s, %(now)s
                           FROM res_partner p
                          WHERE p.id = %(partner_ids)s AND p.%(source)s IS NOT NULL
                    ON CONFLICT (%(column)s) DO UPDATE SET active = true, write_uid = EXCLUDED.write_uid,
                                                           write_date = EXCLUDED.write_date
                          WHERE NOT b.active
                    """,
                    table=SQL.identifier(table),
                    column=SQL.identifier(column),
                    source=SQL.identifier(source),
                    uid=self.env.uid,
                    now=self.env.cr.now(),
                    partner_ids=any_of(partner_ids, "int4"),
                )
            )
        if email_partner_ids or sms_partner_ids:
            self.env["mail.blacklist"].invalidate_model()
            self.env["phone.blacklist"].invalidate_model()
            partners = self.env["res.partner"]
            partners.invalidate_model([name for name in BLACKLIST_FLAGS if name in partners._fields])

    @api.model
    def _current_values(self, partners, field_names):
        """{field name: {partner id: value}} of ``partners`` for ``field_names`` (and the
        normalized forms that ``_same_value`` compares an email or phone with), read in one
        query and one pass per field: a record read field by field costs more than the rest of
        an update. Many2one values as ids, as payloads give them."""
        field_names = set(field_names)
        for field_name, normalized in (("email", "email_normalized"), ("phone", "phone_sanitized")):
            if field_name in field_names:
                field_names.add(normalized)
        partners.fetch(field_names)
        current = {}
        for field_name in field_names:
            field = partners._fields[field_name]
            # The values as the cache holds them (a many2one as its id, nothing as None), without
            # making a record or value per contact as reading the field does.
            values = self.env.cache.get_until_miss(partners, field)
            if len(values) == len(partners):
                current[field_name] = {
                    partner_id: False if value is None else value
                    for partner_id, value in zip(partners._ids, values, strict=True)
                }
            elif field.type == "many2one":
                current[field_name] = {partner.id: partner[field_name].id for partner in partners}
            else:
                current[field_name] = dict(zip(partners._ids, partners.mapped(field_name), strict=True))
        return current

    @api.model
    def _same_value(self, current, partner_id, field_name, value):
        """Whether writing ``value`` would leave the field of the partner ``partner_id`` as it is,
        by its ``current`` values (see ``_current_values``): an email or phone written
        differently but naming the same address or number counts as the same."""
        if field_name == "email" and value:
            return current["email_normalized"][partner_id] == value
        if field_name == "phone" and value:
            return current["phone_sanitized"][partner_id] == value
        return current[field_name][partner_id] == value

    @api.model
    def _odoo_account_ids(self, partner_ids):
        """The ids among ``partner_ids`` that stand for an Odoo user (internal or portal,
        archived ones too) or for a company of this database: contacts that sign in, reset
        passwords and send invoices, which the tracking API never rewrites nor adopts."""
        partner_ids = list(partner_ids)
        if not partner_ids:
            return set()
        # sudo: only reads which partners they are; an API request runs as the endpoint's user,
        # who cannot read users.
        users = self.env["res.users"].sudo().with_context(active_test=False)
        companies = self.env["res.company"].sudo().with_context(active_test=False)
        domain = [("partner_id", "in", partner_ids)]
        return {
            row["partner_id"][0] for model in (users, companies) for row in model.search_read(domain, ["partner_id"])
        }

    @api.model
    def _is_odoo_account(self, partner):
        return bool(self._odoo_account_ids(partner.ids))

    @api.model
    def _contact_write_refusal(self, workspace, partner):
        """Why the tracking API of ``workspace`` may not change ``partner``'s own fields (name,
        email, phone...), or None when it may (see ``_contact_write_refusals``)."""
        return self._contact_write_refusals(workspace, partner).get(partner.id)

    @api.model
    def _contact_write_refusals(self, workspace, partners):
        """{partner id: why the tracking API of ``workspace`` may not change that partner's own
        fields (name, email, phone...)} for those of ``partners`` it may not change (see
        ``_contact_ownership_refusals``)."""
        reasons = {
            "archived": _("This contact is archived in Odoo; its own fields cannot be changed through the API."),
            "account": _(
                "This contact is an Odoo user or company; its own fields cannot be changed through the API. "
                "Store the value in an attribute of another name instead."
            ),
            "other_origin": _(
                "This contact was created through another workspace, which alone changes its own fields; "
                "store the value in an attribute of another name instead."
            ),
            "shared": _(
                "This contact comes from elsewhere in Odoo and is shared by several workspaces; its own fields "
                "cannot be changed through the API. Store the value in an attribute of another name instead."
            ),
        }
        return {
            partner_id: reasons[code]
            for partner_id, code in self._contact_ownership_refusals(workspace, partners).items()
        }

    @api.model
    def _contact_ownership_refusals(self, workspace, partners):
        """{partner id: code} for those of ``partners`` whose own fields (name, email, phone...)
        ``workspace`` may not change, whether through the API or a workflow step; the code says
        why: ``archived``, ``account`` (an Odoo user or company), ``other_origin`` (created
        through another workspace) or ``shared`` (held by several workspaces).

        A workspace may change a contact it owns: one its API created, or one made elsewhere in
        Odoo that a manager subscribed to this workspace alone. A contact shared by several
        workspaces changes only through the workspace that created it; the others keep their
        own values in attributes.
        """
        if not partners:
            return {}
        accounts = self._odoo_account_ids(partners.ids)
        # sudo: counts the other workspaces holding these contacts, whatever the caller may read.
        shared = {
            partner.id
            for (partner,) in self.env["gobysend.subscription"]
            .sudo()
            .with_context(active_test=False)
            ._read_group([("partner_id", "in", partners.ids), ("workspace_id", "!=", workspace.id)], ["partner_id"])
        }
        refusals = {}
        # sudo: reads the creator of a contact this workspace holds, a field for administrators only.
        for partner in partners.sudo().with_context(active_test=False):
            origin = partner.gobysend_origin_workspace_id
            if not partner.active:
                refusals[partner.id] = "archived"
            elif partner.id in accounts:
                refusals[partner.id] = "account"
            elif origin:
                if origin != workspace:
                    refusals[partner.id] = "other_origin"
            elif partner.id in shared:
                refusals[partner.id] = "shared"
        return refusals

    @api.model
    def _prepare_attributes(self, workspace, attributes, known_types=None):
        """Validate ``attributes``; return (partner field values, [(attribute key, type, value)]).
        ``known_types`` ({key: type}, see ``_known_attribute_types``) saves looking the
        workspace's attributes up again."""
        partner_vals = {}
        typed_values = []
        if known_types is None:
            known_types = self._known_attribute_types(workspace, [{"attributes": attributes}])
        for key, value in attributes.items():
            field_name = f"attributes.{key}"
            if key in STANDARD_KEYS:
                partner_vals.update(self._standard_attribute_value(workspace, key, value, field_name))
                continue
            # A key of the workspace's attributes was checked when the attribute was declared.
            if key not in known_types and (not isinstance(key, str) or not KEY_RE.match(key)):
                raise InvalidInput(
                    field_name,
                    _(
                        "“%(key)s” is not a valid attribute key: use lowercase letters, digits and underscores.",
                        key=key,
                    ),
                )
            if value is None:
                typed_values.append((key, known_types.get(key), None))
                continue
            value_type = known_types.get(key) or infer_attribute_type(value)
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
    def _drop_unchanged_values(self, upserts):
        """Leave out of ``upserts`` the values that contacts already hold, read in one query:
        an upsert would lock (and so write) every row it meets, changed or not."""
        pairs = [
            (attribute_id, partner_id)
            for attribute_ids, partner_ids, _values in upserts.values()
            for attribute_id, partner_id in zip(attribute_ids, partner_ids, strict=True)
        ]
        if not pairs:
            return
        self.env.cr.execute(
            SQL(
                """
                SELECT v.attribute_id, v.partner_id, %(columns)s
                  FROM gobysend_attribute_value v
                 WHERE v.partner_id = %(partner_ids)s AND v.attribute_id = ANY(%(attribute_ids)s)
                """,
                columns=SQL(", ").join(SQL.identifier("v", column) for column in VALUE_FIELDS.values()),
                partner_ids=any_of({partner_id for _a, partner_id in pairs}, "int4"),
                attribute_ids=list({attribute_id for attribute_id, _p in pairs}),
            )
        )
        # Rows as they come: a dict per row cost more than the query for a batch of 500.
        current = {(row[0], row[1]): row for row in self.env.cr.fetchall()}
        if not current:
            return
        for position, value_type in enumerate(VALUE_FIELDS, start=2):
            if value_type not in upserts:
                continue
            attribute_ids, partner_ids, values = upserts[value_type]
            kept = [
                (attribute_id, partner_id, value)
                for attribute_id, partner_id, value in zip(attribute_ids, partner_ids, values, strict=True)
                if (held := current.get((attribute_id, partner_id))) is None or held[position] != value
            ]
            upserts[value_type] = tuple(map(list, zip(*kept, strict=True))) if kept else ([], [], [])

    @api.model
    def _write_attribute_values_bulk(self, workspace, items):
        """Store the attribute values of ``items`` (each with its ``partner_id``): the missing
        attributes are declared with their inferred type, then values are inserted or changed
        with one statement per value type (two when new and known contacts mix), and cleared
        ones deleted with one more.

        Plain SQL, because the ORM would search and write the values contact by contact;
        ``ON CONFLICT`` turns a known contact's value into an update, which happens only when
        the value differs. Returns the ids of the contacts whose values changed, for the
        segments' change queue: unchanged contacts are not queued again.
        """
        typed = [
            (item["partner_id"], key, value_type, value)
            for item in items
            for key, value_type, value in item["typed_values"]
        ]
        if not typed:
            return set()
        # sudo: declares and reads this workspace's attributes, as the API always did.
        Attribute = self.env["gobysend.attribute"].sudo()
        by_key = {
            attribute["key"]: (attribute["id"], attribute["value_type"])
            for attribute in Attribute.search_read(
                [("workspace_id", "=", workspace.id), ("key", "in", list({key for _p, key, _t, _v in typed}))],
                ["key", "value_type"],
            )
        }
        new = {}
        for _partner_id, key, value_type, value in typed:
            if key not in by_key and value is not None:
                new.setdefault(key, value_type)
        if new:
            created = Attribute.create(
                [
                    {"workspace_id": workspace.id, "key": key, "value_type": value_type, "auto_created": True}
                    for key, value_type in new.items()
                ]
            )
            by_key.update((attribute.key, (attribute.id, attribute.value_type)) for attribute in created)
        self.env.flush_all()
        # Contacts created by this round have no value yet: theirs are plainly inserted, with
        # neither a look for their current values nor the conflict handling of an upsert.
        new_contact_ids = {item["partner_id"] for item in items if not item["subscription"] and not item["adopt"]}
        inserts, upserts = {}, {}  # value type: ([attribute ids], [partner ids], [values])
        cleared = ([], [])
        for partner_id, key, _value_type, value in typed:
            if key not in by_key:
                continue  # clearing an attribute that never existed
            attribute_id, value_type = by_key[key]
            if value is None:
                if partner_id not in new_contact_ids:
                    cleared[0].append(attribute_id)
                    cleared[1].append(partner_id)
                continue
            columns = (inserts if partner_id in new_contact_ids else upserts).setdefault(value_type, ([], [], []))
            columns[0].append(attribute_id)
            columns[1].append(partner_id)
            columns[2].append(value)
        changed = set()
        now = self.env.cr.now()
        self._drop_unchanged_values(upserts)
        for rows, upsert in ((inserts, False), (upserts, True)):
            for value_type, (attribute_ids, partner_ids, values) in rows.items():
                if not attribute_ids:
                    continue
                column = SQL.identifier(VALUE_FIELDS[value_type])
                on_conflict = (
                    SQL(
                        """
                        ON CONFLICT (attribute_id, partner_id) DO UPDATE
                                SET %(column)s = EXCLUDED.%(column)s, write_date = EXCLUDED.write_date
                              WHERE v.%(column)s IS DISTINCT FROM EXCLUDED.%(column)s
                        """,
                        column=column,
                    )
                    if upsert
                    else SQL()
                )
                self.env.cr.execute(
                    SQL(
                        """
                        INSERT INTO gobysend_attribute_value AS v (attribute_id, partner_id, %(column)s, write_date)
                             SELECT attribute_id, partner_id, value, %(now)s
                               FROM unnest(%(attribute_ids)s::int[], %(partner_ids)s::int[],
                                           %(values)s::%(sql_type)s[]) AS t(attribute_id, partner_id, value)
                             %(on_conflict)s
                          RETURNING v.partner_id
                        """,
                        column=column,
                        sql_type=SQL(VALUE_SQL_TYPES[value_type]),
                        now=now,
                        attribute_ids=pg_array(attribute_ids),
                        partner_ids=pg_array(partner_ids),
                        values=pg_array(values),
                        on_conflict=on_conflict,
                    )
                )
                changed.update(partner_id for (partner_id,) in self.env.cr.fetchall())
        if cleared[0]:
            self.env.cr.execute(
                """
                DELETE FROM gobysend_attribute_value v
                      USING unnest(%s::int[], %s::int[]) AS t(attribute_id, partner_id)
                      WHERE v.attribute_id = t.attribute_id AND v.partner_id = t.partner_id
                  RETURNING v.partner_id
                """,
                (pg_array(cleared[0]), pg_array(cleared[1])),
            )
            changed.update(partner_id for (partner_id,) in self.env.cr.fetchall())
        self.env["gobysend.attribute.value"].invalidate_model()
        return changed

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
            subscribed=True,
        )
        # Event campaigns start their journeys for these events (in the background, after commit).
        self.env["gobysend.campaign"]._start_event_journeys(workspace, rows, results)
        # Journeys waiting for one of these events go on now rather than at their time-out.
        partners, names = {row["partner_id"] for row in rows}, {row["name"] for row in rows}
        # Journeys whose goal is one of these events reach it now rather than when they next advance.
        convert_on_events(self.env, workspace.id, partners, names)
        wake_waiting(self.env, workspace.id, partners, names)
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
    @fewer_collections()
    def batch(self, workspace, items):
        """Process up to 1000 mixed items; one result per item, so one bad item sinks nothing else.

        Consecutive track/page items are validated one by one, their contacts looked up together
        and their events stored with a single INSERT; consecutive identify items are identified
        together (``_identify_many``); device items run in order inside their own savepoint. A
        track item after an identify of a new contact finds it.
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
        identified = {}  # index: result of the current run of identify items
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
                if item_type == "identify":
                    if index not in identified:
                        # The run of identify items starting here, identified together.
                        end = index
                        while (
                            end < len(items) and isinstance(items[end], dict) and items[end].get("type") == "identify"
                        ):
                            end += 1
                        run = self._identify_many(workspace, items[index:end])
                        identified = dict(zip(range(index, end), run, strict=True))
                    result = identified[index]
                    if isinstance(result, InvalidInput):
                        raise result
                else:
                    with self.env.cr.savepoint():
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
