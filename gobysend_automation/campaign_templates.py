"""Ready campaign templates: complete, editable draft campaigns created in one click.

Each template is data: the campaign's trigger settings and its tree of steps, whose send steps
name a message (``MESSAGES``) written in English and Vietnamese. Creating a template
(``create_campaign``) makes, in the chosen workspace:

- both languages of each message as ``gobysend.message.template`` records (named "… (EN)" and
  "… (VI)"), so that switching a step to the other language is choosing its other template;
- a draft campaign whose send steps carry the message in the language chosen in the gallery;
- what the trigger needs and the workspace lacks (a segment, an attribute), found by name first.

A send step needs a channel: the workspace's first enabled channel of the type, else its first
one in test mode. A workspace without either is refused with a ``UserError`` naming the channel
types to set up first: a campaign created on a channel that cannot send would look ready and
send nothing.
"""

from odoo.exceptions import UserError
from odoo.tools.translate import LazyTranslate

from . import kinds

_lt = LazyTranslate(__name__)

LANGUAGES = [("en", "English"), ("vi", "Tiếng Việt")]

# Message texts: {key: {"channel": type, "name": label, "en": (subject, body), "vi": (subject, body)}}.
# Email bodies are HTML, SMS bodies plain text; both are Jinja2 templates (see ``templating``).
MESSAGES = {
    "welcome": {
        "channel": "email",
        "en": (
            "Welcome, {{ contact.first_name or contact.name }}!",
            "<p>Hello {{ contact.first_name or contact.name }},</p>"
            "<p>Thank you for confirming your subscription to {{ workspace.name }}. "
            "From now on you will be the first to hear about our news and offers.</p>",
        ),
        "vi": (
            "Chào mừng {{ contact.first_name or contact.name }}!",
            "<p>Xin chào {{ contact.first_name or contact.name }},</p>"
            "<p>Cảm ơn bạn đã xác nhận đăng ký nhận tin từ {{ workspace.name }}. "
            "Từ nay bạn sẽ là người đầu tiên biết tin tức và ưu đãi của chúng tôi.</p>",
        ),
    },
    "welcome_tips": {
        "channel": "email",
        "en": (
            "Three tips to get the most out of {{ workspace.name }}",
            "<p>Hello {{ contact.first_name or contact.name }},</p>"
            "<p>Here are a few tips our customers love: save your favourites, follow our new arrivals and "
            "check your inbox for members-only offers.</p>",
        ),
        "vi": (
            "Ba mẹo để tận dụng {{ workspace.name }}",
            "<p>Xin chào {{ contact.first_name or contact.name }},</p>"
            "<p>Một vài mẹo khách hàng của chúng tôi rất thích: lưu sản phẩm yêu thích, theo dõi hàng mới về "
            "và xem hộp thư để nhận ưu đãi dành riêng cho thành viên.</p>",
        ),
    },
    "welcome_offer": {
        "channel": "email",
        "en": (
            "A welcome gift for you: 10% off",
            "<p>Hello {{ contact.first_name or contact.name }},</p>"
            "<p>To thank you for joining us, here is 10% off your next order with the code <b>WELCOME10</b>.</p>",
        ),
        "vi": (
            "Quà chào mừng dành cho bạn: giảm 10%",
            "<p>Xin chào {{ contact.first_name or contact.name }},</p>"
            "<p>Cảm ơn bạn đã đồng hành cùng chúng tôi: giảm 10% cho đơn hàng tiếp theo với mã <b>WELCOME10</b>.</p>",
        ),
    },
    "cart_email": {
        "channel": "email",
        "en": (
            "You left something in your cart",
            "<p>Hello {{ contact.first_name or contact.name }},</p>"
            "<p>Your cart is waiting for you. Complete your order before your items run out.</p>",
        ),
        "vi": (
            "Bạn còn sản phẩm trong giỏ hàng",
            "<p>Xin chào {{ contact.first_name or contact.name }},</p>"
            "<p>Giỏ hàng của bạn vẫn đang chờ. Hãy hoàn tất đơn hàng trước khi sản phẩm hết hàng.</p>",
        ),
    },
    "cart_sms": {
        "channel": "sms",
        "en": ("", "{{ workspace.name }}: your cart is still waiting. Complete your order today!"),
        "vi": ("", "{{ workspace.name }}: giỏ hàng của bạn vẫn đang chờ. Hoàn tất đơn hàng ngay hôm nay!"),
    },
    "feedback": {
        "channel": "email",
        "en": (
            "How was your first order?",
            "<p>Hello {{ contact.first_name or contact.name }},</p>"
            "<p>Thank you for your first purchase. Tell us how it went: your feedback helps us serve you "
            "better.</p>",
        ),
        "vi": (
            "Đơn hàng đầu tiên của bạn thế nào?",
            "<p>Xin chào {{ contact.first_name or contact.name }},</p>"
            "<p>Cảm ơn bạn đã mua hàng lần đầu. Hãy cho chúng tôi biết cảm nhận của bạn để chúng tôi phục vụ "
            "bạn tốt hơn.</p>",
        ),
    },
    "feedback_recommend": {
        "channel": "email",
        "en": (
            "Picked for you",
            "<p>Hello {{ contact.first_name or contact.name }},</p>"
            "<p>Customers who bought what you bought also liked these products. Take a look!</p>",
        ),
        "vi": (
            "Gợi ý dành riêng cho bạn",
            "<p>Xin chào {{ contact.first_name or contact.name }},</p>"
            "<p>Những khách hàng mua sản phẩm giống bạn cũng thích các sản phẩm này. Xem ngay nhé!</p>",
        ),
    },
    "birthday": {
        "channel": "email",
        "en": (
            "Happy birthday, {{ contact.first_name or contact.name }}!",
            "<p>Happy birthday, {{ contact.first_name or contact.name }}!</p>"
            "<p>{{ workspace.name }} wishes you a wonderful day. Enjoy 20% off with the code <b>BIRTHDAY20</b>, "
            "valid for 7 days.</p>",
        ),
        "vi": (
            "Chúc mừng sinh nhật {{ contact.first_name or contact.name }}!",
            "<p>Chúc mừng sinh nhật {{ contact.first_name or contact.name }}!</p>"
            "<p>{{ workspace.name }} chúc bạn một ngày thật vui. Tặng bạn ưu đãi 20% với mã <b>BIRTHDAY20</b>, "
            "có hiệu lực trong 7 ngày.</p>",
        ),
    },
    "cross_sell": {
        "channel": "email",
        "en": (
            "Goes well with your purchase",
            "<p>Hello {{ contact.first_name or contact.name }},</p>"
            "<p>You bought from our {{ event.properties.category }} range: here are accessories and products "
            "that go well with it.</p>",
        ),
        "vi": (
            "Sản phẩm đi kèm món bạn vừa mua",
            "<p>Xin chào {{ contact.first_name or contact.name }},</p>"
            "<p>Bạn vừa mua sản phẩm thuộc nhóm {{ event.properties.category }}: đây là các phụ kiện và sản phẩm "
            "rất hợp đi kèm.</p>",
        ),
    },
    "best_thanks": {
        "channel": "email",
        "en": (
            "Thank you for being one of our best customers",
            "<p>Hello {{ contact.first_name or contact.name }},</p>"
            "<p>You are one of our most loyal customers, and we are grateful. As a thank-you, enjoy a "
            "voucher of 15% with the code <b>VIP15</b>.</p>",
        ),
        "vi": (
            "Cảm ơn bạn, một trong những khách hàng thân thiết nhất",
            "<p>Xin chào {{ contact.first_name or contact.name }},</p>"
            "<p>Bạn là một trong những khách hàng thân thiết nhất của chúng tôi. Để cảm ơn, chúng tôi tặng bạn "
            "phiếu giảm giá 15% với mã <b>VIP15</b>.</p>",
        ),
    },
    "winback": {
        "channel": "email",
        "en": (
            "We miss you, {{ contact.first_name or contact.name }}",
            "<p>Hello {{ contact.first_name or contact.name }},</p>"
            "<p>It has been a while! Come back and see what is new: 15% off your next order with the code "
            "<b>COMEBACK15</b>.</p>",
        ),
        "vi": (
            "Chúng tôi nhớ bạn, {{ contact.first_name or contact.name }}",
            "<p>Xin chào {{ contact.first_name or contact.name }},</p>"
            "<p>Đã lâu không gặp! Quay lại xem có gì mới nhé: giảm 15% cho đơn hàng tiếp theo với mã "
            "<b>COMEBACK15</b>.</p>",
        ),
    },
    "winback_last": {
        "channel": "email",
        "en": (
            "Your discount ends soon",
            "<p>Hello {{ contact.first_name or contact.name }},</p>"
            "<p>Your 15% discount <b>COMEBACK15</b> ends in three days. We would love to see you again.</p>",
        ),
        "vi": (
            "Ưu đãi của bạn sắp hết hạn",
            "<p>Xin chào {{ contact.first_name or contact.name }},</p>"
            "<p>Mã giảm 15% <b>COMEBACK15</b> của bạn sẽ hết hạn sau ba ngày. Rất mong được gặp lại bạn.</p>",
        ),
    },
    "city_offer": {
        "channel": "email",
        "en": (
            "An offer at our store in {{ contact.city }}",
            "<p>Hello {{ contact.first_name or contact.name }},</p>"
            "<p>Visit our store in {{ contact.city }} this week and get a free gift with any purchase.</p>",
        ),
        "vi": (
            "Ưu đãi tại cửa hàng ở {{ contact.city }}",
            "<p>Xin chào {{ contact.first_name or contact.name }},</p>"
            "<p>Ghé cửa hàng của chúng tôi tại {{ contact.city }} trong tuần này để nhận quà tặng khi mua "
            "hàng.</p>",
        ),
    },
    "online_offer": {
        "channel": "email",
        "en": (
            "An offer for you, online",
            "<p>Hello {{ contact.first_name or contact.name }},</p>"
            "<p>No store near you? Order online this week and delivery is on us.</p>",
        ),
        "vi": (
            "Ưu đãi trực tuyến dành cho bạn",
            "<p>Xin chào {{ contact.first_name or contact.name }},</p>"
            "<p>Chưa có cửa hàng gần bạn? Đặt hàng trực tuyến trong tuần này để được miễn phí giao hàng.</p>",
        ),
    },
    "lead_nurture": {
        "channel": "email",
        "en": (
            "Thank you for your interest",
            "<p>Hello {{ contact.first_name or contact.name }},</p>"
            "<p>Thank you for your interest in {{ workspace.name }}. One of our advisers will contact you "
            "shortly to understand your needs.</p>",
        ),
        "vi": (
            "Cảm ơn bạn đã quan tâm",
            "<p>Xin chào {{ contact.first_name or contact.name }},</p>"
            "<p>Cảm ơn bạn đã quan tâm đến {{ workspace.name }}. Chuyên viên tư vấn của chúng tôi sẽ sớm liên "
            "hệ để tìm hiểu nhu cầu của bạn.</p>",
        ),
    },
    "lead_won": {
        "channel": "email",
        "en": (
            "Welcome aboard!",
            "<p>Hello {{ contact.first_name or contact.name }},</p>"
            "<p>Thank you for your order. Your adviser stays at your side: reply to this email at any time.</p>",
        ),
        "vi": (
            "Chào mừng bạn trở thành khách hàng!",
            "<p>Xin chào {{ contact.first_name or contact.name }},</p>"
            "<p>Cảm ơn bạn đã đặt hàng. Chuyên viên tư vấn luôn đồng hành cùng bạn: hãy trả lời email này bất cứ "
            "lúc nào.</p>",
        ),
    },
    "order_status": {
        "channel": "sms",
        "en": (
            "",
            "{{ workspace.name }}: your order {{ record.name }} is now {{ record.state }}. Thank you!",
        ),
        "vi": (
            "",
            "{{ workspace.name }}: đơn hàng {{ record.name }} của bạn đã chuyển sang trạng thái "
            "{{ record.state }}. Cảm ơn bạn!",
        ),
    },
    "tier_up": {
        "channel": "email",
        "en": (
            "Congratulations, you reached the Gold tier!",
            "<p>Hello {{ contact.first_name or contact.name }},</p>"
            "<p>You are now a Gold member: free delivery, early access to sales and a yearly gift are yours.</p>",
        ),
        "vi": (
            "Chúc mừng bạn đã lên hạng Vàng!",
            "<p>Xin chào {{ contact.first_name or contact.name }},</p>"
            "<p>Bạn đã trở thành thành viên hạng Vàng: miễn phí giao hàng, mua sớm trong các đợt giảm giá và quà "
            "tặng hằng năm.</p>",
        ),
    },
    "tier_up_sms": {
        "channel": "sms",
        "en": ("", "{{ workspace.name }}: congratulations, you are now a Gold member! Enjoy free delivery."),
        "vi": ("", "{{ workspace.name }}: chúc mừng bạn đã lên hạng Vàng! Tận hưởng miễn phí giao hàng."),
    },
}

# The message templates' names, by message key (translated in the user's language).
MESSAGE_NAMES = {
    "welcome": _lt("Welcome"),
    "welcome_tips": _lt("Welcome: tips"),
    "welcome_offer": _lt("Welcome: offer"),
    "cart_email": _lt("Abandoned cart: email"),
    "cart_sms": _lt("Abandoned cart: SMS"),
    "feedback": _lt("First purchase: feedback"),
    "feedback_recommend": _lt("First purchase: recommendations"),
    "birthday": _lt("Happy birthday"),
    "cross_sell": _lt("Cross-sell by category"),
    "best_thanks": _lt("Best customers: thank-you voucher"),
    "winback": _lt("Win-back"),
    "winback_last": _lt("Win-back: reminder"),
    "city_offer": _lt("Offer in the contact's city"),
    "online_offer": _lt("Offer online"),
    "lead_nurture": _lt("Lead: thank you for your interest"),
    "lead_won": _lt("Lead won: welcome"),
    "order_status": _lt("Order status update"),
    "tier_up": _lt("Loyalty tier up"),
    "tier_up_sms": _lt("Loyalty tier up: SMS"),
}


def send(message, **values):
    return dict(values, kind="send", message=message)


def wait(amount, unit="days"):
    return {"kind": "wait", "timing": "delay", "delay_amount": amount, "delay_unit": unit}


class CampaignTemplate:
    """One ready template. ``campaign(builder)`` returns the campaign's trigger values and
    ``steps(builder)`` its tree: a list of step values, a send step naming its ``message``, a
    step with branches carrying ``branches`` = {branch: [steps]}."""

    key = None
    name = None
    description = None
    icon = "fa-envelope"
    sequence = 10
    # Channel types the send steps use.
    channel_types = ("email",)
    # The trigger kind, which must be registered for the template to be created.
    trigger_kind = "event"
    # The gallery lets the user choose the segment that starts the campaign.
    segment_choice = False

    def available(self, env):
        """Whether the template is offered in this database (e.g. only with Sales installed)."""
        return True

    def campaign(self, builder):
        return {}

    def steps(self, builder):
        raise NotImplementedError


TEMPLATES = {}


def template(cls):
    TEMPLATES[cls.key] = cls()
    return cls


@template
class WelcomeSeries(CampaignTemplate):
    key = "welcome"
    name = _lt("Welcome series with double opt-in")
    description = _lt(
        "The workspace's double opt-in email asks new contacts to confirm their address; once they do, they "
        "enter the “Confirmed email subscribers” segment and get a welcome email, tips two days later and an "
        "offer a week after the welcome."
    )
    icon = "fa-hand-peace-o"
    sequence = 10
    trigger_kind = "segment"

    def campaign(self, builder):
        segment = builder.segment(
            builder.env._("Confirmed email subscribers"),
            [{"kind": "consent", "consent_channel": "email", "consent_state": "subscribed"}],
        )
        return {"trigger_segment_id": segment.id, "segment_transition": "entered"}

    def steps(self, builder):
        return [send("welcome"), wait(2), send("welcome_tips"), wait(5), send("welcome_offer")]


@template
class AbandonedCart(CampaignTemplate):
    key = "abandoned_cart"
    name = _lt("Abandoned cart")
    description = _lt(
        "When a contact updates a cart (event cart_updated) and has not paid (event order_paid) within an hour, "
        "an email reminds them, and an SMS a day later. Paying counts as the conversion and ends the journey."
    )
    icon = "fa-shopping-cart"
    sequence = 20
    channel_types = ("email", "sms")

    def campaign(self, builder):
        return {"event_name": "cart_updated", "goal_event_name": "order_paid", "reentry": "once_at_a_time"}

    def steps(self, builder):
        return [
            {
                "kind": "wait_event",
                "event_name": "order_paid",
                "delay_amount": 1,
                "delay_unit": "hours",
                "branches": {
                    "happened": [{"kind": "exit", "name": builder.env._("Paid")}],
                    "timed_out": [send("cart_email"), wait(24, "hours"), send("cart_sms")],
                },
            }
        ]


@template
class FirstPurchaseFeedback(CampaignTemplate):
    key = "first_purchase"
    name = _lt("First-purchase feedback")
    description = _lt(
        "After a contact's first paid order (event order_paid, once per contact), asks for feedback three days "
        "later and suggests related products a week after that."
    )
    icon = "fa-comments"
    sequence = 30

    def campaign(self, builder):
        return {"event_name": "order_paid", "reentry": "once"}

    def steps(self, builder):
        return [wait(3), send("feedback"), wait(7), send("feedback_recommend")]


@template
class HappyBirthday(CampaignTemplate):
    key = "birthday"
    name = _lt("Happy birthday")
    description = _lt(
        "Every day at 09:00 in the workspace's time zone, greets the contacts whose birthday it is, with a "
        "discount code, each year."
    )
    icon = "fa-birthday-cake"
    sequence = 40
    trigger_kind = "periodic"

    def campaign(self, builder):
        field = builder.field_id("res.partner", "gobysend_birthday")
        return {
            "period": "daily",
            "run_time": 9.0,
            "date_source": "field",
            "date_field_id": field,
            "date_offset_days": 0,
            "reentry": "every_time",
        }

    def steps(self, builder):
        return [send("birthday")]


@template
class CrossSell(CampaignTemplate):
    key = "cross_sell"
    name = _lt("Upsell / cross-sell by purchased category")
    description = _lt(
        "When a contact pays an order of a category (event order_paid with the property category, here "
        "“electronics”: change it to yours), suggests matching products two days later, unless they buy again."
    )
    icon = "fa-cubes"
    sequence = 50

    def campaign(self, builder):
        return {
            "event_name": "order_paid",
            "event_filter": 'category = "electronics"',
            "reentry": "once_at_a_time",
            "goal_event_name": "order_paid",
        }

    def steps(self, builder):
        return [wait(2), send("cross_sell")]


@template
class BestCustomers(CampaignTemplate):
    key = "best_customers"
    name = _lt("Best customers")
    description = _lt(
        "When a contact enters the “Top spenders” segment (the attribute total_spent above 1000; created when "
        "missing, or choose your own), thanks them with a voucher and tags them VIP."
    )
    icon = "fa-trophy"
    sequence = 60
    trigger_kind = "segment"
    segment_choice = True

    def campaign(self, builder):
        segment = builder.chosen_segment
        if not segment:
            attribute = builder.attribute("total_spent", "number")
            segment = builder.segment(
                builder.env._("Top spenders"),
                [{"kind": "attribute", "attribute_id": attribute.id, "attribute_operator": "gt", "value": "1000"}],
            )
        return {"trigger_segment_id": segment.id, "segment_transition": "entered"}

    def steps(self, builder):
        return [send("best_thanks"), {"kind": "tag", "tag_action": "add", "tag_id": builder.tag("VIP").id}]


@template
class WinBack(CampaignTemplate):
    key = "win_back"
    name = _lt("Win-back after 90 days without activity")
    description = _lt(
        "When a contact enters the segment “Not seen for 90 days”, offers a discount, and reminds them four "
        "days later unless they ordered (event order_paid) in between."
    )
    icon = "fa-undo"
    sequence = 70
    trigger_kind = "segment"
    segment_choice = True

    def campaign(self, builder):
        segment = builder.chosen_segment or builder.predefined_segment("not_seen")
        return {
            "trigger_segment_id": segment.id,
            "segment_transition": "entered",
            "goal_event_name": "order_paid",
            "reentry": "once_at_a_time",
        }

    def steps(self, builder):
        return [
            send("winback"),
            {
                "kind": "wait_event",
                "event_name": "order_paid",
                "delay_amount": 4,
                "delay_unit": "days",
                "branches": {"happened": [{"kind": "exit"}], "timed_out": [send("winback_last")]},
            },
        ]


@template
class CityOffer(CampaignTemplate):
    key = "city_offer"
    name = _lt("Geolocation offer by city")
    description = _lt(
        "Launched by you over the audience you choose: contacts living in the city of your store (here Ho Chi "
        "Minh City: change the condition to yours) get an in-store offer, the others an online offer."
    )
    icon = "fa-map-marker"
    sequence = 80
    trigger_kind = "manual"

    def steps(self, builder):
        return [
            {
                "kind": "condition",
                "condition_kind": "contact",
                "partner_domain": "[('city', 'ilike', 'Ho Chi Minh')]",
                "branches": {"yes": [send("city_offer")], "no": [send("online_offer")]},
            }
        ]


@template
class LeadLifecycle(CampaignTemplate):
    key = "lead_lifecycle"
    name = _lt("MQL → SQL → customer")
    description = _lt(
        "When a CRM lead changes stage, thanks the contact, moves the lead to the qualified stage two days "
        "later with a call for the salesperson, and once the contact pays (event order_paid, within 30 days) "
        "marks it won and welcomes them; otherwise reminds the salesperson to follow up."
    )
    icon = "fa-line-chart"
    sequence = 90
    trigger_kind = "on_write"

    def campaign(self, builder):
        env = builder.env
        return {
            "model_id": env["ir.model"]._get_id("crm.lead"),
            "partner_path": "partner_id",
            "email_path": "email_from",
            "trigger_field_ids": [(6, 0, [builder.field_id("crm.lead", "stage_id")])],
            "reentry": "once_per_record",
            "goal_event_name": False,
        }

    def steps(self, builder):
        env = builder.env
        stages = env["crm.stage"].search([("is_won", "=", False)], order="sequence, id")
        qualified = stages[1:2] or stages[:1]
        won = env["crm.stage"].search([("is_won", "=", True)], order="sequence, id", limit=1)
        if not qualified or not won:
            raise UserError(env._("The CRM has no stages to move leads through: create them first."))
        call = env.ref("mail.mail_activity_data_call")
        todo = env.ref("mail.mail_activity_data_todo")
        return [
            send("lead_nurture"),
            wait(2),
            {"kind": "lead_stage", "lead_stage_id": qualified.id},
            {
                "kind": "activity",
                "activity_type_id": call.id,
                "activity_summary": env._("Call the qualified lead"),
                "activity_days": 1,
                "activity_user": "salesperson",
                "activity_on": "record",
            },
            {
                "kind": "wait_event",
                "event_name": "order_paid",
                "delay_amount": 30,
                "delay_unit": "days",
                "branches": {
                    "happened": [{"kind": "lead_stage", "lead_stage_id": won.id}, send("lead_won")],
                    "timed_out": [
                        {
                            "kind": "activity",
                            "activity_type_id": todo.id,
                            "activity_summary": env._("Follow up the proposal"),
                            "activity_days": 0,
                            "activity_user": "salesperson",
                            "activity_on": "record",
                        }
                    ],
                },
            },
        ]


@template
class OrderStatus(CampaignTemplate):
    key = "order_status"
    name = _lt("Order status updates")
    description = _lt(
        "When a sales order's status changes (quotation sent, confirmed, cancelled), texts the customer its new "
        "status by SMS. Offered when Sales is installed."
    )
    icon = "fa-truck"
    sequence = 100
    channel_types = ("sms",)
    trigger_kind = "on_write"

    def available(self, env):
        return "sale.order" in env

    def campaign(self, builder):
        env = builder.env
        return {
            "model_id": env["ir.model"]._get_id("sale.order"),
            "partner_path": "partner_id",
            "trigger_field_ids": [(6, 0, [builder.field_id("sale.order", "state")])],
            "reentry": "every_time",
        }

    def steps(self, builder):
        return [send("order_status")]


@template
class LoyaltyTierUp(CampaignTemplate):
    key = "tier_up"
    name = _lt("Loyalty tier up")
    description = _lt(
        "When a contact's attribute loyalty_tier changes to gold (they enter the “Gold tier” segment), "
        "congratulates them by email and, when they have a phone number, by SMS."
    )
    icon = "fa-star"
    sequence = 110
    channel_types = ("email", "sms")
    trigger_kind = "segment"

    def campaign(self, builder):
        attribute = builder.attribute("loyalty_tier", "string")
        segment = builder.segment(
            builder.env._("Gold tier"),
            [{"kind": "attribute", "attribute_id": attribute.id, "attribute_operator": "eq", "value": "gold"}],
        )
        return {"trigger_segment_id": segment.id, "segment_transition": "entered", "reentry": "once_at_a_time"}

    def steps(self, builder):
        return [
            send("tier_up"),
            {
                "kind": "condition",
                "condition_kind": "contact",
                "partner_domain": "[('phone', '!=', False)]",
                "branches": {"yes": [send("tier_up_sms")], "no": []},
            },
        ]


def available_templates(env):
    return sorted((t for t in TEMPLATES.values() if t.available(env)), key=lambda t: t.sequence)


class Builder:
    """Creates one template's campaign in a workspace, in a language."""

    def __init__(self, env, workspace, lang, chosen_segment=None):
        self.env = env
        self.workspace = workspace
        self.lang = lang
        self.chosen_segment = chosen_segment
        self.channels = {}
        self.message_templates = {}

    # What the trigger needs -----------------------------------------------------------------

    def segment(self, name, conditions):
        Segment = self.env["gobysend.segment"]
        segment = Segment.search([("workspace_id", "=", self.workspace.id), ("name", "=", name)], limit=1)
        return segment or Segment.create(
            {
                "name": name,
                "workspace_id": self.workspace.id,
                "condition_ids": [(0, 0, condition) for condition in conditions],
            }
        )

    def predefined_segment(self, predefined):
        Segment = self.env["gobysend.segment"].with_context(active_test=False)
        domain = [("workspace_id", "=", self.workspace.id), ("predefined", "=", predefined)]
        segment = Segment.search(domain, limit=1)
        if not segment:
            Segment._create_predefined(self.workspace)
            segment = Segment.search(domain, limit=1)
        return segment

    def attribute(self, key, value_type):
        Attribute = self.env["gobysend.attribute"]
        attribute = Attribute.search([("workspace_id", "=", self.workspace.id), ("key", "=", key)], limit=1)
        return attribute or Attribute.create({"workspace_id": self.workspace.id, "key": key, "value_type": value_type})

    def field_id(self, model, name):
        # sudo: the id of a field the template names (fixed, no user input); marketing managers
        # may not read the fields' metadata.
        return self.env["ir.model.fields"].sudo()._get(model, name).id

    def tag(self, name):
        # sudo: a contact tag of the template's fixed name (no user input), found or created;
        # marketing managers may not create tags, and a tag reaches no contact by itself.
        Tag = self.env["res.partner.category"].sudo()
        return Tag.search([("name", "=", name)], limit=1) or Tag.create({"name": name})

    # Channels and messages --------------------------------------------------------------------

    def channel(self, channel_type):
        return self.channels[channel_type]

    def find_channels(self, channel_types):
        """The channel of each type the templates' send steps use, or a ``UserError`` naming the
        channel types the workspace lacks."""
        Channel = self.env["gobysend.channel"]
        missing = []
        labels = dict(Channel._fields["channel_type"]._description_selection(self.env))
        for channel_type in channel_types:
            found = Channel.search(
                [
                    ("workspace_id", "=", self.workspace.id),
                    ("channel_type", "=", channel_type),
                    ("state", "in", ("enabled", "test")),
                ]
            ).sorted(lambda channel: (channel.state != "enabled", channel.sequence, channel.id))
            if found:
                self.channels[channel_type] = found[0]
            else:
                missing.append(labels.get(channel_type, channel_type))
        if missing:
            raise UserError(
                self.env._(
                    "Workspace “%(workspace)s” has no %(channels)s channel that can send (enabled or in test): "
                    "create one under Configuration › Channels first, then create the campaign from the template.",
                    workspace=self.workspace.display_name,
                    channels=", ".join(missing),
                )
            )

    def message_template(self, key):
        """The message's template in the chosen language, created with its other language."""
        if key not in self.message_templates:
            message = MESSAGES[key]
            name = str(MESSAGE_NAMES[key])
            created = self.env["gobysend.message.template"].create(
                [
                    {
                        "name": f"{name} ({lang.upper()})",
                        "workspace_id": self.workspace.id,
                        "channel_type": message["channel"],
                        "subject": message[lang][0] or False,
                        "body": message[lang][1],
                    }
                    for lang, _label in LANGUAGES
                ]
            )
            self.message_templates[key] = created[[lang for lang, _label in LANGUAGES].index(self.lang)]
        return self.message_templates[key]

    # The campaign ----------------------------------------------------------------------------

    def create(self, tmpl):
        if tmpl.trigger_kind not in kinds.TRIGGERS:
            raise UserError(
                self.env._(
                    "The template “%(template)s” needs the trigger “%(trigger)s”, which this installation does "
                    "not have yet.",
                    template=tmpl.name,
                    trigger=tmpl.trigger_kind,
                )
            )
        if not tmpl.available(self.env):
            raise UserError(self.env._("The template “%(template)s” is not available here.", template=tmpl.name))
        self.find_channels(tmpl.channel_types)
        values = {
            "name": str(tmpl.name),
            "description": str(tmpl.description),
            "workspace_id": self.workspace.id,
            "trigger_kind": tmpl.trigger_kind,
        }
        values.update(tmpl.campaign(self))
        campaign = self.env["gobysend.campaign"].create(values)
        self._create_steps(campaign, tmpl.steps(self))
        return campaign

    def _create_steps(self, campaign, specs, parent=None, branch=False):
        Step = self.env["gobysend.campaign.step"]
        for sequence, spec in enumerate(specs, start=1):
            values = dict(spec)
            branches = values.pop("branches", {})
            message = values.pop("message", None)
            if message:
                template_record = self.message_template(message)
                values.update(
                    channel_id=self.channel(MESSAGES[message]["channel"]).id,
                    template_id=template_record.id,
                    subject=template_record.subject,
                    body=template_record.body,
                    name=str(MESSAGE_NAMES[message]),
                )
            values.update(
                campaign_id=campaign.id,
                parent_id=parent.id if parent else False,
                branch=branch,
                sequence=sequence * 10,
            )
            step = Step.create(values)
            for branch_name, children in branches.items():
                self._create_steps(campaign, children, step, branch_name)


def create_campaign(env, key, workspace, lang="en", segment=None):
    """Create the template ``key``'s campaign (a draft) in ``workspace``, its messages in ``lang``."""
    tmpl = TEMPLATES.get(key)
    if not tmpl:
        raise UserError(env._("There is no campaign template “%(key)s”.", key=key))
    if lang not in dict(LANGUAGES):
        raise UserError(env._("Choose the language of the messages: English or Vietnamese."))
    return Builder(env, workspace, lang, chosen_segment=segment).create(tmpl)
