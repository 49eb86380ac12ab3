"""Other apps pay nothing for us: writing a contact costs no query more than in plain Odoo,
unless the change can move the contact into or out of a segment."""

from ..models.res_partner import ResPartner as GobysendResPartner
from .common import GobysendCase


class TestPartnerWriteCost(GobysendCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.Partner = cls.env["res.partner"]
        cls.Segment = cls.env["gobysend.segment"]
        cls.hanoi = cls.Segment.create(
            {
                "name": "Hanoi",
                "workspace_id": cls.workspace_a.id,
                "condition_ids": [(0, 0, {"kind": "domain", "partner_domain": "[('city', '=', 'Hà Nội')]"})],
            }
        )

    def setUp(self):
        super().setUp()
        self.Segment._process_dirty_contacts()

    def subscribed_contact(self, name, **values):
        partner = self.Partner.create(dict(values, name=name))
        self.env["gobysend.subscription"].create({"workspace_id": self.workspace_a.id, "partner_id": partner.id})
        self.Segment._process_dirty_contacts()
        return partner

    def queued(self):
        self.env.cr.execute("SELECT partner_id FROM gobysend_segment_dirty")
        return self.Partner.browse(row[0] for row in self.env.cr.fetchall())

    def count_queries(self, function):
        """Queries run by ``function``, its pending writes flushed as Odoo's own query counts do."""
        self.env.flush_all()
        before = self.env.cr.sql_log_count
        function()
        self.env.flush_all()
        return self.env.cr.sql_log_count - before

    def assertWriteCostsAsInPlainOdoo(self, partner, *vals_pair):
        """Writing ``partner`` costs what the same kind of write costs without Gobysend's override
        (two different values, so that both writes really change the contact)."""
        ours, plain = vals_pair
        # The first write fills the registry's cache of watched fields, as any earlier request would.
        partner.write(plain)
        with_gobysend = self.count_queries(lambda: partner.write(ours))
        without_gobysend = self.count_queries(lambda: super(GobysendResPartner, partner).write(plain))
        self.assertEqual(with_gobysend, without_gobysend)

    def test_writing_a_contact_in_no_workspace_costs_no_query(self):
        outsider = self.Partner.create({"name": "Outsider", "city": "Huế"})
        # The city is a field a segment watches; the contact belongs to no workspace.
        self.assertIn("city", self.Segment._get_watched_partner_fields())
        self.assertWriteCostsAsInPlainOdoo(outsider, {"city": "Hà Nội"}, {"city": "Đà Nẵng"})
        self.assertFalse(self.queued())
        # Subscribed later in the same transaction, the contact is watched from then on.
        self.env["gobysend.subscription"].create({"workspace_id": self.workspace_a.id, "partner_id": outsider.id})
        self.Segment._process_dirty_contacts()
        outsider.city = "Hà Nội"
        self.assertEqual(self.queued(), outsider)
        self.Segment._process_dirty_contacts()
        self.assertEqual(self.hanoi.current_membership_ids.partner_id, outsider)

    def test_writing_a_field_no_segment_watches_costs_no_query(self):
        lan = self.subscribed_contact("Lan", city="Huế")
        self.assertNotIn("phone", self.Segment._get_watched_partner_fields())
        self.assertWriteCostsAsInPlainOdoo(lan, {"phone": "+84 912 345 678"}, {"phone": "+84 912 345 679"})
        self.assertFalse(self.queued())

    def test_writing_a_watched_field_queues_the_contact(self):
        lan = self.subscribed_contact("Lan", city="Huế")
        self.hanoi._rebuild()
        lan.function = "Buyer"
        self.assertFalse(self.queued())
        lan.city = "Hà Nội"
        self.assertEqual(self.queued(), lan)
        self.Segment._process_dirty_contacts()
        self.assertEqual(self.hanoi.current_membership_ids.partner_id, lan)
        # Archived contacts are nobody's members: archiving is a change every segment watches.
        lan.active = False
        self.assertEqual(self.queued(), lan)
        self.Segment._process_dirty_contacts()
        self.assertFalse(self.hanoi.current_membership_ids)

    def test_a_filter_on_a_computed_field_watches_what_it_is_computed_from(self):
        lan = self.subscribed_contact("Lan", email="lan@old.example.com")
        self.assertNotIn("email", self.Segment._get_watched_partner_fields())
        lan.email = "lan@example.com"
        self.assertFalse(self.queued())
        domain = "[('email_normalized', '=', 'lan@new.example.com')]"
        vip = self.Segment.create(
            {
                "name": "New address",
                "workspace_id": self.workspace_a.id,
                "condition_ids": [(0, 0, {"kind": "domain", "partner_domain": domain})],
            }
        )
        vip._rebuild()
        lan.email = "Lan <lan@new.example.com>"
        self.assertEqual(self.queued(), lan)
        self.Segment._process_dirty_contacts()
        self.assertEqual(vip.current_membership_ids.partner_id, lan)
        # A searchable field that does not say what it reads makes every stored field count.
        vip.condition_ids.partner_domain = "[('phone_mobile_search', 'like', '0912')]"
        self.assertLessEqual({"phone", "mobile", "comment"}, self.Segment._get_watched_partner_fields())

    def test_changing_conditions_changes_the_watched_fields_at_once(self):
        lan = self.subscribed_contact("Lan", city="Huế", zip="530000")
        lan.zip = "530001"
        self.assertFalse(self.queued())
        # A new condition through the segment...
        self.hanoi.write({"condition_ids": [(0, 0, {"kind": "domain", "partner_domain": "[('zip', '!=', '100000')]"})]})
        lan.zip = "530002"
        self.assertEqual(self.queued(), lan)
        self.Segment._process_dirty_contacts()
        # ...a condition edited on its own...
        zip_condition = self.hanoi.condition_ids.filtered(lambda condition: "zip" in condition.partner_domain)
        zip_condition.partner_domain = "[('street', '!=', 'Lê Lợi')]"
        lan.zip = "530003"
        self.assertFalse(self.queued())
        lan.street = "Trần Phú"
        self.assertEqual(self.queued(), lan)
        self.Segment._process_dirty_contacts()
        # ...a condition nested in a group...
        group = self.env["gobysend.segment.condition"].create(
            {"segment_id": self.hanoi.id, "kind": "group", "child_ids": [(0, 0, {"kind": "domain"})]}
        )
        group.child_ids.partner_domain = "[('zip', '=', '100000')]"
        lan.zip = "530004"
        self.assertEqual(self.queued(), lan)
        self.Segment._process_dirty_contacts()
        # ...removed conditions and archived segments no longer count.
        group.unlink()
        lan.zip = "530005"
        self.assertFalse(self.queued())
        self.hanoi.active = False
        lan.write({"city": "Huế", "street": "Lê Lợi"})
        self.assertFalse(self.queued())
        # Whoever asks first, the answer is the same for all.
        self.env.registry.clear_cache()
        self.assertNotIn("city", self.Segment.with_context(active_test=False)._get_watched_partner_fields())
        self.hanoi.active = True
        lan.city = "Hà Nội"
        self.assertEqual(self.queued(), lan)

    def test_without_active_segments_no_field_is_watched(self):
        self.Segment.search([]).active = False
        self.assertEqual(self.Segment._get_watched_partner_fields(), frozenset())
        lan = self.subscribed_contact("Lan")
        self.assertWriteCostsAsInPlainOdoo(lan, {"city": "Hà Nội"}, {"city": "Huế"})
        self.assertFalse(self.queued())
