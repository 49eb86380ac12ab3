import datetime
import random

from odoo import api, fields, models

DEMO_CITIES = ["Hà Nội", "TP Hồ Chí Minh", "Đà Nẵng", "Hải Phòng", "Cần Thơ", "Huế"]
DEMO_FAMILY_NAMES = ["Nguyễn", "Trần", "Lê", "Phạm", "Hoàng", "Huỳnh", "Phan", "Vũ", "Võ", "Đặng", "Bùi", "Đỗ"]
DEMO_MIDDLE_NAMES = ["Thị", "Văn", "Minh", "Ngọc", "Thanh", "Hữu", "Quang", "Thu"]
DEMO_GIVEN_NAMES = [
    "An",
    "Bình",
    "Chi",
    "Dũng",
    "Giang",
    "Hà",
    "Hải",
    "Hoa",
    "Hùng",
    "Khánh",
    "Linh",
    "Long",
    "Mai",
    "Nam",
    "Ngân",
    "Phúc",
    "Quân",
    "Sơn",
    "Tâm",
    "Thảo",
    "Trang",
    "Tuấn",
    "Vy",
    "Yến",
]
DEMO_PRODUCTS = [
    ("ao-dai-lua", "Áo dài lụa", 850000),
    ("non-la", "Nón lá", 120000),
    ("ca-phe-robusta", "Cà phê Robusta 500g", 180000),
    ("tra-sen", "Trà sen Tây Hồ", 320000),
    ("gom-bat-trang", "Bình gốm Bát Tràng", 560000),
]
DEMO_TIERS = [("bronze", 0.55), ("silver", 0.3), ("Gold", 0.15)]


class GobysendDemo(models.AbstractModel):
    """Demo data that shows the product at work: contacts with a history of activity, built
    segments and sent messages with their engagement. Called from the demo data only."""

    _name = "gobysend.demo"
    _description = "Gobysend Demo Data"

    @api.model
    def _populate_workspace(self, workspace_id, contact_count=300, seed=18):
        """Give the workspace ``contact_count`` subscribed contacts with attributes, 90 days of
        events, an email and an SMS channel on the embedded outbox, sent messages with opens and
        clicks, and its segments built with their size over the last 30 days."""
        workspace = self.env["gobysend.workspace"].browse(workspace_id)
        rng = random.Random(seed)  # the same demo on every install
        now = fields.Datetime.now()
        partners = self._demo_contacts(workspace, rng, contact_count)
        first_seen = self._demo_activity(workspace, rng, partners, now)
        self._demo_messages(workspace, rng, partners, now)
        self._demo_segments(workspace, first_seen, now)
        self._demo_campaigns(workspace)

    def _demo_contacts(self, workspace, rng, count):
        country = workspace.country_id
        partner_vals = []
        for index in range(count):
            family, middle, given = (
                rng.choice(names) for names in (DEMO_FAMILY_NAMES, DEMO_MIDDLE_NAMES, DEMO_GIVEN_NAMES)
            )
            partner_vals.append(
                {
                    "name": f"{family} {middle} {given}",
                    "email": f"customer{index + 1:04d}@example.com",
                    "phone": f"+849{rng.randrange(10_000_000, 99_999_999)}",
                    "city": rng.choice(DEMO_CITIES),
                    "country_id": country.id,
                    "gobysend_birthday": datetime.date(rng.randint(1965, 2004), rng.randint(1, 12), rng.randint(1, 28)),
                }
            )
        partners = self.env["res.partner"].create(partner_vals)
        self.env["gobysend.subscription"].create(
            [
                {
                    "workspace_id": workspace.id,
                    "partner_id": partner.id,
                    "external_id": f"C-{3000 + index}",
                    "source": "import",
                    "sms_state": "unsubscribed" if rng.random() < 0.08 else "subscribed",
                }
                for index, partner in enumerate(partners)
            ]
        )
        attributes = {
            attribute.key: attribute
            for attribute in self.env["gobysend.attribute"].search([("workspace_id", "=", workspace.id)])
        }
        value_vals = []
        for partner in partners:
            if "loyalty_tier" in attributes:
                tier = rng.choices([t for t, _w in DEMO_TIERS], weights=[w for _t, w in DEMO_TIERS])[0]
                value_vals.append(
                    {"attribute_id": attributes["loyalty_tier"].id, "partner_id": partner.id, "value_string": tier}
                )
            if "points" in attributes:
                value_vals.append(
                    {
                        "attribute_id": attributes["points"].id,
                        "partner_id": partner.id,
                        "value_number": rng.randrange(0, 5000, 10),
                    }
                )
        self.env["gobysend.attribute.value"].create(value_vals)
        return partners

    def _demo_activity(self, workspace, rng, partners, now):
        """Page views, carts and orders over the last 90 days; returns each contact's first event time."""
        rows = []
        first_seen = {}
        for partner in partners:
            activity = rng.random()
            visits = 0 if activity < 0.15 else rng.randint(1, 12)
            for _visit in range(visits):
                moment = now - datetime.timedelta(days=rng.uniform(0, 90))
                first_seen[partner.id] = min(first_seen.get(partner.id, moment), moment)
                slug, title, price = rng.choice(DEMO_PRODUCTS)
                rows.append(
                    self._demo_event(
                        partner,
                        "page_view",
                        moment,
                        None,
                        "page",
                        url=f"https://shop.example.com/products/{slug}",
                        title=title,
                    )
                )
                if rng.random() < 0.35:
                    quantity = rng.randint(1, 3)
                    properties = {"product": slug, "quantity": quantity, "value": price * quantity}
                    rows.append(
                        self._demo_event(partner, "add_to_cart", moment + datetime.timedelta(minutes=2), properties)
                    )
                    if rng.random() < 0.55:
                        order = {"total": price * quantity, "currency": "VND", "items": quantity}
                        rows.append(
                            self._demo_event(partner, "order_completed", moment + datetime.timedelta(minutes=9), order)
                        )
        rows = [row for row in rows if row["timestamp"] <= now]
        self.env["gobysend.ingest"]._insert_events(workspace, rows)
        return first_seen

    @staticmethod
    def _demo_event(partner, name, moment, properties, kind="event", url=None, title=None):
        return {
            "partner_id": partner.id,
            "name": name,
            "kind": kind,
            "timestamp": moment,
            "properties": properties,
            "message_id": None,
            "url": url,
            "title": title,
            "referrer": None,
        }

    def _demo_messages(self, workspace, rng, partners, now):
        """Two email newsletters and an SMS reminder, sent through the embedded outbox weeks ago,
        with their deliveries, opens and clicks."""
        Channel = self.env["gobysend.channel"]
        email = Channel.create(
            {
                "name": "Newsletter (demo)",
                "workspace_id": workspace.id,
                "channel_type": "email",
                "provider": "outbox",
                "state": "enabled",
                "token_cost": 1,
            }
        )
        sms = Channel.create(
            {
                "name": "SMS reminders (demo)",
                "workspace_id": workspace.id,
                "channel_type": "sms",
                "provider": "outbox",
                "state": "enabled",
                "token_cost": 5,
            }
        )
        sends = [
            (email, 45, "Bộ sưu tập áo dài mới", "Xin chào {{ contact.name }}, bộ sưu tập mới đã có mặt.", 0.45, 0.4),
            (email, 20, "Ưu đãi cuối tháng", "Chào {{ contact.name }}, giảm 20% cho mọi đơn hàng.", 0.5, 0.3),
            (sms, 7, None, "Gio hang cua ban van dang cho: shop.example.com/cart", 0.0, 0.15),
        ]
        Message = self.env["gobysend.message"]
        for channel, days_ago, subject, body, open_rate, click_rate in sends:
            sent_at = now - datetime.timedelta(days=days_ago)
            vals_list = [
                {
                    "workspace_id": workspace.id,
                    "partner_id": partner.id,
                    "channel_id": channel.id,
                    "channel_type": channel.channel_type,
                    "state": "sent",
                    "subject_template": subject,
                    "body_template": body,
                    "subject": subject,
                    "body": body.replace("{{ contact.name }}", partner.name),
                    "token_cost": channel.token_cost,
                    "attempts": 1,
                    "next_attempt_at": sent_at,
                    "sent_at": sent_at,
                    "sending_started_at": sent_at,
                    "handed_over_at": sent_at,
                    "idempotency_key": f"demo-{channel.id}-{days_ago}-{partner.id}",
                }
                for partner in partners
                if channel.channel_type != "sms" or rng.random() < 0.3
            ]
            messages = Message.create(vals_list)
            for message in messages:
                message.provider_message_id = f"outbox-{message.id}"
                moment = sent_at + datetime.timedelta(minutes=rng.randint(1, 30))
                message._apply_receipt("delivered", f"demo-delivered-{message.id}", timestamp=moment)
                if open_rate and rng.random() < open_rate:
                    moment += datetime.timedelta(hours=rng.uniform(0.5, 48))
                    message._apply_receipt("opened", f"demo-opened-{message.id}", timestamp=moment)
                    if rng.random() < click_rate:
                        moment += datetime.timedelta(minutes=rng.randint(1, 20))
                        message._apply_receipt(
                            "clicked",
                            f"demo-clicked-{message.id}",
                            timestamp=moment,
                            url="https://shop.example.com/collections/new",
                        )
                elif not open_rate and rng.random() < click_rate:
                    message._apply_receipt(
                        "clicked", f"demo-clicked-{message.id}", timestamp=moment, url="https://shop.example.com/cart"
                    )

    def _demo_segments(self, workspace, first_seen, now):
        """Build every segment of the workspace, then record its size over the last 30 days as
        its members arrived (by their first activity), so that the size graph has a history."""
        segments = self.env["gobysend.segment"].search([("workspace_id", "=", workspace.id)])
        for segment in segments:
            segment._rebuild(now)
        Snapshot = self.env["gobysend.segment.snapshot"]
        today = fields.Date.context_today(workspace.with_context(tz=workspace.tz), now)
        history = []
        for segment in segments:
            member_ids = segment.membership_ids.filtered(lambda m: not m.left_at).partner_id.ids
            arrivals = sorted(first_seen.get(partner_id, now) for partner_id in member_ids)
            for days_ago in range(30, 0, -1):
                day_end = now - datetime.timedelta(days=days_ago)
                count = sum(1 for moment in arrivals if moment <= day_end)
                history.append(
                    {
                        "segment_id": segment.id,
                        "workspace_id": workspace.id,
                        "date": today - datetime.timedelta(days=days_ago),
                        "member_count": count,
                    }
                )
        Snapshot.create(history)

    def _demo_campaigns(self, workspace):
        """A running campaign that thanks each buyer and asks for feedback three days later, and
        a draft weekend promotion for the paying customers, ready to launch."""
        Channel = self.env["gobysend.channel"]
        email = Channel.search([("workspace_id", "=", workspace.id), ("channel_type", "=", "email")], limit=1)
        Campaign = self.env["gobysend.campaign"]
        thanks = Campaign.create(
            {
                "name": "Cảm ơn và xin ý kiến (demo)",
                "workspace_id": workspace.id,
                "trigger_kind": "event",
                "event_name": "order_completed",
                "reentry": "every_time",
                "step_ids": [
                    (
                        0,
                        0,
                        {
                            "sequence": 1,
                            "kind": "send",
                            "channel_id": email.id,
                            "subject": "Cảm ơn {{ contact.first_name }}!",
                            "body": "<p>Cảm ơn bạn đã đặt hàng {{ event.properties.total }} đ.</p>",
                        },
                    ),
                    (0, 0, {"sequence": 2, "kind": "wait", "timing": "delay", "delay_amount": 3, "delay_unit": "days"}),
                    (
                        0,
                        0,
                        {
                            "sequence": 3,
                            "kind": "send",
                            "channel_id": email.id,
                            "subject": "Bạn thấy sản phẩm thế nào?",
                            "body": "<p>Chào {{ contact.first_name }}, hãy cho chúng tôi biết cảm nhận của bạn.</p>",
                        },
                    ),
                ],
            }
        )
        thanks.action_launch()
        paying = self.env["gobysend.segment"].search(
            [("workspace_id", "=", workspace.id), ("predefined", "=", "paying")], limit=1
        )
        Campaign.create(
            {
                "name": "Khuyến mãi cuối tuần (demo)",
                "workspace_id": workspace.id,
                "trigger_kind": "manual",
                "segment_ids": [(6, 0, paying.ids)],
                "step_ids": [
                    (
                        0,
                        0,
                        {
                            "kind": "send",
                            "channel_id": email.id,
                            "timing": "time_of_day",
                            "time_of_day": 9.0,
                            "on_mon": False,
                            "on_tue": False,
                            "on_wed": False,
                            "on_thu": False,
                            "on_fri": False,
                            "subject": "Cuối tuần giảm 15%",
                            "body": "<p>{{ contact.first_name }} ơi, cuối tuần này giảm 15% cho bạn.</p>",
                        },
                    ),
                ],
            }
        )
