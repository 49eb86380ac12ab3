"""A record-triggered campaign on sales orders, end to end: `sale` installed, a real server, real
commits. Confirming an order over XML-RPC records the campaign's journey in the same commit and
sends nothing; the journey engine then puts the message into the outbox.

`setup/run-tests` prepares a copy of the test database for this module (``GOBYSEND_SALE_DB``);
`sale` is installed into it here, only when these tests run, since installing it costs a few
minutes that no other test needs.
"""

import os
import subprocess
import sys

import pytest

import odoo

INSTALL_TIMEOUT = 1200


@pytest.fixture(scope="module")
def sale_database():
    database = os.environ.get("GOBYSEND_SALE_DB")
    addons_path = os.environ.get("GOBYSEND_ADDONS_PATH")
    if not database or not addons_path:
        pytest.skip("the sales order test needs its prepared database: run it through setup/run-tests")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "odoo",
            "-d",
            database,
            f"--addons-path={addons_path}",
            "-i",
            "sale",
            "--without-demo=all",
            "--stop-after-init",
            "--log-level=warn",
            "--http-port=0",
        ],
        check=True,
        timeout=INSTALL_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )
    return database


@pytest.fixture(scope="module")
def sale_admin(sale_database, start_odoo_server):
    return start_odoo_server(sale_database).admin


@pytest.fixture(scope="module")
def sale_registry(sale_database):
    """The database's registry in this process, to run the journey engine's job as its worker would."""
    test_enable = odoo.tools.config["test_enable"]
    odoo.tools.config["test_enable"] = False  # loading in test mode would run the addons' tests
    try:
        return odoo.modules.registry.Registry(sale_database)
    finally:
        odoo.tools.config["test_enable"] = test_enable


def field_id(admin, model, name):
    (field,) = admin.call("ir.model.fields", "search", [("model", "=", model), ("name", "=", name)])
    return field


def test_confirmed_order_fires_the_campaign_and_its_message_lands_in_the_outbox(sale_admin, sale_registry, unique):
    admin = sale_admin
    workspace_id = admin.call("gobysend.workspace", "create", {"name": f"Shop {unique}"})
    channel_id = admin.call(
        "gobysend.channel",
        "create",
        {"name": "SMS", "workspace_id": workspace_id, "channel_type": "sms", "state": "enabled", "token_cost": 1},
    )
    (order_model,) = admin.call("ir.model", "search", [("model", "=", "sale.order")])
    campaign_id = admin.call(
        "gobysend.campaign",
        "create",
        {
            "name": "Order confirmed",
            "workspace_id": workspace_id,
            "trigger_kind": "on_write",
            "model_id": order_model,
            "partner_path": "partner_id",
            "trigger_field_ids": [(6, 0, [field_id(admin, "sale.order", "state")])],
            "filter_pre_domain": "[('state', 'in', ['draft', 'sent'])]",
            "filter_domain": "[('state', '=', 'sale')]",
            "reentry": "once_per_record",
        },
    )
    admin.call(
        "gobysend.campaign.step",
        "create",
        {
            "campaign_id": campaign_id,
            "kind": "send",
            "channel_id": channel_id,
            "body": "Order {{ record.name }} ({{ old.state }} -> {{ record.state }}) confirmed, {{ contact.name }}",
        },
    )
    admin.call("gobysend.campaign", "action_launch", [campaign_id])

    customer_id = admin.call(
        "res.partner", "create", {"name": f"Customer {unique}", "phone": "+84 912 345 678", "email": f"{unique}@ex.com"}
    )
    product_id = admin.call("product.product", "create", {"name": f"Sofa {unique}", "list_price": 100})
    order_id = admin.call(
        "sale.order",
        "create",
        {"partner_id": customer_id, "order_line": [(0, 0, {"product_id": product_id, "product_uom_qty": 1})]},
    )
    (order,) = admin.call("sale.order", "read", [order_id], ["name", "state"])
    assert order["state"] == "draft"
    assert not admin.call("gobysend.journey", "search", [("campaign_id", "=", campaign_id)])

    admin.call("sale.order", "action_confirm", [order_id])

    # The confirmation's commit noted the order for the campaign, and nothing else: no journey,
    # no contact brought in, no message yet.
    notes = admin.call(
        "gobysend.record.entry",
        "search_read",
        [("campaign_id", "=", campaign_id)],
        fields=["res_model", "res_id", "created", "old_values", "changes"],
    )
    assert [(n["res_model"], n["res_id"], n["created"]) for n in notes] == [("sale.order", order_id, False)]
    assert (notes[0]["old_values"], notes[0]["changes"]) == ({"state": "draft"}, ["state"])
    assert not admin.call("gobysend.journey", "search", [("campaign_id", "=", campaign_id)])
    assert not admin.call("gobysend.message", "search", [("campaign_id", "=", campaign_id)])

    # The journey engine's job, as a worker runs it: the journey starts and its message is queued.
    with sale_registry.cursor() as cr:
        env = odoo.api.Environment(cr, odoo.SUPERUSER_ID, {})
        env["gobysend.journey"]._job_advance()

    journeys = admin.call(
        "gobysend.journey",
        "search_read",
        [("campaign_id", "=", campaign_id)],
        fields=["partner_id", "res_model", "res_id", "state", "trigger_context"],
    )
    assert [(j["partner_id"][0], j["res_model"], j["res_id"]) for j in journeys] == [
        (customer_id, "sale.order", order_id)
    ]
    assert journeys[0]["trigger_context"]["old"] == {"state": "draft"}
    assert journeys[0]["trigger_context"]["changes"] == ["state"]
    assert not admin.call("gobysend.record.entry", "search", [("campaign_id", "=", campaign_id)])
    subscription = admin.call(
        "gobysend.subscription",
        "search_read",
        [("workspace_id", "=", workspace_id), ("partner_id", "=", customer_id)],
        fields=["source", "sms_state"],
    )
    assert [(s["source"], s["sms_state"]) for s in subscription] == [("record", "subscribed")]

    messages = admin.call(
        "gobysend.message",
        "search_read",
        [("campaign_id", "=", campaign_id)],
        fields=["partner_id", "state", "res_model", "res_id", "channel_id"],
    )
    assert [(m["partner_id"][0], m["state"], m["res_model"], m["res_id"]) for m in messages] == [
        (customer_id, "queued", "sale.order", order_id)
    ]
    with sale_registry.cursor() as cr:
        env = odoo.api.Environment(cr, odoo.SUPERUSER_ID, {})
        message = env["gobysend.message"].browse(messages[0]["id"])
        _subject, body = message._render_for(
            message.workspace_id,
            message.partner_id,
            message.channel_type,
            message.subject_template,
            message.body_template,
            message.render_context,
        )
    assert body == f"Order {order['name']} (draft -> sale) confirmed, Customer {unique}"

    # Confirmed once: writing the order again starts nothing more.
    admin.call("sale.order", "write", [order_id], {"note": "Deliver on Monday"})
    assert len(admin.call("gobysend.journey", "search", [("campaign_id", "=", campaign_id)])) == 1
