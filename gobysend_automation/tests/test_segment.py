"""Segments: every kind of condition, nesting, refusals, transitions and isolation."""

import datetime

from freezegun import freeze_time

from odoo.exceptions import AccessError, ValidationError
from odoo.tests import Form, tagged

from .common import GobysendCase

NOW = datetime.datetime(2026, 11, 23, 3, 0)  # a Monday, 10:00 in Ho Chi Minh City


@tagged("time_sensitive")
class SegmentCase(GobysendCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.workspace_a.tz = "Asia/Ho_Chi_Minh"
        cls.Segment = cls.env["gobysend.segment"]
        cls.attributes = {
            value_type: cls.env["gobysend.attribute"].create(
                {"workspace_id": cls.workspace_a.id, "key": f"attr_{value_type}", "value_type": value_type}
            )
            for value_type in ("string", "number", "boolean", "date", "datetime")
        }

    def contact(self, name, workspace=None, joined_at=NOW, **values):
        """A contact of ``workspace`` (A by default) that joined it at ``joined_at``."""
        partner = self.env["res.partner"].create(dict({"name": name}, **values))
        subscription = self.env["gobysend.subscription"].create(
            {"workspace_id": (workspace or self.workspace_a).id, "partner_id": partner.id}
        )
        # "Joined within N days" reads the subscription's create_date, which PostgreSQL's clock
        # wrote: put it on the test's clock, which freeze_time does not reach.
        self.env.cr.execute(
            "UPDATE gobysend_subscription SET create_date = %s WHERE id = %s", (joined_at, subscription.id)
        )
        subscription.invalidate_recordset(["create_date"])
        return partner

    def set_attribute(self, partner, value_type, value):
        column = {
            "string": "value_string",
            "number": "value_number",
            "boolean": "value_boolean",
            "date": "value_date",
            "datetime": "value_datetime",
        }[value_type]
        self.env["gobysend.attribute.value"].create(
            {"attribute_id": self.attributes[value_type].id, "partner_id": partner.id, column: value}
        )

    def track(self, partner, name, when=None, workspace=None, **payload):
        payload = dict(payload, name=name, timestamp=(when or NOW).isoformat())
        row = self.ingest._prepare_event(
            workspace or self.workspace_a, payload, payload.pop("kind", "event"), partner.id
        )
        self.ingest._insert_events(workspace or self.workspace_a, [row])

    def segment(self, *conditions, match="and", workspace=None, name="Audience"):
        return self.Segment.create(
            {
                "name": name,
                "workspace_id": (workspace or self.workspace_a).id,
                "match": match,
                "condition_ids": [(0, 0, condition) for condition in conditions],
            }
        )

    def members(self, segment):
        """Rebuild ``segment`` and return its current members."""
        segment._rebuild(now=NOW)
        return segment.current_membership_ids.partner_id

    def assertMembers(self, segment, *partners):
        self.assertEqual(set(self.members(segment).ids), {partner.id for partner in partners})


@freeze_time(NOW)
class TestSegmentConditions(SegmentCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.vn = cls.env.ref("base.vn")
        cls.th = cls.env.ref("base.th")

    def test_contact_filter_uses_partner_fields_and_relations(self):
        tag = self.env["res.partner.category"].create({"name": "VIP"})
        hanoi = self.contact("Lan", country_id=self.vn.id, category_id=[(6, 0, tag.ids)])
        self.contact("Somchai", country_id=self.th.id)
        segment = self.segment({"kind": "domain", "partner_domain": "[('country_id.code', '=', 'VN')]"})
        self.assertMembers(segment, hanoi)
        tagged = self.segment({"kind": "domain", "partner_domain": f"[('category_id', 'in', [{tag.id}])]"})
        self.assertMembers(tagged, hanoi)

    def test_contact_filter_today_is_the_workspace_date_at_the_evaluated_moment(self):
        # 2026-11-24 18:00 UTC is 25 November in Ho Chi Minh City; the frozen clock says 23.
        evaluated_at = datetime.datetime(2026, 11, 24, 18, 0)
        due, utc_day, frozen_day = (self.contact(name) for name in ("Due", "UTC day", "Frozen day"))
        for partner, day in ((due, "2026-11-25"), (utc_day, "2026-11-24"), (frozen_day, "2026-11-23")):
            partner.gobysend_birthday = day
        segment = self.segment({"kind": "domain", "partner_domain": "[('gobysend_birthday', '=', context_today())]"})
        segment._rebuild(now=evaluated_at)
        self.assertEqual(segment.current_membership_ids.partner_id, due)

    def test_members_are_drawn_from_the_workspace_contacts_only(self):
        inside = self.contact("Inside", country_id=self.vn.id)
        self.contact("Elsewhere", workspace=self.workspace_b, country_id=self.vn.id)
        self.env["res.partner"].create({"name": "Not a contact", "country_id": self.vn.id})
        segment = self.segment({"kind": "domain", "partner_domain": "[('country_id', '!=', False)]"})
        self.assertMembers(segment, inside)

    def test_string_attribute_operators(self):
        gold, silver, unset = self.contact("Gold"), self.contact("Silver"), self.contact("Unset")
        self.set_attribute(gold, "string", "Gold")
        self.set_attribute(silver, "string", "Silver")
        attribute = self.attributes["string"].id
        cases = {
            ("eq", "Gold"): gold,
            ("eq", "gold"): gold,
            ("eq", "G_ld"): self.env["res.partner"],
            ("ne", "Gold"): silver,
            ("contains", "il"): silver,
            ("set", False): gold | silver,
            ("not_set", False): unset,
        }
        for (operator, value), expected in cases.items():
            with self.subTest(operator=operator):
                segment = self.segment(
                    {"kind": "attribute", "attribute_id": attribute, "attribute_operator": operator, "value": value}
                )
                self.assertEqual(self.members(segment), expected)

    def test_number_attribute_operators(self):
        low, mid, high = self.contact("Low"), self.contact("Mid"), self.contact("High")
        for partner, points in ((low, 10), (mid, 500), (high, 1000)):
            self.set_attribute(partner, "number", points)
        attribute = self.attributes["number"].id
        cases = {
            ("eq", "500", False): mid,
            ("ne", "500", False): low | high,
            ("gt", "499.5", False): mid | high,
            ("lt", "500", False): low,
            ("between", "10", "500"): low | mid,
        }
        for (operator, value, value_to), expected in cases.items():
            with self.subTest(operator=operator):
                segment = self.segment(
                    {
                        "kind": "attribute",
                        "attribute_id": attribute,
                        "attribute_operator": operator,
                        "value": value,
                        "value_to": value_to,
                    }
                )
                self.assertEqual(self.members(segment), expected)

    def test_boolean_attribute(self):
        yes, no = self.contact("Yes"), self.contact("No")
        self.set_attribute(yes, "boolean", True)
        self.set_attribute(no, "boolean", False)
        attribute = self.attributes["boolean"].id
        for value, expected in (("yes", yes), ("false", no)):
            segment = self.segment(
                {"kind": "attribute", "attribute_id": attribute, "attribute_operator": "eq", "value": value}
            )
            self.assertEqual(self.members(segment), expected)

    def test_date_attribute_operators(self):
        # Today is 2026-11-23 in the workspace's time zone.
        recent, soon, birthday, this_month, old = (
            self.contact("Recent"),
            self.contact("Soon"),
            self.contact("Birthday"),
            self.contact("This month"),
            self.contact("Old"),
        )
        for partner, day in (
            (recent, "2026-11-20"),
            (soon, "2026-11-27"),
            (birthday, "1990-11-23"),
            (this_month, "1985-11-02"),
            (old, "2020-01-15"),
        ):
            self.set_attribute(partner, "date", day)
        attribute = self.attributes["date"].id
        cases = {
            ("last_days", 7, False, False): recent,
            ("next_days", 7, False, False): soon,
            ("anniversary_today", 0, False, False): birthday,
            ("anniversary_month", 0, False, False): recent | soon | birthday | this_month,
            ("eq", 0, "2020-01-15", False): old,
            ("gt", 0, "2026-11-21", False): soon,
            ("lt", 0, "1990-01-01", False): this_month,
            ("between", 0, "2026-01-01", "2026-12-31"): recent | soon,
        }
        for (operator, days, value, value_to), expected in cases.items():
            with self.subTest(operator=operator):
                segment = self.segment(
                    {
                        "kind": "attribute",
                        "attribute_id": attribute,
                        "attribute_operator": operator,
                        "days": days,
                        "value": value,
                        "value_to": value_to,
                    }
                )
                self.assertEqual(self.members(segment), expected)

    def test_datetime_attribute_in_the_last_days(self):
        recent, old = self.contact("Recent"), self.contact("Old")
        self.set_attribute(recent, "datetime", NOW - datetime.timedelta(days=2))
        self.set_attribute(old, "datetime", NOW - datetime.timedelta(days=40))
        segment = self.segment(
            {
                "kind": "attribute",
                "attribute_id": self.attributes["datetime"].id,
                "attribute_operator": "last_days",
                "days": 30,
            }
        )
        self.assertMembers(segment, recent)

    def test_event_counts_in_a_window_and_ever(self):
        once, twice, long_ago, never = (
            self.contact("Once"),
            self.contact("Twice"),
            self.contact("Long ago"),
            self.contact("Never"),
        )
        self.track(once, "order_completed", NOW - datetime.timedelta(days=1))
        self.track(twice, "order_completed", NOW - datetime.timedelta(days=2))
        self.track(twice, "order_completed", NOW - datetime.timedelta(days=3))
        self.track(long_ago, "order_completed", NOW - datetime.timedelta(days=100))
        cases = {
            ("at_least", 1, 30): once | twice,
            ("at_least", 2, 30): twice,
            ("at_most", 1, 30): once | long_ago | never,
            ("exactly", 0, 30): long_ago | never,
            ("exactly", 2, 30): twice,
            ("at_least", 1, 0): once | twice | long_ago,
            ("exactly", 0, 0): never,
        }
        for (how, count, days), expected in cases.items():
            with self.subTest(how=how, count=count, days=days):
                segment = self.segment(
                    {
                        "kind": "event",
                        "event_name": "order_completed",
                        "count_operator": how,
                        "count": count,
                        "days": days,
                    }
                )
                self.assertEqual(self.members(segment), expected)

    def test_event_property_filters(self):
        big, small, text = self.contact("Big"), self.contact("Small"), self.contact("Text")
        self.track(big, "order_completed", properties={"total": 900, "city": "Hà Nội"})
        self.track(small, "order_completed", properties={"total": 120, "city": "Huế"})
        self.track(text, "order_completed", properties={"total": "a lot"})
        cases = {
            (">", "500"): big,
            ("<=", "120"): small,
            ("=", "900"): big,
            ("!=", "900"): small | text,
            ("=", "a lot"): text,
        }
        for (operator, value), expected in cases.items():
            with self.subTest(operator=operator, value=value):
                segment = self.segment(
                    {
                        "kind": "event",
                        "event_name": "order_completed",
                        "days": 30,
                        "property_key": "total",
                        "property_operator": operator,
                        "property_value": value,
                    }
                )
                self.assertEqual(self.members(segment), expected)
        city = self.segment(
            {
                "kind": "event",
                "event_name": "order_completed",
                "days": 0,
                "property_key": "city",
                "property_operator": "contains",
                "property_value": "nội",
            }
        )
        self.assertMembers(city, big)

    def test_any_activity_ignores_segment_transitions(self):
        active, idle = self.contact("Active"), self.contact("Idle")
        self.track(active, "app_opened")
        # Segments of earlier versions recorded their transitions as events on the contact.
        self.env["gobysend.event"].create(
            {"workspace_id": self.workspace_a.id, "partner_id": idle.id, "name": "segment_entered"}
        )
        everyone = self.segment({"kind": "consent", "consent_state": "subscribed", "consent_channel": "email"})
        self.members(everyone)
        seen = self.segment({"kind": "event", "event_name": False, "count_operator": "at_least", "count": 1, "days": 7})
        self.assertMembers(seen, active)
        self.assertIn(idle, everyone.current_membership_ids.partner_id)

    def test_visited_page(self):
        pricing, blog = self.contact("Pricing"), self.contact("Blog")
        self.track(pricing, "page_view", kind="page", url="https://shop.example/pricing?plan=pro")
        self.track(blog, "page_view", kind="page", url="https://shop.example/blog/pricing-tips")
        cases = {
            ("contains", "example/pricing"): pricing,
            ("starts_with", "https://shop.example/blog"): blog,
            ("equals", "https://shop.example/pricing?plan=pro"): pricing,
            ("contains", "pricing"): pricing | blog,
        }
        for (how, url), expected in cases.items():
            with self.subTest(how=how, url=url):
                segment = self.segment({"kind": "page", "url_operator": how, "url_value": url, "days": 30})
                self.assertEqual(self.members(segment), expected)

    def test_message_engagement(self):
        channel = self.env["gobysend.channel"].create(
            {"name": "Newsletter", "workspace_id": self.workspace_a.id, "channel_type": "email", "provider": "email"}
        )
        opener, clicker, ignorer, nothing = (
            self.contact("Opener"),
            self.contact("Clicker"),
            self.contact("Ignorer"),
            self.contact("Nothing"),
        )
        messages = {}
        for partner in (opener, clicker, ignorer):
            messages[partner] = (
                self.env["gobysend.message"]
                .sudo()
                .create(
                    {
                        "workspace_id": self.workspace_a.id,
                        "partner_id": partner.id,
                        "channel_id": channel.id,
                        "channel_type": "email",
                        "state": "sent",
                        "sent_at": NOW - datetime.timedelta(days=1),
                    }
                )
            )
        messages[opener]._apply_receipt("opened", "open-opener")
        messages[clicker]._apply_receipt("clicked", "click-clicker")
        cases = {
            ("received", "email"): opener | clicker | ignorer,
            ("received", "sms"): self.env["res.partner"],
            ("opened", "email"): opener,
            ("clicked", False): clicker,
            ("not_opened", "email"): clicker | ignorer,
        }
        for (engagement, channel_type), expected in cases.items():
            with self.subTest(engagement=engagement, channel=channel_type):
                segment = self.segment(
                    {"kind": "message", "engagement": engagement, "channel_type": channel_type, "days": 7}
                )
                self.assertEqual(self.members(segment), expected)
        self.assertNotIn(nothing, self.members(self.segment({"kind": "message", "engagement": "received", "days": 0})))

    def test_consent_and_joined(self):
        subscribed, opted_out = self.contact("Subscribed"), self.contact("Opted out")
        self.subscription_of(self.workspace_a, opted_out)._set_consent("zalo", "unsubscribed", "api")
        any_channel = self.segment({"kind": "consent", "consent_channel": False, "consent_state": "unsubscribed"})
        self.assertMembers(any_channel, opted_out)
        email = self.segment({"kind": "consent", "consent_channel": "email", "consent_state": "unsubscribed"})
        self.assertMembers(email)
        joined = self.segment({"kind": "joined", "days": 7})
        self.assertEqual(self.members(joined), subscribed | opted_out)
        with freeze_time(NOW + datetime.timedelta(days=7, seconds=-1)):
            joined._rebuild()
        self.assertEqual(joined.current_membership_ids.partner_id, subscribed | opted_out)
        with freeze_time(NOW + datetime.timedelta(days=7, seconds=1)):
            joined._rebuild()
        self.assertFalse(joined.current_membership_ids)
        earlier = self.contact("Joined before", joined_at=NOW - datetime.timedelta(days=8))
        self.assertNotIn(earlier, self.members(joined))

    def test_membership_of_another_segment_and_negation(self):
        vip, other = self.contact("VIP", country_id=self.vn.id), self.contact("Other")
        base = self.segment({"kind": "domain", "partner_domain": "[('country_id.code', '=', 'VN')]"}, name="VN")
        inside = self.segment({"kind": "segment", "other_segment_id": base.id}, name="In VN")
        outside = self.segment({"kind": "segment", "other_segment_id": base.id, "negate": True}, name="Not in VN")
        (outside | inside | base)._rebuild(now=NOW)
        self.assertEqual(inside.current_membership_ids.partner_id, vip)
        self.assertEqual(outside.current_membership_ids.partner_id, other)

    def test_and_or_nesting(self):
        hanoi_gold = self.contact("Hanoi gold", city="Hà Nội")
        hue_gold = self.contact("Hue gold", city="Huế")
        hanoi_buyer = self.contact("Hanoi buyer", city="Hà Nội")
        self.contact("Hue nobody", city="Huế")
        for partner in (hanoi_gold, hue_gold):
            self.set_attribute(partner, "string", "Gold")
        self.track(hanoi_buyer, "order_completed")
        gold = {
            "kind": "attribute",
            "attribute_id": self.attributes["string"].id,
            "attribute_operator": "eq",
            "value": "Gold",
        }
        bought = {"kind": "event", "event_name": "order_completed", "days": 30}
        hanoi = {"kind": "domain", "partner_domain": "[('city', '=', 'Hà Nội')]"}
        # Hà Nội AND (gold OR bought)
        nested = self.segment(
            hanoi, {"kind": "group", "group_operator": "or", "child_ids": [(0, 0, gold), (0, 0, bought)]}
        )
        self.assertEqual(self.members(nested), hanoi_gold | hanoi_buyer)
        # gold OR (Hà Nội AND bought)
        either = self.segment(
            gold,
            {"kind": "group", "group_operator": "and", "child_ids": [(0, 0, hanoi), (0, 0, bought)]},
            match="or",
        )
        self.assertEqual(self.members(either), hanoi_gold | hue_gold | hanoi_buyer)

    def test_predefined_segments_come_with_every_workspace(self):
        workspace = self.env["gobysend.workspace"].create({"name": "Fresh"})
        segments = self.Segment.search([("workspace_id", "=", workspace.id)])
        self.assertEqual(sorted(segments.mapped("predefined")), ["new_this_week", "not_seen", "paying", "unsubscribed"])
        buyer, idle = self.contact("Buyer", workspace=workspace), self.contact("Idle", workspace=workspace)
        self.track(buyer, "order_completed", workspace=workspace)
        self.subscription_of(workspace, idle)._set_consent("sms", "unsubscribed", "api")
        segments._rebuild(now=NOW)
        by_kind = {segment.predefined: segment.current_membership_ids.partner_id for segment in segments}
        self.assertEqual(by_kind["paying"], buyer)
        self.assertEqual(by_kind["not_seen"], idle)
        self.assertEqual(by_kind["unsubscribed"], idle)
        self.assertEqual(by_kind["new_this_week"], buyer | idle)
        # Editable like any other segment.
        paying = segments.filtered(lambda s: s.predefined == "paying")
        paying.condition_ids.count = 2
        self.assertFalse(self.members(paying))


@freeze_time(NOW)
class TestSegmentRefusals(SegmentCase):
    def assertRefused(self, conditions, words, match="and"):
        with self.assertRaises(ValidationError) as caught:
            self.segment(*conditions, match=match)
        for word in words:
            self.assertIn(word, caught.exception.args[0])

    def test_unknown_field_in_the_contact_filter(self):
        self.assertRefused([{"kind": "domain", "partner_domain": "[('shoe_size', '>', 40)]"}], ["shoe_size"])
        self.assertRefused(
            [{"kind": "domain", "partner_domain": "[('country_id.flavour', '=', 'x')]"}], ["flavour", "Country"]
        )
        self.assertRefused([{"kind": "domain", "partner_domain": "[('name', '=', "}], ["cannot be read"])

    def test_operator_that_does_not_fit_the_attribute_type(self):
        self.assertRefused(
            [
                {
                    "kind": "attribute",
                    "attribute_id": self.attributes["string"].id,
                    "attribute_operator": "gt",
                    "value": "5",
                }
            ],
            ["does not apply", "Attr string", "text"],
        )

    def test_value_that_does_not_fit_the_attribute_type(self):
        self.assertRefused(
            [
                {
                    "kind": "attribute",
                    "attribute_id": self.attributes["number"].id,
                    "attribute_operator": "gt",
                    "value": "lots",
                }
            ],
            ["lots", "not a valid value", "number"],
        )
        self.assertRefused(
            [
                {
                    "kind": "event",
                    "event_name": "order_completed",
                    "property_key": "total",
                    "property_operator": ">",
                    "property_value": "big",
                }
            ],
            ["needs a number"],
        )

    def test_empty_group(self):
        self.assertRefused([{"kind": "group", "group_operator": "or"}], ["group of conditions is empty"])

    def test_attribute_or_segment_of_another_workspace(self):
        foreign = self.env["gobysend.attribute"].create({"workspace_id": self.workspace_b.id, "key": "tier"})
        self.assertRefused(
            [{"kind": "attribute", "attribute_id": foreign.id, "attribute_operator": "set"}], ["another workspace"]
        )
        other = self.segment(workspace=self.workspace_b, name="B audience")
        self.assertRefused([{"kind": "segment", "other_segment_id": other.id}], ["another workspace"])

    def test_segments_cannot_depend_on_each_other_in_a_circle(self):
        first = self.segment(name="First")
        second = self.segment({"kind": "segment", "other_segment_id": first.id}, name="Second")
        with self.assertRaises(ValidationError) as caught:
            first.write({"condition_ids": [(0, 0, {"kind": "segment", "other_segment_id": second.id})]})
        self.assertIn("circle", caught.exception.args[0])

    def test_a_segment_in_use_cannot_be_deleted(self):
        used = self.segment(name="Used")
        self.segment({"kind": "segment", "other_segment_id": used.id}, name="User")
        with self.assertRaises(ValidationError) as caught:
            used.unlink()
        self.assertIn("User", caught.exception.args[0])
        used.active = False  # archiving stays possible

    def test_preview_reports_the_error_instead_of_failing(self):
        with Form(self.Segment) as form:
            form.name = "Broken"
            form.workspace_id = self.workspace_a
            with form.condition_ids.new() as condition:
                condition.kind = "domain"
                condition.partner_domain = "[('shoe_size', '>', 40)]"
            self.assertIn("shoe_size", form.preview_error)
            self.assertEqual(form.preview_count, 0)
            with form.condition_ids.edit(0) as condition:
                condition.partner_domain = "[]"
            self.assertFalse(form.preview_error)


@freeze_time(NOW)
class TestSegmentMembership(SegmentCase):
    def transitions(self, segment, kind="entered"):
        """The segment's recorded transitions: each membership row is an entry, and a closed
        one an exit too."""
        domain = [("segment_id", "=", segment.id)]
        if kind == "left":
            domain.append(("left_at", "!=", False))
        return self.env["gobysend.segment.membership"].search(domain)

    def test_live_count_and_sample_before_saving(self):
        lan = self.contact("Lan", city="Hà Nội")
        self.contact("Minh", city="Đà Nẵng")
        with Form(self.Segment) as form:
            form.name = "Hanoi"
            form.workspace_id = self.workspace_a
            with form.condition_ids.new() as condition:
                condition.kind = "domain"
                condition.partner_domain = "[('city', '=', 'Hà Nội')]"
            self.assertEqual(form.preview_count, 1)
            self.assertEqual(form.preview_partner_ids.ids, lan.ids)
        segment = form.save()
        # Saving asks the background rebuild to run; it evaluates nothing itself.
        self.assertTrue(segment.rebuild_requested)
        self.assertFalse(segment.current_membership_ids)
        self.Segment._cron_rebuild()
        self.assertEqual(segment.current_membership_ids.partner_id, lan)
        self.assertEqual(segment.member_count, 1)
        self.assertFalse(segment.rebuild_requested)

    def test_transitions_are_recorded_exactly_once(self):
        lan = self.contact("Lan", city="Hà Nội")
        segment = self.segment({"kind": "domain", "partner_domain": "[('city', '=', 'Hà Nội')]"})
        for _run in range(2):
            segment._rebuild(now=NOW)
            segment._apply_membership(now=NOW)
        self.assertEqual(len(segment.membership_ids), 1)
        entered = self.transitions(segment)
        self.assertEqual(len(entered), 1)
        self.assertEqual(entered.partner_id, lan)
        # Transitions are not the contact's own activity: nothing joins its events.
        self.assertFalse(lan.gobysend_event_ids)
        lan.city = "Huế"
        for _run in range(2):
            segment._rebuild(now=NOW + datetime.timedelta(hours=1))
        self.assertEqual(len(self.transitions(segment, "left")), 1)
        self.assertEqual(segment.membership_ids.left_at, NOW + datetime.timedelta(hours=1))
        self.assertEqual(segment.member_count, 0)
        # Coming back opens a new stretch of membership, with its own transition.
        lan.city = "Hà Nội"
        segment._rebuild(now=NOW + datetime.timedelta(hours=2))
        segment._rebuild(now=NOW + datetime.timedelta(hours=2))
        self.assertEqual(len(segment.membership_ids), 2)
        self.assertEqual(len(segment.current_membership_ids), 1)
        self.assertEqual(len(self.transitions(segment)), 2)
        self.assertEqual(lan.gobysend_segment_membership_ids.segment_id, segment)
        self.assertEqual(lan.gobysend_segment_history_ids, segment.membership_ids)

    def test_changes_are_queued_and_applied_in_the_background(self):
        lan = self.contact("Lan")
        segment = self.segment({"kind": "event", "event_name": "order_completed", "days": 30})
        segment._rebuild(now=NOW)
        self.Segment._process_dirty_contacts()
        self.assertFalse(segment.current_membership_ids)
        self.track(lan, "order_completed")
        # The request only queued the contact.
        self.assertFalse(segment.current_membership_ids)
        self.env.cr.execute("SELECT partner_id FROM gobysend_segment_dirty")
        self.assertEqual([row[0] for row in self.env.cr.fetchall()], lan.ids)
        self.assertEqual(self.Segment._process_dirty_contacts(), 1)
        self.assertEqual(segment.current_membership_ids.partner_id, lan)
        self.assertEqual(segment.member_count, 1)
        # Attribute, partner and consent changes queue the contact too.
        self.set_attribute(lan, "number", 3)
        lan.city = "Huế"
        self.subscription_of(self.workspace_a, lan)._set_consent("sms", "unsubscribed", "manual")
        self.assertEqual(self.Segment._process_dirty_contacts(), 1)
        self.assertEqual(self.Segment._process_dirty_contacts(), 0)

    def test_contacts_are_re_evaluated_by_the_segments_watching_what_changed(self):
        lan = self.contact("Lan", city="Huế")
        cities = self.segment({"kind": "domain", "partner_domain": "[('city', '=', 'Hà Nội')]"}, name="Hanoi")
        buyers = self.segment({"kind": "event", "event_name": "order_completed", "days": 0}, name="Buyers")
        fans = self.segment({"kind": "segment", "other_segment_id": buyers.id}, name="Fans")
        (cities | buyers | fans)._rebuild(now=NOW)
        self.Segment._process_dirty_contacts(now=NOW)
        # A move written past the ORM is seen by no one until the scheduled rebuild...
        self.env.cr.execute("UPDATE res_partner SET city = 'Hà Nội' WHERE id = %s", lan.ids)
        lan.invalidate_recordset(["city"])
        self.track(lan, "order_completed")
        self.assertEqual(self.Segment._process_dirty_contacts(now=NOW), 1)
        # ...and an event reaches the segments on activity and those built on them only.
        self.assertEqual(buyers.current_membership_ids.partner_id, lan)
        self.assertEqual(fans.current_membership_ids.partner_id, lan)
        self.assertFalse(cities.current_membership_ids)
        # Written through the ORM, the city is a change the segments on contact fields watch.
        lan.city = "Hà Nội"
        self.assertEqual(self.Segment._process_dirty_contacts(now=NOW), 1)
        self.assertEqual(cities.current_membership_ids.partner_id, lan)

    def test_a_sent_message_reaches_received_conditions(self):
        lan = self.contact("Lan", email="lan@example.com")
        self.workspace_a.write({"token_balance": 10, "quiet_hours_start": 0, "quiet_hours_end": 0})
        channel = self.env["gobysend.channel"].create(
            {"name": "Mail", "workspace_id": self.workspace_a.id, "channel_type": "email", "state": "enabled"}
        )
        segment = self.segment({"kind": "message", "engagement": "received", "channel_type": "email", "days": 7})
        segment._rebuild()
        self.Segment._process_dirty_contacts()
        self.assertFalse(segment.current_membership_ids)
        message = self.env["gobysend.message"]._enqueue(lan, channel, "<p>Hi</p>", subject="Hi")._dispatch()
        self.assertEqual(message.state, "sent", message.reason)
        self.assertEqual(self.Segment._process_dirty_contacts(), 1)
        self.assertEqual(segment.current_membership_ids.partner_id, lan)

    def test_partner_changes_reach_contact_filters(self):
        lan = self.contact("Lan", city="Huế")
        segment = self.segment({"kind": "domain", "partner_domain": "[('city', '=', 'Hà Nội')]"})
        segment._rebuild(now=NOW)
        self.Segment._process_dirty_contacts(now=NOW)
        lan.city = "Hà Nội"
        self.assertEqual(self.Segment._process_dirty_contacts(now=NOW), 1)
        self.assertEqual(segment.current_membership_ids.partner_id, lan)

    def test_contact_leaving_the_workspace_leaves_its_segments(self):
        lan = self.contact("Lan")
        segment = self.segment({"kind": "joined", "days": 30})
        self.assertMembers(segment, lan)
        self.subscription_of(self.workspace_a, lan).active = False
        self.Segment._process_dirty_contacts(now=NOW)
        self.assertFalse(segment.current_membership_ids)
        self.assertEqual(len(self.transitions(segment, "left")), 1)
        # A full rebuild does not take it back, nor a contact of another workspace only.
        self.contact("Minh", workspace=self.workspace_b)
        self.assertMembers(segment)
        self.assertEqual(len(self.transitions(segment, "entered")), 1)

    def test_dependent_segments_are_updated_in_order(self):
        lan = self.contact("Lan")
        base = self.segment({"kind": "event", "event_name": "order_completed", "days": 0}, name="Buyers")
        # Created first so that its id comes before the segment it depends on.
        dependent = self.segment(name="Buyers in the app")
        dependent.write({"condition_ids": [(0, 0, {"kind": "segment", "other_segment_id": base.id})]})
        (dependent | base)._rebuild(now=NOW)
        self.track(lan, "order_completed")
        self.Segment._process_dirty_contacts(now=NOW)
        self.assertEqual(base.current_membership_ids.partner_id, lan)
        self.assertEqual(dependent.current_membership_ids.partner_id, lan)

    def test_time_windows_are_kept_true_by_the_scheduled_refresh(self):
        lan = self.contact("Lan")
        self.track(lan, "order_completed", NOW - datetime.timedelta(days=29))
        segment = self.segment({"kind": "event", "event_name": "order_completed", "days": 30})
        segment._rebuild(now=NOW)
        self.assertEqual(segment.current_membership_ids.partner_id, lan)
        with freeze_time(NOW + datetime.timedelta(days=2)):
            self.assertIn(segment, self.Segment._get_due_segments())
            self.Segment._cron_rebuild()
        self.assertFalse(segment.current_membership_ids)

    def test_size_over_time_is_recorded(self):
        self.contact("Lan")
        segment = self.segment({"kind": "joined", "days": 7})
        segment._rebuild(now=NOW)
        self.Segment._cron_snapshot()
        snapshot = self.env["gobysend.segment.snapshot"].search([("segment_id", "=", segment.id)])
        self.assertEqual(len(snapshot), 1)
        self.assertEqual((snapshot.member_count, snapshot.entered_count, snapshot.left_count), (1, 1, 0))


@freeze_time(NOW)
class TestSegmentIsolation(SegmentCase):
    def test_users_see_the_segments_of_their_workspaces_only(self):
        lan = self.contact("Lan")
        self.contact("Minh", workspace=self.workspace_b)
        segment_a = self.segment({"kind": "joined", "days": 7})
        segment_b = self.segment({"kind": "joined", "days": 7}, workspace=self.workspace_b)
        (segment_a | segment_b)._rebuild(now=NOW)
        as_a = self.Segment.with_user(self.user_a)
        self.assertIn(segment_a, as_a.search([]))
        self.assertNotIn(segment_b, as_a.search([]))
        self.assertNotIn(segment_a, self.Segment.with_user(self.user_b).search([]))
        memberships = self.env["gobysend.segment.membership"].with_user(self.user_b).search([])
        self.assertNotIn(lan, memberships.partner_id)
        with self.assertRaises(AccessError):
            segment_b.with_user(self.user_a).read(["name"])
        # The contact's segments on the partner form are those of the user's workspaces.
        self.env.invalidate_all()
        self.assertEqual(lan.with_user(self.user_a).gobysend_segment_membership_ids.segment_id, segment_a)
        self.env.invalidate_all()
        self.assertFalse(lan.with_user(self.user_b).gobysend_segment_membership_ids)

    def test_restricted_users_cannot_create_segments(self):
        with self.assertRaises(AccessError):
            self.Segment.with_user(self.user_a).create({"name": "Mine", "workspace_id": self.workspace_a.id})
        created = self.Segment.with_user(self.manager_a).create({"name": "Mine", "workspace_id": self.workspace_a.id})
        self.assertEqual(created.workspace_id, self.workspace_a)
        with self.assertRaises(AccessError):
            self.Segment.with_user(self.manager_a).create({"name": "Theirs", "workspace_id": self.workspace_b.id})
