import datetime
import enum
import hashlib

import phonenumbers

from odoo.tests import freeze_time, new_test_user, tagged

from ..exceptions import ContactNotWritable, UnknownContact
from ..tools import _e164_number, normalize_phone, parse_timestamp, pg_array
from .common import GobysendCase

NOW = datetime.datetime(2026, 3, 10, 9, 30, 0)


@tagged("post_install", "-at_install")
class TestIngestIdentify(GobysendCase):
    def identify(self, payload, workspace=None):
        return self.ingest.identify(workspace or self.workspace_a, payload)

    def partner(self, result):
        return self.env["res.partner"].browse(result["contact_id"])

    def attribute(self, key, workspace=None):
        return self.env["gobysend.attribute"].search(
            [("workspace_id", "=", (workspace or self.workspace_a).id), ("key", "=", key)]
        )

    def value(self, partner, key, workspace=None):
        return self.env["gobysend.attribute.value"].search(
            [("partner_id", "=", partner.id), ("attribute_id", "=", self.attribute(key, workspace).id)]
        )

    def test_identify_creates_contact_and_subscription(self):
        result = self.identify({"id": "C-1", "email": " Lan.Nguyen@Example.COM ", "attributes": {"name": "Nguyễn Lan"}})
        self.assertTrue(result["created"])
        partner = self.partner(result)
        self.assertEqual(partner.name, "Nguyễn Lan")
        self.assertEqual(partner.email, "lan.nguyen@example.com")
        subscription = self.subscription_of(self.workspace_a, partner)
        self.assertEqual(len(subscription), 1)
        self.assertEqual(subscription.external_id, "C-1")
        self.assertEqual(subscription.source, "api")
        self.assertEqual(subscription.email_state, "subscribed")
        self.assertFalse(self.subscription_of(self.workspace_b, partner))

    def test_contact_without_name_is_named_after_its_identifier(self):
        self.assertEqual(self.partner(self.identify({"email": "an@example.com"})).name, "an@example.com")
        self.assertEqual(self.partner(self.identify({"id": 4711})).name, "4711")

    def test_identify_again_updates_the_same_contact(self):
        first = self.identify({"id": "C-1", "attributes": {"city": "Hà Nội", "tier": "silver"}})
        second = self.identify(
            {"id": "C-1", "email": "lan@example.com", "attributes": {"city": "Đà Nẵng", "tier": "gold"}}
        )
        self.assertFalse(second["created"])
        self.assertEqual(second["contact_id"], first["contact_id"])
        partner = self.partner(second)
        self.assertEqual(partner.city, "Đà Nẵng")
        self.assertEqual(partner.email, "lan@example.com")
        self.assertEqual(self.value(partner, "tier").value_string, "gold")
        self.assertEqual(len(self.value(partner, "tier")), 1)
        self.assertEqual(
            self.env["gobysend.subscription"].search_count([("workspace_id", "=", self.workspace_a.id)]), 1
        )

    def test_integer_and_text_customer_ids_are_the_same_id(self):
        first = self.identify({"id": 42})
        self.assertEqual(self.identify({"id": "42"})["contact_id"], first["contact_id"])
        self.assertEqual(self.subscription_of(self.workspace_a, first["contact_id"]).external_id, "42")

    def test_contact_is_found_by_email_then_by_phone(self):
        first = self.identify({"email": "lan@example.com", "phone": "0912 345 678"})
        by_email = self.identify({"email": "LAN@example.com"})
        by_phone = self.identify({"phone": "+84 91 234 5678"})
        self.assertFalse(by_email["created"])
        self.assertFalse(by_phone["created"])
        self.assertEqual({by_email["contact_id"], by_phone["contact_id"]}, {first["contact_id"]})
        # A customer id sent later is attached to the contact found by email.
        with_id = self.identify({"id": "C-9", "email": "lan@example.com"})
        self.assertEqual(with_id["contact_id"], first["contact_id"])
        self.assertEqual(self.subscription_of(self.workspace_a, first["contact_id"]).external_id, "C-9")

    def test_a_partner_subscribed_by_a_manager_is_found_by_email(self):
        partner = self.env["res.partner"].create({"name": "Lan from the CRM", "email": "Lan@Example.com"})
        self.env["gobysend.subscription"].create({"workspace_id": self.workspace_a.id, "partner_id": partner.id})
        result = self.identify({"id": "C-1", "email": "lan@example.com"})
        self.assertFalse(result["created"])
        self.assertEqual(result["contact_id"], partner.id)
        self.assertEqual((partner.name, partner.email), ("Lan from the CRM", "Lan@Example.com"))
        self.assertEqual(self.subscription_of(self.workspace_a, partner).external_id, "C-1")

    def test_a_contact_created_through_a_workspace_is_found_again_by_it_alone(self):
        first = self.partner(self.identify({"id": "C-1", "email": "lan@example.com"}))
        self.assertEqual(first.gobysend_origin_workspace_id, self.workspace_a)
        # Its subscription gone, the workspace's API finds the contact it created again...
        self.subscription_of(self.workspace_a, first).unlink()
        again = self.identify({"email": "lan@example.com"})
        self.assertTrue(again["created"])
        self.assertEqual(again["contact_id"], first.id)
        # ...while another workspace's API makes a contact of its own.
        in_b = self.partner(self.identify({"email": "lan@example.com"}, workspace=self.workspace_b))
        self.assertNotEqual(in_b, first)
        self.assertEqual(in_b.gobysend_origin_workspace_id, self.workspace_b)

    def test_one_partner_has_independent_subscriptions_per_workspace(self):
        in_a = self.identify({"id": "C-1", "email": "lan@example.com"})
        # A manager of B subscribes the same person: B's API finds the shared contact.
        self.env["gobysend.subscription"].create(
            {"workspace_id": self.workspace_b.id, "partner_id": in_a["contact_id"], "external_id": "C-1"}
        )
        in_b = self.identify({"id": "C-1", "email": "lan@example.com"}, workspace=self.workspace_b)
        self.assertFalse(in_b["created"])
        self.assertEqual(in_a["contact_id"], in_b["contact_id"])
        self.ingest.unsubscribe(self.workspace_a, {"id": "C-1", "channel": "zalo"})
        self.assertEqual(self.subscription_of(self.workspace_a, in_a["contact_id"]).zalo_state, "unsubscribed")
        self.assertEqual(self.subscription_of(self.workspace_b, in_b["contact_id"]).zalo_state, "subscribed")

    def test_the_same_customer_id_names_different_contacts_in_different_workspaces(self):
        in_a = self.identify({"id": "C-1", "attributes": {"name": "Lan"}})
        in_b = self.identify({"id": "C-1", "attributes": {"name": "Minh"}}, workspace=self.workspace_b)
        self.assertNotEqual(in_a["contact_id"], in_b["contact_id"])
        self.assertEqual(self.partner(in_a).name, "Lan")

    def test_a_contact_keeps_its_customer_id(self):
        self.identify({"id": "C-1", "email": "lan@example.com"})
        with self.assertInvalidInput("id"):
            self.identify({"id": "C-2", "email": "lan@example.com"})
        self.assertFalse(self.env["gobysend.subscription"].search([("external_id", "=", "C-2")]))

    def test_identifiers_are_validated(self):
        for payload, field in (
            ({}, "id"),
            ({"attributes": {"name": "Lan"}}, "id"),
            ({"id": ""}, "id"),
            ({"id": "   "}, "id"),
            ({"id": True}, "id"),
            ({"id": 1.5}, "id"),
            ({"id": "x" * 201}, "id"),
            ({"email": "not-an-email"}, "email"),
            ({"email": 12}, "email"),
            ({"phone": "12345"}, "phone"),
            ({"phone": "phone me"}, "phone"),
            ({"phone": 912345678}, "phone"),
            ({"id": "C-1", "attributes": ["tier", "gold"]}, "attributes"),
            ({"id": "C-\x001"}, "id"),
            ({"id": "C-1", "attributes": {"tier": "go\x00ld"}}, "attributes.tier"),
            ({"id": "C-1", "attributes": {"name": "Lan\x00"}}, "attributes.name"),
        ):
            with self.subTest(payload=payload), self.assertInvalidInput(field):
                self.identify(payload)
        self.assertFalse(self.env["gobysend.subscription"].search([("workspace_id", "=", self.workspace_a.id)]))

    def test_phone_is_normalised_to_e164_with_the_workspace_country(self):
        partner = self.partner(self.identify({"phone": "0912 345 678"}))
        self.assertEqual(partner.phone, "+84912345678")
        self.assertEqual(partner.phone_sanitized, "+84912345678")
        thai = self.env["gobysend.workspace"].create({"name": "Shop TH", "country_id": self.env.ref("base.th").id})
        self.assertEqual(self.partner(self.identify({"phone": "081 234 5678"}, workspace=thai)).phone, "+66812345678")
        # A number with its own prefix keeps its country.
        self.assertEqual(self.partner(self.identify({"phone": "+66 81 234 5679"})).phone, "+66812345679")
        # The attribute form of the key is normalised the same way.
        partner = self.partner(self.identify({"id": "C-7", "attributes": {"phone": "(091) 234-5670"}}))
        self.assertEqual(partner.phone, "+84912345670")

    def test_numbers_a_contact_already_has_are_not_parsed_again(self):
        """An E.164 number that is some contact's sanitized number is valid as it is; anything
        else (another form, an unknown or invalid number) goes through the full check."""
        partner = self.partner(self.identify({"id": "C-9", "phone": "+84 912 000 077"}))
        self.assertEqual(partner.phone_sanitized, "+84912000077")
        known = self.ingest._known_phone_numbers(
            [{"phone": "+84912000077"}, {"phone": "+84912000078"}, {"phone": "0912000077"}, {"phone": 84912000077}]
        )
        self.assertEqual(known, {"+84912000077"})
        self.assertEqual(
            self.identify({"phone": "+84912000077", "attributes": {"tier": "gold"}})["contact_id"], partner.id
        )
        result = self.ingest.batch(
            self.workspace_a,
            [
                {"type": "identify", "phone": "+84912000077", "attributes": {"tier": "silver"}},
                {"type": "identify", "phone": "+8491200"},
                {"type": "track", "phone": "+84912000077", "name": "viewed"},
            ],
        )
        self.assertEqual(result[0]["contact_id"], partner.id)
        self.assertEqual((result[1]["status"], result[1]["errors"][0]["loc"]), ("error", ["batch", 1, "phone"]))
        self.assertEqual(result[2]["status"], "ok")

    def test_claims_of_a_day_ago_are_purged_and_recent_ones_kept(self):
        self.identify({"id": "C-CLAIM", "email": "claim@example.com"})
        claims = "SELECT identifier FROM gobysend_contact_claim WHERE workspace_id = %s ORDER BY identifier"
        self.env.cr.execute(claims, [self.workspace_a.id])
        made = [row[0] for row in self.env.cr.fetchall()]
        self.assertEqual(made, ["email:claim@example.com", "id:C-CLAIM"])
        # Aged on the database's own clock, the one the purge reads.
        self.env.cr.execute(
            "UPDATE gobysend_contact_claim SET claimed_at = (now() at time zone 'UTC') - interval '25 hours' "
            "WHERE workspace_id = %s AND identifier = 'id:C-CLAIM'",
            [self.workspace_a.id],
        )
        self.env.ref("gobysend_automation.ir_cron_purge_contact_claims").method_direct_trigger()
        self.env.cr.execute(claims, [self.workspace_a.id])
        self.assertEqual([row[0] for row in self.env.cr.fetchall()], ["email:claim@example.com"])

    def test_attribute_types_are_inferred_on_first_sight(self):
        partner = self.partner(
            self.identify(
                {
                    "id": "C-1",
                    "attributes": {
                        "tier": "gold",
                        "points": 1200,
                        "ratio": 0.5,
                        "vip": True,
                        "first_order": "2024-05-01",
                        "last_order_at": "2024-05-01T10:00:00+07:00",
                    },
                }
            )
        )
        expected = {
            "tier": ("string", "value_string", "gold"),
            "points": ("number", "value_number", 1200.0),
            "ratio": ("number", "value_number", 0.5),
            "vip": ("boolean", "value_boolean", True),
            "first_order": ("date", "value_date", datetime.date(2024, 5, 1)),
            "last_order_at": ("datetime", "value_datetime", datetime.datetime(2024, 5, 1, 3, 0)),
        }
        for key, (value_type, column, stored) in expected.items():
            with self.subTest(key=key):
                attribute = self.attribute(key)
                self.assertEqual(attribute.value_type, value_type)
                self.assertTrue(attribute.auto_created)
                self.assertEqual(self.value(partner, key)[column], stored)
        self.assertEqual(self.attribute("last_order_at").label, "Last order at")
        self.assertEqual(self.value(partner, "points").value_display, "1200")
        # Types belong to the workspace: B has none of these attributes.
        self.assertFalse(self.env["gobysend.attribute"].search([("workspace_id", "=", self.workspace_b.id)]))

    def test_a_type_seen_once_is_enforced_afterwards(self):
        self.identify({"id": "C-1", "attributes": {"points": 10}})
        with self.assertInvalidInput("attributes.points"):
            self.identify({"id": "C-2", "attributes": {"points": "lots"}})
        self.assertFalse(self.env["gobysend.subscription"].search([("external_id", "=", "C-2")]))

    def test_declared_attribute_types_are_enforced(self):
        Attribute = self.env["gobysend.attribute"].with_user(self.manager_a)
        for key, value_type in (
            ("points", "number"),
            ("code", "string"),
            ("vip", "boolean"),
            ("signup", "date"),
            ("seen_at", "datetime"),
        ):
            Attribute.create({"workspace_id": self.workspace_a.id, "key": key, "value_type": value_type})
        for key, value in (
            ("points", "abc"),
            ("points", True),
            ("points", "2024-01-01"),
            ("code", True),
            ("code", {"a": 1}),
            ("vip", "yes"),
            ("vip", 1),
            ("signup", "2024-13-01"),
            ("signup", "yesterday"),
            ("signup", 1700000000),
            ("seen_at", "soon"),
            ("seen_at", False),
        ):
            with self.subTest(key=key, value=value), self.assertInvalidInput(f"attributes.{key}"):
                self.identify({"id": "C-1", "attributes": {key: value}})
        partner = self.partner(
            self.identify(
                {
                    "id": "C-1",
                    "attributes": {
                        "points": "12.5",
                        "code": 42,
                        "vip": False,
                        "signup": "2024-02-29",
                        "seen_at": 1700000000,
                    },
                }
            )
        )
        self.assertEqual(self.value(partner, "points").value_number, 12.5)
        self.assertEqual(self.value(partner, "code").value_string, "42")
        self.assertIs(self.value(partner, "vip").value_boolean, False)
        self.assertEqual(self.value(partner, "vip").value_display, "False")
        self.assertEqual(self.value(partner, "signup").value_date, datetime.date(2024, 2, 29))
        self.assertEqual(self.value(partner, "seen_at").value_datetime, datetime.datetime(2023, 11, 14, 22, 13, 20))
        self.assertFalse(self.attribute("points").auto_created)

    def test_numbers_that_cannot_be_stored_are_refused(self):
        for value in (float("nan"), float("inf"), 10**400):
            with self.subTest(value=value), self.assertInvalidInput("attributes.points"):
                self.identify({"id": "C-1", "attributes": {"points": value}})
        self.assertFalse(self.attribute("points"))
        partner = self.partner(self.identify({"id": "C-1", "attributes": {"points": 1}}))
        for value in ("NaN", "-Infinity", "1e999", float("-inf"), 10**400):
            with self.subTest(value=value), self.assertInvalidInput("attributes.points"):
                self.identify({"id": "C-1", "attributes": {"points": value}})
        self.assertEqual(self.value(partner, "points").value_number, 1)

    def test_attribute_keys_and_values_are_validated(self):
        for attributes, field in (
            ({"Tier": "gold"}, "attributes.Tier"),
            ({"bad-key": 1}, "attributes.bad-key"),
            ({"1st": 1}, "attributes.1st"),
            ({"": 1}, "attributes."),
            ({"k" * 64: 1}, "attributes." + "k" * 64),
            ({"address": {"street": "1 Lê Lợi"}}, "attributes.address"),
            ({"tags": ["a", "b"]}, "attributes.tags"),
        ):
            with self.subTest(attributes=attributes), self.assertInvalidInput(field):
                self.identify({"id": "C-1", "attributes": attributes})

    def test_a_bad_attribute_writes_nothing(self):
        Partner = self.env["res.partner"].with_context(active_test=False)
        partners_before = Partner.search_count([])
        with self.assertInvalidInput("attributes.birthday"):
            self.identify({"id": "C-1", "email": "new@example.com", "attributes": {"tier": "gold", "birthday": "soon"}})
        self.assertEqual(Partner.search_count([]), partners_before)
        self.assertFalse(self.env["gobysend.subscription"].search([("workspace_id", "=", self.workspace_a.id)]))
        self.assertFalse(self.attribute("tier"))
        # An existing contact is left exactly as it was.
        partner = self.partner(self.identify({"id": "C-1", "attributes": {"name": "Lan", "tier": "silver"}}))
        with self.assertInvalidInput("attributes.country_code"):
            self.identify(
                {"id": "C-1", "attributes": {"name": "Lan Nguyễn", "tier": "gold", "new_key": 1, "country_code": "XX"}}
            )
        self.assertEqual(partner.name, "Lan")
        self.assertEqual(self.value(partner, "tier").value_string, "silver")
        self.assertFalse(self.attribute("new_key"))

    def test_null_clears_an_attribute(self):
        partner = self.partner(self.identify({"id": "C-1", "attributes": {"tier": "gold", "points": 3}}))
        self.identify({"id": "C-1", "attributes": {"tier": None, "never_seen": None}})
        self.assertFalse(self.value(partner, "tier"))
        self.assertEqual(self.value(partner, "points").value_number, 3)
        self.assertTrue(self.attribute("tier"), "the attribute itself stays declared")
        self.assertFalse(self.attribute("never_seen"), "clearing an unknown key declares nothing")

    def test_standard_keys_update_the_contact_itself(self):
        self.env["res.lang"]._activate_lang("vi_VN")
        partner = self.partner(
            self.identify(
                {
                    "id": "C-1",
                    "attributes": {
                        "name": "  Nguyễn Lan ",
                        "email": "Lan@Example.com",
                        "phone": "0912345678",
                        "birthday": "1990-04-30",
                        "city": "Hà Nội",
                        "country_code": "vn",
                        "language": "vi-VN",
                    },
                }
            )
        )
        self.assertRecordValues(
            partner,
            [
                {
                    "name": "Nguyễn Lan",
                    "email": "lan@example.com",
                    "phone": "+84912345678",
                    "gobysend_birthday": datetime.date(1990, 4, 30),
                    "city": "Hà Nội",
                    "country_id": self.env.ref("base.vn").id,
                    "lang": "vi_VN",
                }
            ],
        )
        self.assertFalse(self.env["gobysend.attribute"].search([("workspace_id", "=", self.workspace_a.id)]))
        # A language is matched on its main part too, and a key sent as null empties the field.
        self.identify({"id": "C-1", "attributes": {"language": "en", "city": None, "birthday": None}})
        self.assertEqual(partner.lang, "en_US")
        self.assertFalse(partner.city)
        self.assertFalse(partner.gobysend_birthday)

    def test_standard_keys_are_validated(self):
        self.identify({"id": "C-1", "attributes": {"name": "Lan"}})
        for key, value in (
            ("name", None),
            ("name", ""),
            ("name", "   "),
            ("name", 12),
            ("email", "lan(at)example.com"),
            ("phone", "123"),
            ("birthday", "30/04/1990"),
            ("city", ["Hà Nội"]),
            ("city", "x" * 2049),
            ("country_code", "XX"),
            ("country_code", "%"),
            ("country_code", "v_"),
            ("country_code", "Vietnam"),
            ("country_code", 84),
            ("language", "xx"),
            ("language", "%"),
            ("language", True),
        ):
            with self.subTest(key=key, value=value), self.assertInvalidInput(f"attributes.{key}"):
                self.identify({"id": "C-1", "attributes": {key: value}})
        partner = self.partner(self.identify({"id": "C-1"}))
        self.assertEqual(partner.name, "Lan")
        self.assertFalse(partner.country_id)


@tagged("post_install", "-at_install")
class TestIngestContactsOfOthers(GobysendCase):
    """The API of a workspace neither adopts nor rewrites a contact that is not its own."""

    FIELDS = ("name", "email", "phone", "city", "lang", "country_id", "gobysend_birthday", "active")
    HIJACK = {"name": "Hijacked", "city": "Nowhere", "language": "fr", "birthday": "2000-01-01"}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.env["res.lang"]._activate_lang("fr_FR")
        cls.staff = new_test_user(cls.env, login="gbs_staff", email="staff@example.com", groups="base.group_user")
        cls.customer = new_test_user(
            cls.env, login="gbs_portal", email="portal@example.com", groups="base.group_portal"
        )
        cls.company = cls.env["res.company"].create(
            {"name": "Sister Company", "email": "sister@example.com", "phone": "+84 912 000 111"}
        )
        cls.crm = cls.env["res.partner"].create({"name": "Lead from the CRM", "email": "crm@example.com"})
        cls.archived = cls.env["res.partner"].create({"name": "Gone", "email": "gone@example.com", "active": False})
        cls.in_b = cls.env["res.partner"].browse(
            cls.ingest.identify(cls.workspace_b, {"email": "minh@example.com", "attributes": {"name": "Minh"}})[
                "contact_id"
            ]
        )
        cls.others = {
            "internal user": cls.staff.partner_id,
            "portal user": cls.customer.partner_id,
            "company": cls.company.partner_id,
            "CRM contact": cls.crm,
            "archived contact": cls.archived,
            "contact of workspace B": cls.in_b,
        }

    def snapshot(self, partner):
        partner.invalidate_recordset()
        return partner.with_context(active_test=False).read(list(self.FIELDS))[0]

    def subscribe(self, workspace, partner):
        return self.env["gobysend.subscription"].create({"workspace_id": workspace.id, "partner_id": partner.id})

    def test_identify_makes_a_contact_of_its_own_instead_of_adopting_another(self):
        for label, partner in self.others.items():
            with self.subTest(partner=label):
                before = self.snapshot(partner)
                result = self.ingest.identify(self.workspace_a, {"email": partner.email, "attributes": self.HIJACK})
                self.assertTrue(result["created"])
                self.assertNotEqual(result["contact_id"], partner.id)
                self.assertEqual(self.snapshot(partner), before)
                self.assertFalse(self.subscription_of(self.workspace_a, partner))
                new = self.env["res.partner"].browse(result["contact_id"])
                self.assertEqual((new.email, new.name), (partner.email, "Hijacked"))
                self.assertEqual(new.gobysend_origin_workspace_id, self.workspace_a)
        # By phone too.
        before = self.snapshot(self.company.partner_id)
        result = self.ingest.identify(self.workspace_a, {"phone": "0912 000 111", "attributes": {"name": "Hijacked"}})
        self.assertNotEqual(result["contact_id"], self.company.partner_id.id)
        self.assertEqual(self.snapshot(self.company.partner_id), before)

    def test_standard_keys_never_rewrite_a_subscribed_contact_the_workspace_does_not_own(self):
        for label, partner in self.others.items():
            if label == "CRM contact":
                continue  # subscribed to one workspace alone, it is that workspace's: see below
            with self.subTest(partner=label):
                self.subscribe(self.workspace_a, partner)
                partner.country_id = self.env.ref("base.vn")
                before = self.snapshot(partner)
                for attributes, field in (
                    ({"name": "Hijacked"}, "attributes.name"),
                    ({"email": "attacker@example.com"}, "attributes.email"),
                    ({"phone": "0987 654 321"}, "attributes.phone"),
                    (self.HIJACK, "attributes.name"),
                ):
                    with self.assertInvalidInput(field) as caught:
                        self.ingest.identify(self.workspace_a, {"email": partner.email, "attributes": attributes})
                    self.assertIsInstance(caught.exception, ContactNotWritable)
                self.assertEqual(self.snapshot(partner), before)
                # The workspace's own attributes are its own to set, on any of its contacts.
                result = self.ingest.identify(self.workspace_a, {"email": partner.email, "attributes": {"tier": "x"}})
                self.assertEqual(result, {"contact_id": partner.id, "created": False})
                self.assertEqual(self.snapshot(partner), before)
                # Values it already holds rewrite nothing: its own name, its country by its code,
                # and no city and no birthday, which it has none of.
                self.assertFalse(partner.city or partner.gobysend_birthday)
                same = {"name": partner.name, "country_code": "vn", "city": "", "birthday": None}
                result = self.ingest.identify(self.workspace_a, {"email": partner.email, "attributes": same})
                self.assertEqual(result, {"contact_id": partner.id, "created": False})
                self.assertEqual(self.snapshot(partner), before)

    def test_a_crm_contact_takes_updates_from_its_one_workspace_only(self):
        self.subscribe(self.workspace_a, self.crm)
        self.ingest.identify(self.workspace_a, {"email": "crm@example.com", "attributes": {"city": "Huế"}})
        self.assertEqual(self.crm.city, "Huế")
        # Once a second workspace shares it, neither rewrites it.
        self.subscribe(self.workspace_b, self.crm)
        for workspace in (self.workspace_a, self.workspace_b):
            with self.subTest(workspace=workspace.name), self.assertInvalidInput("attributes.city") as caught:
                self.ingest.identify(workspace, {"email": "crm@example.com", "attributes": {"city": "Vinh"}})
            self.assertIn("shared by several workspaces", caught.exception.message)
        self.assertEqual(self.crm.city, "Huế")

    def test_a_shared_contact_changes_only_through_the_workspace_that_created_it(self):
        self.subscribe(self.workspace_a, self.in_b)
        with self.assertInvalidInput("attributes.name") as caught:
            self.ingest.identify(self.workspace_a, {"email": "minh@example.com", "attributes": {"name": "Hijacked"}})
        self.assertIn("created through another workspace", caught.exception.message)
        with self.assertInvalidInput("email"):
            # Found by its customer id, the contact would take a new email: refused as well.
            self.subscription_of(self.workspace_a, self.in_b).external_id = "A-1"
            self.ingest.identify(self.workspace_a, {"id": "A-1", "email": "other@example.com"})
        self.assertEqual((self.in_b.name, self.in_b.email), ("Minh", "minh@example.com"))
        self.ingest.identify(self.workspace_b, {"email": "minh@example.com", "attributes": {"name": "Minh Trần"}})
        self.assertEqual(self.in_b.name, "Minh Trần")
        # Sending the values the contact already has is no change, from any workspace.
        self.ingest.identify(self.workspace_a, {"email": "MINH@example.com", "attributes": {"name": "Minh Trần"}})

    def test_a_contact_that_became_an_odoo_user_is_no_longer_rewritten(self):
        partner = self.env["res.partner"].browse(
            self.ingest.identify(self.workspace_a, {"email": "lan@example.com", "attributes": {"name": "Lan"}})[
                "contact_id"
            ]
        )
        new_test_user(
            self.env, login="gbs_lan", partner_id=partner.id, email="lan@example.com", groups="base.group_portal"
        )
        with self.assertInvalidInput("attributes.email"):
            self.ingest.identify(
                self.workspace_a, {"email": "lan@example.com", "attributes": {"email": "x@example.com"}}
            )
        self.assertEqual(partner.email, "lan@example.com")
        # Its subscription gone, the workspace's API does not adopt it again either.
        self.subscription_of(self.workspace_a, partner).unlink()
        result = self.ingest.identify(self.workspace_a, {"email": "lan@example.com"})
        self.assertNotEqual(result["contact_id"], partner.id)


@tagged("post_install", "-at_install", "time_sensitive")
class TestIngestEvents(GobysendCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.contact = cls.env["res.partner"].browse(
            cls.ingest.identify(cls.workspace_a, {"id": "C-1", "email": "lan@example.com", "phone": "0912345678"})[
                "contact_id"
            ]
        )

    def track(self, payload, workspace=None):
        return self.ingest.track(workspace or self.workspace_a, payload)

    @freeze_time(NOW)
    def test_track_stores_an_event(self):
        result = self.track(
            {"id": "C-1", "name": " order_completed ", "properties": {"total": 750000, "items": [1, 2]}}
        )
        self.assertFalse(result["duplicate"])
        self.assertEqual(result["contact_id"], self.contact.id)
        event = self.env["gobysend.event"].browse(result["event_id"])
        self.assertRecordValues(
            event,
            [
                {
                    "workspace_id": self.workspace_a.id,
                    "partner_id": self.contact.id,
                    "name": "order_completed",
                    "kind": "event",
                    "timestamp": NOW,
                    "message_id": False,
                    "url": False,
                    "create_uid": self.env.uid,
                }
            ],
        )
        self.assertEqual(event.properties, {"total": 750000, "items": [1, 2]})
        self.assertIn('"total": 750000', event.properties_text)
        self.assertEqual(self.contact.with_user(self.user_a).gobysend_event_count, 1)

    def test_the_contact_is_found_by_any_identifier(self):
        for ref in ({"id": "C-1"}, {"email": "LAN@example.com"}, {"phone": "+84912345678"}, {"phone": "0912 345 678"}):
            with self.subTest(ref=ref):
                self.assertEqual(self.track(dict(ref, name="visit"))["contact_id"], self.contact.id)
        self.assertEqual(len(self.events_of(self.workspace_a)), 4)

    def test_unknown_contacts_are_refused(self):
        for ref, field in (
            ({"id": "C-404"}, "id"),
            ({"email": "nobody@example.com"}, "email"),
            ({"phone": "0987654321"}, "phone"),
        ):
            with self.subTest(ref=ref), self.assertInvalidInput(field) as caught:
                self.track(dict(ref, name="visit"))
            self.assertIsInstance(caught.exception, UnknownContact)
        # Contacts of another workspace are unknown here.
        with self.assertInvalidInput("id"):
            self.track({"id": "C-1", "name": "visit"}, workspace=self.workspace_b)
        self.assertFalse(self.env["gobysend.event"].search([]))

    @freeze_time(NOW)
    def test_timestamps_are_read_as_iso_8601_or_epoch_seconds(self):
        for value, expected in (
            ("2026-03-09T15:00:00Z", datetime.datetime(2026, 3, 9, 15, 0)),
            ("2026-03-09T22:00:00+07:00", datetime.datetime(2026, 3, 9, 15, 0)),
            ("2026-03-09 15:00:00", datetime.datetime(2026, 3, 9, 15, 0)),
            ("2026-03-09T15:00:00.250Z", datetime.datetime(2026, 3, 9, 15, 0, 0, 250000)),
            ("2026-03-09", datetime.datetime(2026, 3, 9)),
            (1773068400, datetime.datetime(2026, 3, 9, 15, 0)),
            (1773068400.5, datetime.datetime(2026, 3, 9, 15, 0, 0, 500000)),
            ("2000-01-01T00:00:00Z", datetime.datetime(2000, 1, 1)),
            ("2026-03-11T09:00:00Z", datetime.datetime(2026, 3, 11, 9, 0)),
            (None, NOW),
            ("", NOW),
        ):
            with self.subTest(value=value):
                result = self.track({"id": "C-1", "name": "visit", "timestamp": value})
                event = self.env["gobysend.event"].browse(result["event_id"])
                self.assertEqual(event.timestamp, expected.replace(microsecond=0))

    @freeze_time(NOW)
    def test_bad_timestamps_are_refused(self):
        for value in (
            "yesterday",
            "2026-13-01T00:00:00Z",
            "1999-12-31T23:59:59Z",
            946684799,
            0,
            -1,
            "2026-03-11T09:31:00Z",  # a day and a minute ahead
            1773225000,
            1773068400000,  # milliseconds
            10**30,
            float("nan"),
            True,
            [2026, 3, 9],
            {"at": "now"},
        ):
            with self.subTest(value=value), self.assertInvalidInput("timestamp"):
                self.track({"id": "C-1", "name": "visit", "timestamp": value})
        self.assertFalse(self.events_of(self.workspace_a))

    def test_a_repeated_message_id_is_stored_once(self):
        first = self.track({"id": "C-1", "name": "order_completed", "message_id": "o-1", "properties": {"n": 1}})
        again = self.track({"id": "C-1", "name": "order_completed", "message_id": "o-1", "properties": {"n": 2}})
        self.assertFalse(first["duplicate"])
        self.assertTrue(again["duplicate"])
        self.assertEqual(again["event_id"], first["event_id"])
        events = self.events_of(self.workspace_a)
        self.assertEqual(len(events), 1)
        self.assertEqual(events.properties, {"n": 1})
        # A numeric id is the same id as its text; a page view shares the same id space.
        self.assertTrue(self.track({"id": "C-1", "name": "x", "message_id": 7})["event_id"])
        self.assertTrue(self.track({"id": "C-1", "name": "x", "message_id": "7"})["duplicate"])
        self.assertTrue(
            self.ingest.page(self.workspace_a, {"id": "C-1", "url": "https://a.example", "message_id": "o-1"})[
                "duplicate"
            ]
        )
        self.assertEqual(len(self.events_of(self.workspace_a)), 2)

    def test_message_ids_are_scoped_to_the_workspace(self):
        self.ingest.identify(self.workspace_b, {"id": "C-1"})
        first = self.track({"id": "C-1", "name": "x", "message_id": "m-1"})
        other = self.track({"id": "C-1", "name": "x", "message_id": "m-1"}, workspace=self.workspace_b)
        self.assertFalse(other["duplicate"])
        self.assertNotEqual(first["event_id"], other["event_id"])

    def test_events_without_message_id_are_all_stored(self):
        for _attempt in range(3):
            self.assertFalse(self.track({"id": "C-1", "name": "cart_viewed"})["duplicate"])
        self.assertEqual(len(self.events_of(self.workspace_a)), 3)

    def test_event_fields_are_validated(self):
        for payload, field in (
            ({}, "name"),
            ({"name": ""}, "name"),
            ({"name": "  "}, "name"),
            ({"name": 12}, "name"),
            ({"name": "x" * 201}, "name"),
            ({"name": "x", "properties": ["a"]}, "properties"),
            ({"name": "x", "properties": "total=1"}, "properties"),
            ({"name": "x", "properties": {"total": float("nan")}}, "properties"),
            ({"name": "x", "message_id": ""}, "message_id"),
            ({"name": "x", "message_id": True}, "message_id"),
            ({"name": "x", "message_id": "m" * 201}, "message_id"),
            ({"name": "bad\x00name"}, "name"),
            ({"name": "x", "properties": {"note": ["ok", "bad\x00"]}}, "properties.note"),
            ({"name": "x", "properties": {"bad\x00key": 1}}, "properties.bad\x00key"),
        ):
            with self.subTest(payload=payload), self.assertInvalidInput(field):
                self.track(dict(payload, id="C-1"))
        self.assertFalse(self.events_of(self.workspace_a))

    @freeze_time(NOW)
    def test_page_views(self):
        result = self.ingest.page(
            self.workspace_a,
            {
                "email": "lan@example.com",
                "url": "https://shop.example.com/p/42",
                "title": "Áo dài",
                "referrer": "https://google.com",
            },
        )
        event = self.env["gobysend.event"].browse(result["event_id"])
        self.assertRecordValues(
            event,
            [
                {
                    "name": "page_view",
                    "kind": "page",
                    "url": "https://shop.example.com/p/42",
                    "title": "Áo dài",
                    "referrer": "https://google.com",
                    "partner_id": self.contact.id,
                    "timestamp": NOW,
                }
            ],
        )
        named = self.ingest.page(self.workspace_a, {"id": "C-1", "url": "https://shop.example.com/", "name": "home"})
        self.assertEqual(self.env["gobysend.event"].browse(named["event_id"]).name, "home")
        # Track calls do not keep page-view fields.
        tracked = self.track({"id": "C-1", "name": "x", "title": "ignored"})
        self.assertFalse(self.env["gobysend.event"].browse(tracked["event_id"]).title)
        for payload, field in (
            ({}, "url"),
            ({"url": " "}, "url"),
            ({"url": 42}, "url"),
            ({"url": "https://a.example/" + "x" * 2048}, "url"),
            ({"url": "https://a.example/", "title": 3}, "title"),
            ({"url": "https://a.example/", "referrer": "r" * 2049}, "referrer"),
        ):
            with self.subTest(payload=payload), self.assertInvalidInput(field):
                self.ingest.page(self.workspace_a, dict(payload, id="C-1"))


@tagged("post_install", "-at_install", "time_sensitive")
class TestIngestDevicesAndConsent(GobysendCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        identify = cls.ingest.identify
        cls.lan = identify(cls.workspace_a, {"id": "C-1", "email": "lan@example.com", "phone": "0912345678"})[
            "contact_id"
        ]
        cls.minh = identify(cls.workspace_a, {"id": "C-2", "email": "minh@example.com"})["contact_id"]

    def device(self, token):
        return self.env["gobysend.device"].with_context(active_test=False).search([("token", "=", token)])

    def test_a_device_follows_the_latest_contact_claiming_it(self):
        with freeze_time("2026-03-10 09:00:00"):
            first = self.ingest.register_device(self.workspace_a, {"id": "C-1", "token": " tok-1 ", "platform": "ios"})
        self.assertEqual(first["contact_id"], self.lan)
        device = self.device("tok-1")
        self.assertRecordValues(
            device, [{"partner_id": self.lan, "platform": "ios", "active": True, "workspace_id": self.workspace_a.id}]
        )
        with freeze_time("2026-03-10 10:00:00"):
            second = self.ingest.register_device(
                self.workspace_a, {"id": "C-2", "token": "tok-1", "platform": "android"}
            )
        self.assertEqual(second["device_id"], first["device_id"])
        self.assertRecordValues(
            self.device("tok-1"),
            [{"partner_id": self.minh, "platform": "android", "last_seen": datetime.datetime(2026, 3, 10, 10, 0)}],
        )
        # The same token in another workspace is another device.
        self.ingest.identify(self.workspace_b, {"id": "C-1"})
        self.ingest.register_device(self.workspace_b, {"id": "C-1", "token": "tok-1", "platform": "web"})
        self.assertEqual(len(self.device("tok-1")), 2)
        self.assertEqual(
            self.device("tok-1").filtered(lambda d: d.workspace_id == self.workspace_a).partner_id.id, self.minh
        )

    def test_removing_a_device_deactivates_it(self):
        self.ingest.register_device(self.workspace_a, {"id": "C-1", "token": "tok-1", "platform": "web"})
        result = self.ingest.remove_device(self.workspace_a, "tok-1")
        self.assertEqual(result, {"device_id": self.device("tok-1").id, "active": False})
        self.assertFalse(self.device("tok-1").active)
        # Removing twice is a retry, not an error; a new claim brings the device back.
        self.assertFalse(self.ingest.remove_device(self.workspace_a, "tok-1")["active"])
        self.ingest.register_device(self.workspace_a, {"id": "C-2", "token": "tok-1", "platform": "web"})
        self.assertRecordValues(self.device("tok-1"), [{"active": True, "partner_id": self.minh}])
        for token in ("tok-unknown", "tok\x00", None):
            with self.subTest(token=token), self.assertInvalidInput("token"):
                self.ingest.remove_device(self.workspace_a, token)
        # Another workspace cannot remove it.
        with self.assertInvalidInput("token"):
            self.ingest.remove_device(self.workspace_b, "tok-1")
        self.assertTrue(self.device("tok-1").active)

    def test_device_fields_are_validated(self):
        for payload, field in (
            ({"id": "C-1", "platform": "ios"}, "token"),
            ({"id": "C-1", "token": "  ", "platform": "ios"}, "token"),
            ({"id": "C-1", "token": 5, "platform": "ios"}, "token"),
            ({"id": "C-1", "token": "t" * 2049, "platform": "ios"}, "token"),
            ({"id": "C-1", "token": "to\x00k", "platform": "ios"}, "token"),
            ({"id": "C-1", "token": "tok"}, "platform"),
            ({"id": "C-1", "token": "tok", "platform": "windows"}, "platform"),
            ({"id": "C-404", "token": "tok", "platform": "ios"}, "id"),
        ):
            with self.subTest(payload=payload), self.assertInvalidInput(field):
                self.ingest.register_device(self.workspace_a, payload)
        self.assertFalse(self.device("tok"))

    def test_unsubscribing_from_email_fills_the_odoo_blacklist(self):
        result = self.ingest.unsubscribe(self.workspace_a, {"email": "lan@example.com", "channel": "email"})
        self.assertEqual(result, {"contact_id": self.lan, "channel": "email", "state": "unsubscribed"})
        subscription = self.subscription_of(self.workspace_a, self.lan)
        self.assertRecordValues(
            subscription,
            [
                {
                    "email_state": "unsubscribed",
                    "sms_state": "subscribed",
                    "zalo_state": "subscribed",
                    "push_state": "subscribed",
                }
            ],
        )
        self.assertTrue(self.env["mail.blacklist"].search([("email", "=", "lan@example.com")]))
        self.assertTrue(subscription.partner_id.is_blacklisted)
        self.assertTrue(subscription._is_opted_out("email"))
        self.assertFalse(subscription._is_opted_out("sms"))
        log = subscription.consent_log_ids.filtered(
            lambda entry: entry.channel == "email" and entry.state == "unsubscribed"
        )
        self.assertEqual(log.source, "api")
        self.assertFalse(self.env["phone.blacklist"].search([("number", "=", "+84912345678")]))

    def test_unsubscribing_from_sms_fills_the_phone_blacklist(self):
        self.ingest.unsubscribe(self.workspace_a, {"id": "C-1", "channel": "sms"})
        subscription = self.subscription_of(self.workspace_a, self.lan)
        self.assertEqual(subscription.sms_state, "unsubscribed")
        self.assertEqual(subscription.email_state, "subscribed")
        self.assertTrue(self.env["phone.blacklist"].search([("number", "=", "+84912345678")]))
        self.assertTrue(subscription.partner_id.phone_sanitized_blacklisted)
        self.assertFalse(self.env["mail.blacklist"].search([("email", "=", "lan@example.com")]))

    def test_an_odoo_blacklist_entry_is_honoured(self):
        subscription = self.subscription_of(self.workspace_a, self.minh)
        self.assertFalse(subscription._is_opted_out("email"))
        self.env["mail.blacklist"]._add("minh@example.com")
        self.env.invalidate_all()
        self.assertTrue(subscription._is_opted_out("email"))

    def test_unsubscribing_from_all_channels(self):
        self.ingest.unsubscribe(self.workspace_a, {"id": "C-2", "channel": "all"})
        subscription = self.subscription_of(self.workspace_a, self.minh)
        for channel in ("email", "sms", "zalo", "push"):
            self.assertEqual(subscription[f"{channel}_state"], "unsubscribed")
        # Unsubscribing again changes and logs nothing.
        logs = len(subscription.consent_log_ids)
        self.ingest.unsubscribe(self.workspace_a, {"id": "C-2", "channel": "email"})
        subscription.invalidate_recordset()
        self.assertEqual(len(subscription.consent_log_ids), logs)

    def test_unsubscribe_is_validated(self):
        for payload, field in (
            ({"id": "C-1"}, "channel"),
            ({"id": "C-1", "channel": "fax"}, "channel"),
            ({"id": "C-404", "channel": "email"}, "id"),
            ({"channel": "email"}, "id"),
            ({"email": "lan\x00@example.com", "channel": "email"}, "email"),
        ):
            with self.subTest(payload=payload), self.assertInvalidInput(field):
                self.ingest.unsubscribe(self.workspace_a, payload)
        self.assertEqual(self.subscription_of(self.workspace_a, self.lan).email_state, "subscribed")


@tagged("post_install", "-at_install")
class TestIngestBatch(GobysendCase):
    def batch(self, items, workspace=None):
        return self.ingest.batch(workspace or self.workspace_a, items)

    def test_a_mixed_batch_answers_each_item_in_order(self):
        results = self.batch(
            [
                {"type": "identify", "id": "C-1", "email": "lan@example.com", "attributes": {"tier": "gold"}},
                {"type": "track", "id": "C-1", "name": "signed_up", "message_id": "m-1"},
                {"type": "page", "email": "lan@example.com", "url": "https://shop.example.com/", "title": "Home"},
                {"type": "device", "id": "C-1", "token": "tok-1", "platform": "android"},
                {"type": "track", "id": "C-1", "name": "app_opened"},
            ]
        )
        self.assertEqual([result["index"] for result in results], [0, 1, 2, 3, 4])
        self.assertEqual({result["status"] for result in results}, {"ok"})
        contact_id = results[0]["contact_id"]
        self.assertTrue(results[0]["created"])
        self.assertEqual({result["contact_id"] for result in results}, {contact_id})
        events = self.events_of(self.workspace_a)
        self.assertEqual(sorted(events.mapped("name")), ["app_opened", "page_view", "signed_up"])
        self.assertEqual(events.filtered(lambda e: e.kind == "page").title, "Home")
        self.assertEqual({results[1]["event_id"], results[2]["event_id"], results[4]["event_id"]}, set(events.ids))
        self.assertEqual(self.env["gobysend.device"].browse(results[3]["device_id"]).partner_id.id, contact_id)

    def test_one_bad_item_does_not_sink_the_others(self):
        self.ingest.identify(self.workspace_a, {"id": "C-1"})
        results = self.batch(
            [
                {"type": "track", "id": "C-1", "name": "a"},
                {"type": "track", "id": "C-404", "name": "b"},
                {"type": "track", "id": "C-1", "name": "c", "timestamp": "garbage"},
                "not an object",
                {"type": "unknown", "id": "C-1"},
                {"id": "C-1", "name": "no type"},
                {"type": "identify", "id": "C-2", "attributes": {"birthday": "soon"}},
                {"type": "device", "id": "C-1", "token": "t", "platform": "fax"},
                {"type": "identify", "id": "C-3", "attributes": {"tier": "gold"}},
                {"type": "track", "id": "C-3", "name": "d"},
                {"type": "track", "id": "C-\x001", "name": "e"},
                {"type": "identify", "email": "nul\x00@example.com"},
                {"type": "page", "id": "C-1", "url": "https://a.example/\x00"},
            ]
        )
        self.assertEqual(
            [result["status"] for result in results],
            [
                "ok",
                "error",
                "error",
                "error",
                "error",
                "error",
                "error",
                "error",
                "ok",
                "ok",
                "error",
                "error",
                "error",
            ],
        )
        expected_fields = {
            1: "id",
            2: "timestamp",
            3: "type",
            4: "type",
            5: "type",
            6: "attributes.birthday",
            7: "platform",
            10: "id",
            11: "email",
            12: "url",
        }
        for index, field in expected_fields.items():
            with self.subTest(index=index):
                (error,) = results[index]["errors"]
                self.assertEqual(error["loc"], ["batch", index, field])
                self.assertTrue(error["msg"])
        self.assertEqual(sorted(self.events_of(self.workspace_a).mapped("name")), ["a", "d"])
        self.assertFalse(self.env["gobysend.subscription"].search([("external_id", "=", "C-2")]))
        self.assertFalse(self.env["gobysend.device"].search([("token", "=", "t")]))
        self.assertTrue(self.env["gobysend.subscription"].search([("external_id", "=", "C-3")]))

    def test_a_repeated_message_id_in_one_batch_is_stored_once(self):
        self.ingest.identify(self.workspace_a, {"id": "C-1"})
        earlier = self.ingest.track(self.workspace_a, {"id": "C-1", "name": "before", "message_id": "m-0"})
        results = self.batch(
            [
                {"type": "track", "id": "C-1", "name": "a", "message_id": "m-1"},
                {"type": "track", "id": "C-1", "name": "b"},
                {"type": "track", "id": "C-1", "name": "a", "message_id": "m-1"},
                {"type": "page", "id": "C-1", "url": "https://a.example", "message_id": "m-0"},
                {"type": "track", "id": "C-1", "name": "c", "message_id": "m-2"},
                {"type": "track", "id": "C-1", "name": "c", "message_id": "m-2"},
            ]
        )
        self.assertEqual([result["duplicate"] for result in results], [False, False, True, True, False, True])
        self.assertEqual(results[2]["event_id"], results[0]["event_id"])
        self.assertEqual(results[3]["event_id"], earlier["event_id"])
        self.assertEqual(results[5]["event_id"], results[4]["event_id"])
        self.assertEqual(len({results[0]["event_id"], results[1]["event_id"], results[4]["event_id"]}), 3)
        self.assertEqual(len(self.events_of(self.workspace_a)), 4)
        # Retrying the whole batch stores nothing new.
        retry = self.batch([{"type": "track", "id": "C-1", "name": "a", "message_id": "m-1"}])
        self.assertTrue(retry[0]["duplicate"])
        self.assertEqual(len(self.events_of(self.workspace_a)), 4)

    def test_a_track_item_sees_the_contact_identified_just_before(self):
        results = self.batch(
            [
                {"type": "track", "id": "C-1", "name": "too_early"},
                {"type": "identify", "id": "C-1"},
                {"type": "track", "id": "C-1", "name": "in_time"},
            ]
        )
        self.assertEqual([result["status"] for result in results], ["error", "ok", "ok"])

    def test_batch_size_is_limited(self):
        self.ingest.identify(self.workspace_a, {"id": "C-1"})
        with self.assertInvalidInput("batch"):
            self.batch([{"type": "track", "id": "C-1", "name": "x"}] * 1001)
        self.assertFalse(self.events_of(self.workspace_a))
        results = self.batch([{"type": "track", "id": "C-1", "name": "x", "message_id": str(n)} for n in range(1000)])
        self.assertEqual(len(results), 1000)
        self.assertEqual(len(self.events_of(self.workspace_a)), 1000)
        for items in ({"type": "track"}, "items", None):
            with self.subTest(items=items), self.assertInvalidInput("batch"):
                self.batch(items)
        self.assertEqual(self.batch([]), [])


@tagged("post_install", "-at_install", "time_sensitive")
class TestInputTools(GobysendCase):
    def test_normalize_phone(self):
        self.assertEqual(normalize_phone("0912 345 678", "VN"), "+84912345678")
        self.assertEqual(normalize_phone("0912-345-678", "vn"), "+84912345678")
        self.assertEqual(normalize_phone("+66 81 234 5678", "VN"), "+66812345678")
        self.assertEqual(normalize_phone("081 234 5678", "TH"), "+66812345678")
        for number in ("", "  ", None, "12", "0912 345 678 999 999", "+84 123", "hello"):
            with self.subTest(number=number), self.assertInvalidInput("mobile"):
                normalize_phone(number, "VN", field_name="mobile")

    def test_a_number_written_in_e164_reads_as_the_phone_library_reads_it(self):
        """Numbers in E.164 skip the library's full reading (parse, check, format) when it would
        keep them as written. Every example number of every region, and the same with one digit
        more after the country code or at the end: a number kept as written is one the full
        reading gives back unchanged, whatever the workspace's region; any other is read in
        full."""
        E164 = phonenumbers.PhoneNumberFormat.E164

        def library_reading(number, region):
            try:
                parsed = phonenumbers.parse(number, region)
            except phonenumbers.NumberParseException:
                return None
            if not (phonenumbers.is_possible_number(parsed) and phonenumbers.is_valid_number(parsed)):
                return None
            return phonenumbers.format_number(parsed, E164)

        numbers = set()
        for region in phonenumbers.SUPPORTED_REGIONS:
            for number_type in vars(phonenumbers.PhoneNumberType).values():
                if not isinstance(number_type, int):
                    continue
                example = phonenumbers.example_number_for_type(region, number_type)
                if not example:
                    continue
                code = str(example.country_code)
                national = phonenumbers.national_significant_number(example)
                numbers.add(f"+{code}{national}")
                for digit in "0123456789":
                    numbers.add(f"+{code}{digit}{national}")
                    numbers.add(f"+{code}{national}{digit}")
        self.assertGreater(len(numbers), 10000)
        kept = 0
        for number in sorted(numbers):
            if _e164_number(number) is None:
                continue
            kept += 1
            for region in ("VN", "IT", "US"):
                reading = library_reading(number, region)
                if reading != number:
                    self.fail(f"{number} is kept as written; the phone library reads {reading} in {region}")
        self.assertGreater(kept, 1000)
        self.assertEqual(normalize_phone("+84912345678", "TH"), "+84912345678")
        self.assertEqual(normalize_phone("+390612345678", "VN"), "+390612345678")  # Rome: its zero is kept

    def test_values_given_as_one_array_literal_read_back_as_given(self):
        """``pg_array`` writes a list as one array literal: PostgreSQL reads back each value
        as psycopg2 would have written it, whatever its text holds."""

        class Level(enum.IntEnum):
            GOLD = 3

        cases = [
            (
                "varchar",
                [
                    "plain",
                    "",
                    "NULL",
                    None,
                    'say "hi"',
                    "back\\slash\\",
                    "{a,b}",
                    " spaced ",
                    "Việt Nam",
                    "it's",
                    "a\nb",
                ],
            ),
            ("int4", [1, -2, 2147483647, Level.GOLD]),
            ("float8", [0.1, 1e300, -2.5e-300, 3.0, 1 / 3]),
            ("bool", [True, False, None]),
            ("date", [datetime.date(2024, 2, 29), None]),
            ("timestamp", [datetime.datetime(2024, 2, 29, 1, 2, 3), datetime.datetime(2024, 2, 29, 1, 2, 3, 45)]),
            ("int4", []),
        ]
        for sql_type, values in cases:
            with self.subTest(sql_type=sql_type, values=values):
                self.env.cr.execute(f"SELECT %s::{sql_type}[], %s::{sql_type}[]", (pg_array(values), values))
                given, usual = self.env.cr.fetchone()
                self.assertEqual(given, usual)
                self.assertEqual(given, values)
                self.assertEqual([type(value) for value in given], [type(value) for value in usual])
        with self.assertRaises(TypeError):
            pg_array([{"not": "a value"}])

    def test_parse_timestamp_window(self):
        now = datetime.datetime(2026, 3, 10, 12, 0)
        self.assertEqual(parse_timestamp(None, now=now), now)
        self.assertEqual(parse_timestamp("2026-03-11T11:59:59Z", now=now), datetime.datetime(2026, 3, 11, 11, 59, 59))
        with self.assertInvalidInput("at"):
            parse_timestamp("2026-03-11T12:00:01Z", field_name="at", now=now)
        with self.assertInvalidInput("at"):
            parse_timestamp("1999-12-31T23:59:59+00:00", field_name="at", now=now)

    def test_api_key_hash_is_sha256(self):
        plaintext = "gbs_0123abcd_secret"
        self.assertEqual(
            self.env["gobysend.api.key"]._hash_key(plaintext), hashlib.sha256(plaintext.encode()).hexdigest()
        )
