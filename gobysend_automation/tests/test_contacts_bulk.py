"""Identify in bulk: a batch of contacts costs a fixed number of statements, whatever its size,
with the same outcome as identifying its items one after the other."""

import gc
import threading

from odoo import fields, tools
from odoo.tests import tagged

from odoo.addons.gobysend_automation import uninstall_hook

from ..exceptions import ContactNotWritable, InvalidInput
from ..models.gobysend_segment import CHANGES
from ..tools import BULK_GC_THRESHOLD, fewer_collections, normalize_email
from .common import GobysendCase


@tagged("post_install", "-at_install")
class TestBulkIdentify(GobysendCase):
    def batch(self, items, workspace=None):
        return self.ingest.batch(workspace or self.workspace_a, items)

    def identify_items(self, count, prefix, **attributes):
        return [
            {
                "type": "identify",
                "id": f"{prefix}-{number}",
                "email": f"{prefix.lower()}-{number}@example.com",
                "phone": f"+8491{ord(prefix[0]) % 10}{number:06d}",  # a range of numbers per prefix
                "attributes": dict(
                    {"name": f"Customer {number}", "tier": "gold", "points": number, "vip": number % 2 == 0},
                    **attributes,
                ),
            }
            for number in range(count)
        ]

    def count_queries(self, function):
        # As in a new request: nothing of the contacts in the cache.
        self.env.flush_all()
        self.env.invalidate_all()
        before = self.env.cr.sql_log_count
        function()
        self.env.flush_all()
        return self.env.cr.sql_log_count - before

    def queued(self):
        self.env.cr.execute("SELECT partner_id FROM gobysend_segment_dirty ORDER BY partner_id")
        return [row[0] for row in self.env.cr.fetchall()]

    def value(self, partner_id, key):
        return self.env["gobysend.attribute.value"].search(
            [("partner_id", "=", partner_id), ("attribute_id.key", "=", key)]
        )

    def test_a_batch_of_new_contacts_costs_the_same_statements_whatever_its_size(self):
        # The attributes exist: the first batch declares them.
        self.batch(self.identify_items(1, "WARM"))
        small = self.count_queries(lambda: self.batch(self.identify_items(10, "S")))
        large = self.count_queries(lambda: self.batch(self.identify_items(200, "L")))
        # One by one, each contact cost some twenty statements.
        self.assertLess(large, small + 5, "a larger batch must not cost more statements")
        subscriptions = self.env["gobysend.subscription"].search(
            [("workspace_id", "=", self.workspace_a.id), ("external_id", "=like", "L-%")]
        )
        self.assertEqual(len(subscriptions), 200)
        partner = subscriptions.filtered(lambda s: s.external_id == "L-7").partner_id
        self.assertRecordValues(partner, [{"name": "Customer 7", "email": "l-7@example.com", "phone": "+84916000007"}])
        self.assertEqual(partner.gobysend_origin_workspace_id, self.workspace_a)
        self.assertEqual(self.value(partner.id, "points").value_number, 7)
        self.assertIs(self.value(partner.id, "vip").value_boolean, False)
        logs = self.env["gobysend.consent.log"].search([("partner_id", "=", partner.id)])
        # Every channel starts subscribed: one record for all, as one by one.
        self.assertRecordValues(logs, [{"channel": "all", "state": "subscribed", "source": "api"}])
        # Who recorded them and when, as the ORM would have.
        self.assertEqual((logs.create_uid, set(logs.mapped("create_date"))), (self.env.user, {self.env.cr.now()}))
        self.assertTrue(partner.gobysend_ever_subscribed)

    def test_a_batch_of_known_contacts_costs_the_same_statements_whatever_its_size(self):
        self.batch(self.identify_items(200, "U"))
        small = self.count_queries(lambda: self.batch(self.identify_items(10, "U", tier="silver")))
        large = self.count_queries(lambda: self.batch(self.identify_items(200, "U", tier="platinum")))
        self.assertLess(large, small + 5)
        results = self.batch(self.identify_items(3, "U"))
        self.assertEqual([result["created"] for result in results], [False, False, False])
        self.assertEqual(self.value(results[1]["contact_id"], "tier").value_string, "gold")

    def test_known_contacts_given_their_customer_ids_cost_the_same_statements_whatever_their_number(self):
        def by_email(count, prefix, with_ids=False):
            return [
                {
                    "type": "identify",
                    "email": f"{prefix}-{n}@example.com",
                    **({"id": f"{prefix}-{n}"} if with_ids else {}),
                }
                for n in range(count)
            ]

        for prefix, count in (("IDS", 10), ("IDL", 200)):
            self.batch(by_email(count, prefix))
        small = self.count_queries(lambda: self.batch(by_email(10, "IDS", with_ids=True)))
        large = self.count_queries(lambda: self.batch(by_email(200, "IDL", with_ids=True)))
        self.assertLess(large, small + 5, "a larger batch must not cost more statements")
        subscriptions = self.env["gobysend.subscription"].search(
            [("workspace_id", "=", self.workspace_a.id), ("external_id", "=like", "IDL-%")]
        )
        self.assertEqual(len(subscriptions), 200)
        self.assertEqual(
            subscriptions.filtered(lambda s: s.external_id == "IDL-7").partner_id.email, "idl-7@example.com"
        )
        self.assertEqual(set(subscriptions.mapped("write_uid")), {self.env.user})

    def test_known_contacts_renamed_in_a_batch_are_read_together(self):
        """Each contact whose own fields change is written through the ORM on its own (its
        values are its own): Odoo's write costs some four statements a contact. What the write
        reads of each contact (its children, for the commercial fields) is read for the whole
        batch at once; contact by contact, that was four statements more."""
        self.batch(self.identify_items(60, "R"))

        def rename(count, prefix):
            items = self.identify_items(count, "R")
            for item in items:
                item["attributes"]["name"] = f"{prefix} {item['id']}"
            return lambda: self.batch(items)

        small = self.count_queries(rename(10, "First"))
        large = self.count_queries(rename(50, "Second"))
        self.assertLess((large - small) / 40, 6, "statements per renamed contact")
        self.assertEqual(self.env["res.partner"].search_count([("name", "=like", "Second R-%")]), 50)

    def identify_with_consent(self, items, state, workspace=None):
        """As an import does: the items' email consent given, with the file as its proof."""
        return self.ingest._identify_many(
            workspace or self.workspace_a,
            items,
            source="import",
            consents={index: {"email": state} for index in range(len(items))},
            note="customers.csv",
        )

    def test_consent_given_again_to_known_contacts_costs_the_same_statements_whatever_its_size(self):
        """A customer list imported again gives its known contacts the consent they hold."""
        self.identify_with_consent(self.identify_items(200, "K"), "subscribed")
        small = self.count_queries(lambda: self.identify_with_consent(self.identify_items(10, "K"), "subscribed"))
        large = self.count_queries(lambda: self.identify_with_consent(self.identify_items(200, "K"), "subscribed"))
        self.assertLess(large, small + 5, "a larger list must not cost more statements")

    def test_a_list_changes_the_consent_of_known_contacts_at_once_with_its_proof(self):
        self.identify_with_consent(self.identify_items(200, "K"), "subscribed")
        self.env.cr.execute("DELETE FROM gobysend_segment_dirty")
        small = self.count_queries(lambda: self.identify_with_consent(self.identify_items(10, "K"), "unsubscribed"))
        large = self.count_queries(lambda: self.identify_with_consent(self.identify_items(200, "K"), "unsubscribed"))
        self.assertLess(large, small + 5, "a larger list must not cost more statements")
        subscriptions = self.env["gobysend.subscription"].search(
            [("workspace_id", "=", self.workspace_a.id), ("external_id", "=like", "K-%")]
        )
        self.assertEqual(set(subscriptions.mapped("email_state")), {"unsubscribed"})
        self.assertEqual(set(subscriptions.mapped("sms_state")), {"subscribed"})
        k7 = subscriptions.filtered(lambda s: s.external_id == "K-7")
        # One record per change: K-7 changed once, in the first list.
        self.assertRecordValues(
            self.env["gobysend.consent.log"].search([("subscription_id", "=", k7.id), ("channel", "=", "email")]),
            [{"state": "unsubscribed", "source": "import", "note": "customers.csv", "create_uid": self.env.uid}],
        )
        self.assertTrue(k7.partner_id.is_blacklisted, "an opt-out joins Odoo's email blacklist")
        self.assertEqual(len(self.queued()), 200)
        self.env.cr.execute("SELECT DISTINCT changes FROM gobysend_segment_dirty")
        self.assertEqual(self.env.cr.fetchall(), [(CHANGES["subscription"],)])

        # Subscribed again: off the blacklist, unless another workspace's contact with the same
        # address still opted out.
        self.identify_with_consent(
            [{"id": "K-8-B", "email": "k-8@example.com"}], "unsubscribed", workspace=self.workspace_b
        )
        self.identify_with_consent(self.identify_items(10, "K"), "subscribed")
        self.env.invalidate_all()
        self.assertRecordValues(
            self.env["gobysend.subscription"].search(
                [("workspace_id", "=", self.workspace_a.id), ("external_id", "in", ("K-7", "K-8"))],
                order="external_id",
            ),
            [{"email_state": "subscribed"}, {"email_state": "subscribed"}],
        )
        self.assertFalse(k7.partner_id.is_blacklisted)
        k8, k12 = (
            subscriptions.filtered(lambda s, number=number: s.external_id == number) for number in ("K-8", "K-12")
        )
        self.assertTrue(k8.partner_id.is_blacklisted, "workspace B still holds an opt-out")
        self.assertTrue(k12.partner_id.is_blacklisted, "not in the second list")

    def test_only_contacts_whose_values_change_are_queued_for_segments(self):
        first = self.batch(self.identify_items(6, "Q"))
        self.env.cr.execute("DELETE FROM gobysend_segment_dirty")
        again = self.identify_items(6, "Q")
        for item in again[::2]:
            item["attributes"]["tier"] = "silver"
        results = self.batch(again)
        self.assertEqual([result["contact_id"] for result in results], [result["contact_id"] for result in first])
        self.assertEqual(self.queued(), sorted(result["contact_id"] for result in first[::2]))
        self.assertEqual(self.value(first[2]["contact_id"], "tier").value_string, "silver")
        self.assertEqual(self.value(first[3]["contact_id"], "tier").value_string, "gold")

    def test_each_contact_is_queued_once_for_segments_with_all_that_changed(self):
        known = self.batch(self.identify_items(2, "M"))
        self.env.cr.execute("DELETE FROM gobysend_segment_dirty")
        results = self.batch(
            [
                *self.identify_items(2, "M", tier="silver"),  # known contacts whose values change
                *self.identify_items(1, "N"),  # a new contact with values
                {"type": "identify", "id": "N-bare"},  # a new contact without any
            ]
        )
        self.assertEqual([result["contact_id"] for result in results[:2]], [r["contact_id"] for r in known])
        self.env.cr.execute("SELECT partner_id, changes FROM gobysend_segment_dirty")
        subscribed, valued = CHANGES["subscription"], CHANGES["attribute"]
        self.assertEqual(
            dict(self.env.cr.fetchall()),
            {
                results[0]["contact_id"]: valued,
                results[1]["contact_id"]: valued,
                results[2]["contact_id"]: subscribed | valued,
                results[3]["contact_id"]: subscribed,
            },
        )

    def test_a_value_keeps_when_it_last_changed(self):
        partner_id = self.batch(self.identify_items(1, "W"))[0]["contact_id"]
        now = self.env.cr.now()
        self.assertEqual(self.value(partner_id, "tier").write_date, now)
        self.env.cr.execute(
            "UPDATE gobysend_attribute_value SET write_date = '2020-01-01' WHERE partner_id = %s", [partner_id]
        )
        self.env.invalidate_all()
        self.batch(self.identify_items(1, "W", tier="silver"))
        old = fields.Datetime.to_datetime("2020-01-01")
        self.assertEqual(
            (self.value(partner_id, "tier").write_date, self.value(partner_id, "points").write_date), (now, old)
        )
        # Written through the ORM (a manager's edit, a workflow), as through the API.
        points = self.value(partner_id, "points")
        points.value_number = 12
        self.assertEqual(points.write_date, now)

    def test_duplicate_keys_in_one_batch_resolve_to_one_contact(self):
        results = self.batch(
            [
                {"type": "identify", "id": "C-1", "email": "lan@example.com", "attributes": {"tier": "gold"}},
                {"type": "identify", "email": "LAN@example.com", "attributes": {"tier": "silver", "points": 3}},
                {"type": "identify", "id": "C-1", "phone": "0912 345 678"},
                {"type": "identify", "phone": "+84912345678", "attributes": {"city": "Huế"}},
                {"type": "identify", "id": "C-2", "email": "lan@example.com"},
                {"type": "identify", "id": "C-3", "email": "minh@example.com"},
            ]
        )
        contact = results[0]["contact_id"]
        self.assertEqual([result["contact_id"] for result in results[:4]], [contact] * 4)
        self.assertEqual([result["created"] for result in results[:4]], [True, False, False, False])
        self.assertEqual((results[4]["status"], results[4]["errors"][0]["loc"]), ("error", ["batch", 4, "id"]))
        self.assertTrue(results[5]["created"])
        partner = self.env["res.partner"].browse(contact)
        self.assertEqual((partner.phone, partner.city), ("+84912345678", "Huế"))
        self.assertEqual(self.value(contact, "tier").value_string, "silver")
        self.assertEqual(len(self.subscription_of(self.workspace_a, partner)), 1)
        self.assertEqual(self.env["res.partner"].search_count([("email_normalized", "=", "lan@example.com")]), 1)

    def test_a_contact_whose_email_changes_earlier_in_the_batch_is_not_found_by_the_old_one(self):
        first = self.ingest.identify(self.workspace_a, {"id": "C-1", "email": "old@example.com"})
        results = self.batch(
            [
                {"type": "identify", "id": "C-1", "attributes": {"email": "new@example.com"}},
                {"type": "identify", "email": "old@example.com"},
            ]
        )
        self.assertEqual(results[0]["contact_id"], first["contact_id"])
        self.assertTrue(results[1]["created"])
        self.assertNotEqual(results[1]["contact_id"], first["contact_id"])

    def test_an_attribute_first_typed_in_the_batch_types_the_later_items(self):
        results = self.batch(
            [
                {"type": "identify", "id": "C-1", "attributes": {"points": 10}},
                {"type": "identify", "id": "C-2", "attributes": {"points": "lots"}},
                {"type": "identify", "id": "C-3", "attributes": {"points": "12.5"}},
            ]
        )
        self.assertEqual([result["status"] for result in results], ["ok", "error", "ok"])
        self.assertEqual(results[1]["errors"][0]["loc"], ["batch", 1, "attributes.points"])
        self.assertEqual(self.value(results[2]["contact_id"], "points").value_number, 12.5)

    def test_a_refused_item_declares_no_attribute_and_writes_nothing(self):
        staff = self.env["res.users"].create({"name": "Staff", "login": "gbs_bulk_staff", "email": "staff@example.com"})
        self.env["gobysend.subscription"].create(
            {"workspace_id": self.workspace_a.id, "partner_id": staff.partner_id.id}
        )
        results = self.ingest._identify_many(
            self.workspace_a,
            [
                {"email": "staff@example.com", "attributes": {"name": "Hijacked", "shoe_size": 42}},
                {"id": "C-1", "attributes": {"tier": "gold"}},
            ],
        )
        self.assertIsInstance(results[0], ContactNotWritable)
        self.assertEqual(results[0].field, "attributes.name")
        self.assertTrue(results[1]["created"])
        self.assertEqual(staff.partner_id.name, "Staff")
        self.assertFalse(
            self.env["gobysend.attribute"].search(
                [("workspace_id", "=", self.workspace_a.id), ("key", "=", "shoe_size")]
            )
        )

    def test_null_clears_attributes_in_bulk(self):
        results = self.batch(self.identify_items(3, "N"))
        self.batch([{"type": "identify", "id": "N-1", "attributes": {"tier": None, "unknown_key": None}}])
        self.assertFalse(self.value(results[1]["contact_id"], "tier"))
        self.assertTrue(self.value(results[0]["contact_id"], "tier"))

    def test_consent_given_in_bulk_is_logged_with_its_source(self):
        results = self.ingest._identify_many(
            self.workspace_a,
            [
                {"id": "C-1", "email": "lan@example.com"},
                {"id": "C-2", "email": "minh@example.com"},
                {"id": "C-3", "phone": "0912 345 678", "email": "an@example.com"},
            ],
            source="import",
            consents={0: {"email": "unsubscribed", "sms": "subscribed"}, 2: {"sms": "unsubscribed"}},
            note="customers.csv",
        )
        subscription = self.subscription_of(self.workspace_a, results[0]["contact_id"])
        self.assertEqual((subscription.email_state, subscription.sms_state), ("unsubscribed", "subscribed"))
        self.assertEqual(subscription.source, "import")
        log = subscription.consent_log_ids.filtered(lambda entry: entry.channel == "email")
        self.assertEqual((log.state, log.source, log.note), ("unsubscribed", "import", "customers.csv"))
        # An opt-out reaches Odoo's own blacklist, as one by one.
        self.assertTrue(self.env["mail.blacklist"].search([("email", "=", "lan@example.com")]))
        self.assertTrue(self.env["res.partner"].browse(results[0]["contact_id"]).is_blacklisted)
        self.assertTrue(self.env["phone.blacklist"].search([("number", "=", "+84912345678")]))
        self.assertFalse(self.env["mail.blacklist"].search([("email", "in", ["minh@example.com", "an@example.com"])]))
        # Consent of a known contact changes through the consent log too.
        self.ingest._identify_many(
            self.workspace_a, [{"id": "C-2"}], source="import", consents={0: {"zalo": "unsubscribed"}}, note="again"
        )
        other = self.subscription_of(self.workspace_a, results[1]["contact_id"])
        self.assertEqual(other.zalo_state, "unsubscribed")
        self.assertEqual(other.consent_log_ids.filtered(lambda entry: entry.note == "again").source, "import")

    def test_a_batch_sets_off_few_garbage_collections(self):
        self.batch(self.identify_items(300, "GC"))
        # The same contacts again, a value changed: the path of a sync from another system.
        results, collections, after = self.count_collections(
            lambda: self.batch(self.identify_items(300, "GC", tier="silver"))
        )
        self.assertEqual({result["status"] for result in results}, {"ok"})
        self.assertEqual({result["created"] for result in results}, {False})
        self.assertEqual(self.value(results[7]["contact_id"], "tier").value_string, "silver")
        # At Python's default thresholds, the same batch set off about fifteen collections.
        self.assertLessEqual(collections, 3)
        self.assertEqual(after, (700, 10, 10), "the thresholds are put back once the batch ends")

    def test_the_collectors_thresholds_are_put_back_by_the_last_bulk_block_to_end(self):
        self.addCleanup(gc.set_threshold, *gc.get_threshold())
        gc.set_threshold(700, 10, 10)
        entered, release = threading.Event(), threading.Event()

        def other_batch():
            with fewer_collections():
                entered.set()
                release.wait(30)

        with fewer_collections():
            self.assertEqual(gc.get_threshold(), BULK_GC_THRESHOLD)
            with fewer_collections():
                self.assertEqual(gc.get_threshold(), BULK_GC_THRESHOLD)
            self.assertEqual(gc.get_threshold(), BULK_GC_THRESHOLD, "an inner block keeps the outer one's")
            thread = threading.Thread(target=other_batch)
            thread.start()
            self.assertTrue(entered.wait(30))
        self.assertEqual(gc.get_threshold(), BULK_GC_THRESHOLD, "another thread's block still runs")
        release.set()
        thread.join(30)
        self.assertEqual(gc.get_threshold(), (700, 10, 10))
        # Thresholds someone raised further are left as they are.
        gc.set_threshold(50_000, 10, 10)
        with fewer_collections():
            self.assertEqual(gc.get_threshold(), (50_000, 10, 10))
        self.assertEqual(gc.get_threshold(), (50_000, 10, 10))

    def test_invalid_items_are_answered_each(self):
        results = self.ingest._identify_many(
            self.workspace_a, [{"email": "bad"}, {"id": "C-1"}, "not an object", {"phone": "123"}]
        )
        self.assertIsInstance(results[0], InvalidInput)
        self.assertEqual([results[0].field, results[2].field, results[3].field], ["email", "type", "phone"])
        self.assertTrue(results[1]["created"])

    def test_the_quick_email_reading_agrees_with_odoos(self):
        for email in (
            "Lan.Nguyen@Example.COM",
            "a@b.c",
            "a..b@example.com",
            ".a@example.com",
            "a.@example.com",
            "a@example..com",
            "a@-example.com",
            "first_last+tag%x@sub.example.co.uk",
            "-@example.com",
            "a@example",
            "a b@example.com",
            " lan@example.com ",
            "Lan <lan@example.com>",
            '"quoted"@example.com',
            "a@b@example.com",
            "lan@example.com, minh@example.com",
            "",
            "@example.com",
        ):
            with self.subTest(email=email):
                self.assertEqual(normalize_email(email), tools.email_normalize(email))

    def test_new_contacts_get_the_default_salesperson_as_one_by_one(self):
        # The bulk path gives the salesperson itself, once for the batch: it must be the default
        # Odoo would have given each new partner, not left empty.
        self.env["ir.default"].set("res.partner", "user_id", self.manager_a.id)
        results = self.batch(self.identify_items(3, "SP"))
        partners = self.env["res.partner"].browse([result["contact_id"] for result in results])
        self.assertEqual(len(partners), 3)
        self.assertEqual(partners.mapped("user_id"), self.manager_a)
        self.env["ir.default"].discard_values("res.partner", "user_id", [self.manager_a.id])
        others = self.env["res.partner"].browse(
            [result["contact_id"] for result in self.batch(self.identify_items(2, "NS"))]
        )
        self.assertFalse(others.user_id)

    def test_values_given_on_creation_are_the_ones_odoo_computes(self):
        # New contacts get their sanitized number, normalized address and resized images in the
        # insert, and their commercial entity in one computation for all of them; Odoo does not
        # compute them again: they must be what it would compute.
        items = [
            {"type": "identify", "id": "KV-1", "email": "kv-1@example.com", "phone": "+84912000001"},
            # A number written nationally, an address with capitals and a display name.
            {"type": "identify", "email": "Kv Two <KV-2@Example.com>", "phone": "0912 000 002"},
            # The phone attribute is another number than the identifying one.
            {"type": "identify", "id": "KV-3", "attributes": {"phone": "+84912000009", "email": "kv-3@example.com"}},
            {"type": "identify", "id": "KV-4"},
        ]
        results = self.batch(items)
        partners = self.env["res.partner"].browse([result["contact_id"] for result in results])
        self.assertEqual(len(partners), 4)
        names = [
            "phone_sanitized",
            "email_normalized",
            "image_1024",
            "image_512",
            "image_256",
            "image_128",
            "commercial_partner_id",
            "complete_name",
            "commercial_company_name",
            "partner_share",
        ]
        self.env.invalidate_all()
        given = partners.read(names)
        self.assertEqual(
            [(row["complete_name"], row["commercial_company_name"], row["partner_share"]) for row in given],
            [(name, False, True) for name in ("kv-1@example.com", "kv-2@example.com", "KV-3", "KV-4")],
        )
        self.assertEqual([row["commercial_partner_id"][0] for row in given], partners.ids)
        self.assertEqual(
            [(row["phone_sanitized"], row["email_normalized"]) for row in given],
            [
                ("+84912000001", "kv-1@example.com"),
                ("+84912000002", "kv-2@example.com"),
                ("+84912000009", "kv-3@example.com"),
                (False, False),
            ],
        )
        # Odoo computes them all again, from what the contacts hold.
        for name in names:
            self.env.add_to_compute(partners._fields[name], partners)
        partners._recompute_recordset(names)
        self.env.flush_all()
        self.env.invalidate_all()
        self.assertEqual(partners.read(names), given)
        # An address the context gives by default is left to Odoo to normalize.
        results = self.ingest.with_context(default_email="KV-6@Example.com").batch(
            self.workspace_a, [{"type": "identify", "id": "KV-6"}]
        )
        partner = self.env["res.partner"].browse(results[0]["contact_id"])
        self.assertEqual((partner.email, partner.email_normalized), ("KV-6@Example.com", "kv-6@example.com"))
        # A contact the context gives a parent company has that company as its entity. Being
        # the first contact of a company without an address, it gives the company its own
        # (Odoo's create does that for a contact with a parent, and only for one).
        company = self.env["res.partner"].create({"name": "KV Company", "is_company": True})
        results = self.ingest.with_context(default_parent_id=company.id).batch(
            self.workspace_a, [{"type": "identify", "id": "KV-7", "attributes": {"city": "Hue"}}]
        )
        partner = self.env["res.partner"].browse(results[0]["contact_id"])
        self.assertEqual((partner.parent_id, partner.commercial_partner_id), (company, company))
        self.assertEqual((partner.complete_name, partner.commercial_company_name), ("KV Company, KV-7", "KV Company"))
        self.assertEqual((partner.city, company.city), ("Hue", "Hue"))
        # So is the full name of a contact an administrator's default gives a company name.
        self.env["ir.default"].set("res.partner", "company_name", "KV Shop")
        partner = self.env["res.partner"].browse(self.batch([{"type": "identify", "id": "KV-8"}])[0]["contact_id"])
        self.assertEqual((partner.complete_name, partner.commercial_company_name), ("KV Shop, KV-8", "KV Shop"))
        self.env["ir.default"].discard_values("res.partner", "company_name", ["KV Shop"])
        # A contact created later with an image gets its resized images as before.
        pixel = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
        partner = self.env["res.partner"].browse(self.batch([{"type": "identify", "id": "KV-5"}])[0]["contact_id"])
        partner.image_1920 = pixel
        self.assertTrue(partner.image_128)

    def tuples_updated(self, table):
        """How many rows of ``table`` this transaction has updated so far."""
        self.env.flush_all()
        self.env.cr.execute("SELECT pg_stat_get_xact_tuples_updated(%s::regclass)", [table])
        return self.env.cr.fetchone()[0]

    def own_entities(self, partner_ids):
        """Which of ``partner_ids`` are their own commercial entity in the database."""
        self.env.cr.execute(
            "SELECT id FROM res_partner WHERE id = ANY(%s) AND commercial_partner_id = id ORDER BY id",
            [partner_ids],
        )
        return [row[0] for row in self.env.cr.fetchall()]

    def test_new_contacts_are_inserted_as_their_own_commercial_entity(self):
        # Written in the insert: updating the rows just inserted would write every index of
        # the contacts table a second time.
        before = self.tuples_updated("res_partner")
        ids = sorted(result["contact_id"] for result in self.batch(self.identify_items(20, "OE")))
        self.assertEqual(self.tuples_updated("res_partner"), before, "new contacts must be written once")
        self.assertEqual(self.own_entities(ids), ids)
        # Odoo's own creation is unchanged: a company and a person are their own entity, a
        # company's contact has the company as its entity.
        Partner = self.env["res.partner"]
        company = Partner.create({"name": "OE Company", "is_company": True})
        person = Partner.create({"name": "OE Person"})
        employee = Partner.create({"name": "OE Employee", "parent_id": company.id})
        self.env.invalidate_all()
        self.assertEqual((company + person + employee).mapped("commercial_partner_id"), company + person + company)
        # Without the trigger (removed from the database), the new contacts are updated to be
        # their own entity all the same.
        self.env.cr.execute("DROP TRIGGER gobysend_partner_own_commercial_entity ON res_partner")
        before = self.tuples_updated("res_partner")
        ids = sorted(result["contact_id"] for result in self.batch(self.identify_items(3, "NT")))
        self.assertEqual(self.tuples_updated("res_partner"), before + 3)
        self.assertEqual(self.own_entities(ids), ids)

    def test_uninstalling_leaves_the_contacts_table_as_odoo_made_it(self):
        def added():
            self.env.cr.execute(
                """
                SELECT tgname FROM pg_trigger WHERE tgrelid = 'res_partner'::regclass AND tgname LIKE 'gobysend%%'
                 UNION ALL
                SELECT indexname FROM pg_indexes WHERE tablename = 'res_partner' AND indexname LIKE '%%gobysend%%'
                 UNION ALL
                SELECT proname FROM pg_proc WHERE proname LIKE 'gobysend%%'
                """
            )
            return sorted(row[0] for row in self.env.cr.fetchall())

        self.assertEqual(
            added(),
            sorted(
                [
                    "gobysend_partner_own_commercial_entity",
                    "gobysend_partner_own_commercial_entity",
                    "res_partner__gobysend_origin_workspace_id_index",
                    "res_partner_gobysend_email_normalized_idx",
                    "res_partner_gobysend_phone_sanitized_idx",
                ]
            ),
        )
        uninstall_hook(self.env)
        # The index of the addon's own column goes with the column, as Odoo removes it.
        self.assertEqual(added(), ["res_partner__gobysend_origin_workspace_id_index"])

    def test_an_addon_computing_the_commercial_entity_otherwise_is_followed(self):
        # Standing in for an addon that overrides Odoo's method: a contact of the group's
        # domain belongs to the group's company.
        group = self.env["res.partner"].create({"name": "KV Group", "is_company": True})
        Partner = type(self.env["res.partner"])
        odoo_compute = Partner._compute_commercial_partner

        def compute(partners):
            odoo_compute(partners)
            for partner in partners.filtered(lambda p: (p.email or "").endswith("@group.example.com")):
                partner.commercial_partner_id = group

        self.patch(Partner, "_compute_commercial_partner", compute)
        results = self.batch(
            [
                {"type": "identify", "id": "KG-1", "email": "kg-1@group.example.com"},
                {"type": "identify", "id": "KG-2", "email": "kg-2@example.com"},
            ]
        )
        self.env.invalidate_all()
        partners = self.env["res.partner"].browse([result["contact_id"] for result in results])
        self.assertEqual(partners.mapped("commercial_partner_id"), group + partners[1])

    def test_a_contact_adopted_again_has_its_values_changed_not_inserted_twice(self):
        # A contact that the workspace's API created and that lost its subscription holds its
        # attribute values still; identified again, it is adopted and its values are changed,
        # cleared or kept, beside a new contact whose values are all new.
        first = self.batch(
            [
                {
                    "type": "identify",
                    "email": "back@example.com",
                    "attributes": {"tier": "gold", "points": 5, "vip": True},
                }
            ]
        )
        partner_id = first[0]["contact_id"]
        self.env["gobysend.subscription"].search(
            [("workspace_id", "=", self.workspace_a.id), ("partner_id", "=", partner_id)]
        ).unlink()
        results = self.batch(
            [
                {"type": "identify", "email": "back@example.com", "attributes": {"tier": "silver", "points": None}},
                {"type": "identify", "email": "fresh@example.com", "attributes": {"tier": "gold", "points": None}},
            ]
        )
        self.assertEqual([result["status"] for result in results], ["ok", "ok"])
        self.assertEqual(results[0]["contact_id"], partner_id)
        fresh_id = results[1]["contact_id"]
        self.assertEqual(self.value(partner_id, "tier").value_display, "silver")
        self.assertFalse(self.value(partner_id, "points"))
        self.assertTrue(self.value(partner_id, "vip").value_boolean)
        self.assertEqual(self.value(fresh_id, "tier").value_display, "gold")
        self.assertFalse(self.value(fresh_id, "points"))
        self.assertEqual(len(self.value(partner_id, "tier") | self.value(fresh_id, "tier")), 2)

    def test_new_contacts_get_the_defaults_odoo_gives_each_of_them(self):
        # The defaults of a batch's new contacts are asked once; each contact must still hold
        # what Odoo's own create gives a partner: an administrator's default, and a default
        # relation (here the tag that Odoo's partner form gives new contacts from its context).
        self.env["ir.default"].set("res.partner", "function", "Customer")
        tag = self.env["res.partner.category"].create({"name": "Imported"})
        results = self.ingest.with_context(category_id=tag.id).batch(self.workspace_a, self.identify_items(3, "DEF"))
        partners = self.env["res.partner"].browse([result["contact_id"] for result in results])
        self.assertEqual(len(partners), 3)
        self.assertEqual(partners.mapped("function"), ["Customer"] * 3)
        self.assertEqual([partner.category_id for partner in partners], [tag] * 3)
        odoo_partner = self.env["res.partner"].with_context(category_id=tag.id).create({"name": "Created by Odoo"})
        names = ["function", "lang", "tz", "type", "active", "color", "company_id", "is_company", "category_id"]
        self.env.invalidate_all()
        for partner in partners:
            self.assertEqual(partner.read(names)[0] | {"id": 0}, odoo_partner.read(names)[0] | {"id": 0})
        # Contacts of one batch given different fields each miss, and get defaults for, their own.
        results = self.ingest.with_context(default_email="shared@example.com", default_function="Buyer").batch(
            self.workspace_a,
            [
                {"type": "identify", "id": "MIX-1", "email": "mix-1@example.com"},
                {"type": "identify", "id": "MIX-2"},
                {"type": "identify", "id": "MIX-3", "email": "mix-3@example.com"},
                {"type": "identify", "id": "MIX-4"},
            ],
        )
        partners = self.env["res.partner"].browse([result["contact_id"] for result in results])
        self.assertEqual(
            partners.mapped("email"),
            ["mix-1@example.com", "shared@example.com", "mix-3@example.com", "shared@example.com"],
        )
        self.assertEqual(partners.mapped("function"), ["Buyer"] * 4)
        # A default that changes from one partner to the next (here a counter, as an addon's
        # sequence would be) must change too.
        counter = iter(range(1, 100))
        self.patch(self.env["res.partner"]._fields["ref"], "default", lambda model: f"REF-{next(counter)}")
        results = self.batch(self.identify_items(3, "SEQ"))
        refs = self.env["res.partner"].browse([result["contact_id"] for result in results]).mapped("ref")
        self.assertEqual(len(set(refs)), 3, f"each new contact must get its own reference: {refs}")
        # Outside a batch, each call finds the defaults again.
        self.assertNotEqual(self.env["res.partner"].default_get(["ref"]), self.env["res.partner"].default_get(["ref"]))
