"""Exporting a segment's members, with their attributes, through Odoo's own export."""

import csv
import io
import json

import openpyxl

from odoo import http
from odoo.tests import tagged

from .common import GobysendHttpCase


@tagged("post_install", "-at_install")
class TestSegmentExport(GobysendHttpCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        identify = cls.env["gobysend.ingest"].identify
        cls.lan = identify(
            cls.workspace_a,
            {
                "id": "C-1",
                "email": "lan@example.com",
                "attributes": {"name": "Lan", "city": "Huế", "tier": "gold", "points": 12},
            },
        )["contact_id"]
        cls.minh = identify(
            cls.workspace_a, {"id": "C-2", "email": "minh@example.com", "attributes": {"name": "Minh", "city": "Huế"}}
        )["contact_id"]
        cls.outside = identify(
            cls.workspace_a, {"id": "C-3", "email": "an@example.com", "attributes": {"name": "An", "city": "Vinh"}}
        )["contact_id"]
        # Lan is a contact of workspace B as well, with B's own attributes, which A's export leaves out.
        cls.env["gobysend.subscription"].create({"workspace_id": cls.workspace_b.id, "partner_id": cls.lan})
        identify(cls.workspace_b, {"email": "lan@example.com", "attributes": {"secret_b": "x"}})
        cls.segment = cls.env["gobysend.segment"].create(
            {
                "name": "Huế",
                "workspace_id": cls.workspace_a.id,
                "condition_ids": [(0, 0, {"kind": "domain", "partner_domain": "[('city', '=', 'Huế')]"})],
            }
        )
        cls.segment._rebuild()
        # Odoo's own right to export, which an administrator gives whom they choose.
        cls.user_a.groups_id |= cls.env.ref("base.group_allow_export")

    def members_action(self):
        return self.segment.with_user(self.user_a).action_export_members()

    def test_the_members_list_exports_contact_fields_and_attributes(self):
        action = self.members_action()
        self.assertEqual(action["res_model"], "res.partner")
        partners = (
            self.env["res.partner"]
            .with_user(self.user_a)
            .with_context(**action["context"])
            .search(action["domain"], order="name")
        )
        self.assertEqual(partners.ids, [self.lan, self.minh])
        rows = partners.export_data(["name", "email", "city", "gobysend_attributes"])["datas"]
        self.assertEqual(
            rows,
            [
                ["Lan", "lan@example.com", "Huế", "points: 12; tier: gold"],
                ["Minh", "minh@example.com", "Huế", ""],
            ],
        )

    def test_members_who_left_are_not_exported(self):
        partner = self.env["res.partner"].browse(self.minh)
        partner.city = "Vinh"
        self.segment._rebuild()
        action = self.members_action()
        self.assertEqual(self.env["res.partner"].with_user(self.user_a).search(action["domain"]).ids, [self.lan])

    def test_odoos_export_downloads_the_members_as_xlsx_and_csv(self):
        self.authenticate("gbs_user_a", "gbs_user_a")
        action = self.members_action()
        fields = [
            {"name": "name", "label": "Name"},
            {"name": "email", "label": "Email"},
            {"name": "gobysend_attributes", "label": "Attributes"},
        ]
        data = {
            "model": "res.partner",
            "fields": fields,
            "ids": False,
            "domain": action["domain"],
            "import_compat": False,
            "context": action["context"],
        }
        payload = {"data": json.dumps(data), "csrf_token": http.Request.csrf_token(self)}
        response = self.url_open("/web/export/xlsx", data=payload)
        self.assertEqual(response.status_code, 200, response.text[:500])
        sheet = openpyxl.load_workbook(io.BytesIO(response.content)).active
        rows = sorted(list(row) for row in sheet.iter_rows(min_row=2, values_only=True))
        self.assertEqual(
            rows, [["Lan", "lan@example.com", "points: 12; tier: gold"], ["Minh", "minh@example.com", None]]
        )
        response = self.url_open("/web/export/csv", data=payload)
        self.assertEqual(response.status_code, 200, response.text[:500])
        rows = sorted(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
        self.assertEqual(
            rows,
            [
                ["Lan", "lan@example.com", "points: 12; tier: gold"],
                ["Minh", "minh@example.com", ""],
                ["Name", "Email", "Attributes"],
            ],
        )
