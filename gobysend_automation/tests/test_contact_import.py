"""Importing a customer list from the UI: the wizard, the background job, the rejected rows."""

import base64
import csv
import datetime
import importlib.util
import io
import os

import openpyxl

from odoo.exceptions import AccessError, UserError
from odoo.tests import tagged

from odoo.addons.queue_job.job import Job

from ..models.gobysend_contact_import import DEFAULT_MAX_IMPORT_BYTES, MAX_BYTES_PARAMETER
from .common import GobysendCase

HEADER = "customer_id,email,phone,name,tier,points,vip,signup,email_consent\n"


@tagged("post_install", "-at_install")
class TestContactImport(GobysendCase):
    def wizard(self, content, file_name="customers.csv", user=None, workspace=None):
        return (
            self.env["gobysend.contact.import.wizard"]
            .with_user(user or self.user_a)
            .create(
                {
                    "workspace_id": (workspace or self.workspace_a).id,
                    "file": base64.b64encode(content),
                    "file_name": file_name,
                }
            )
        )

    def run_import(self, wizard, chunk_rows=None):
        """Start the import from the wizard and run its background jobs to the end, one after
        the other; return the import and the number of its chunks."""
        action = wizard.action_import()
        record = self.env["gobysend.contact.import"].browse(action["res_id"])
        self.assertEqual(len(self.pending_import_jobs()), 1, "the import runs in the background")
        self.assertEqual(record.state, "queued")
        if chunk_rows:
            record.chunk_rows = chunk_rows
        return record, self.run_import_jobs()

    def subscription(self, external_id):
        return self.env["gobysend.subscription"].search(
            [("workspace_id", "=", self.workspace_a.id), ("external_id", "=", external_id)]
        )

    def value(self, partner, key):
        return self.env["gobysend.attribute.value"].search(
            [("partner_id", "=", partner.id), ("attribute_id.key", "=", key)]
        )

    def rejections(self, record):
        return [(rejection.row_number, rejection.reason) for rejection in record.rejection_ids]

    def test_a_csv_file_is_mapped_previewed_and_imported_in_the_background(self):
        content = (
            HEADER
            + "C-1,lan@example.com,0912 345 678,Nguyễn Lan,gold,1200,yes,1990-04-30,yes\n"
            + "C-2,minh@example.com,,Minh,silver,30,no,,no\n"
            + "C-3,not-an-email,,Bad Email,gold,1,no,,\n"
            + "C-4,,12345,Bad Phone,gold,1,no,,\n"
            + "C-5,hoa@example.com,,Bad Points,gold,lots,no,,\n"
            + "C-6,tuan@example.com,,Bad Flag,gold,1,maybe,,\n"
            + "C-7,LAN@example.com,,Duplicate,gold,1,no,,\n"
            + "\n"
            + "C-8,an@example.com,,Bad Consent,gold,1,no,,perhaps\n"
            + "C-9,binh@example.com,,Bad Date,gold,1,no,30/04/1990,\n"
        ).encode()
        wizard = self.wizard(content)
        wizard.action_read_columns()
        mapping = {
            line.header: (line.target, line.attribute_key, line.attribute_type, line.channel)
            for line in wizard.column_ids
        }
        self.assertEqual(mapping["customer_id"][0], "id")
        self.assertEqual(mapping["email"][0], "email")
        self.assertEqual(mapping["phone"][0], "phone")
        self.assertEqual(mapping["name"][0], "name")
        self.assertEqual(mapping["tier"][:3], ("attribute", "tier", "string"))
        # "maybe" among vip's first values makes it text, as "30/04/1990" does signup: the user
        # says what they are.
        self.assertEqual(mapping["vip"][:3], ("attribute", "vip", "string"))
        self.assertEqual(mapping["signup"][:3], ("attribute", "signup", "string"))
        self.assertEqual(mapping["email_consent"], ("consent", False, "string", "email"))
        # So is points, one of whose values is not a number.
        self.assertEqual(mapping["points"][:3], ("attribute", "points", "string"))
        wizard.column_ids.filtered(lambda line: line.header == "points").attribute_type = "number"
        wizard.column_ids.filtered(lambda line: line.header == "vip").attribute_type = "boolean"
        wizard.column_ids.filtered(lambda line: line.header == "signup").attribute_type = "date"
        preview = str(wizard.preview_html)
        self.assertIn("not-an-email", preview)
        self.assertIn("is not a valid email address", preview)
        self.assertIn("The same contact as row 2", preview)
        self.assertIn("is not yes or no", preview)

        record, chunks = self.run_import(wizard)
        self.assertEqual(chunks, 1)
        self.assertRecordValues(
            record,
            [
                {
                    "state": "done",
                    "rows_total": 9,
                    "rows_done": 9,
                    "rows_rejected": 7,
                    "contacts_created": 2,
                    "contacts_updated": 0,
                }
            ],
        )
        reasons = dict(self.rejections(record))
        self.assertEqual(sorted(reasons), [4, 5, 6, 7, 8, 10, 11])
        self.assertIn("email: “not-an-email” is not a valid email address", reasons[4])
        self.assertIn("phone:", reasons[5])
        self.assertIn("points: 'lots' is not a valid number value", reasons[6])
        self.assertIn("vip: “maybe” is not yes or no", reasons[7])
        self.assertIn("The same contact as row 2", reasons[8])
        self.assertIn("email_consent: “perhaps” is not a consent answer", reasons[10])
        self.assertIn("signup: '30/04/1990' is not a valid date value", reasons[11])

        lan = self.subscription("C-1")
        self.assertRecordValues(
            lan.partner_id, [{"name": "Nguyễn Lan", "email": "lan@example.com", "phone": "+84912345678"}]
        )
        self.assertEqual(self.value(lan.partner_id, "points").value_number, 1200)
        self.assertIs(self.value(lan.partner_id, "vip").value_boolean, True)
        self.assertEqual(self.value(lan.partner_id, "signup").value_date, datetime.date(1990, 4, 30))
        self.assertEqual(lan.source, "import")
        # Consent to email, and so to every channel: one record proves them all.
        consent = lan.consent_log_ids
        self.assertEqual((consent.channel, consent.state, consent.source), ("all", "subscribed", "import"))
        self.assertIn("customers.csv", consent.note)
        self.assertIn(str(record.create_date.date()), consent.note)
        minh = self.subscription("C-2")
        self.assertEqual(minh.email_state, "unsubscribed")
        # No to email alone: each channel has its own record.
        self.assertEqual(
            sorted((log.channel, log.state) for log in minh.consent_log_ids),
            [("email", "unsubscribed"), ("push", "subscribed"), ("sms", "subscribed"), ("zalo", "subscribed")],
        )
        self.assertEqual(
            self.env["res.partner"].search_count([("email_normalized", "=", "lan@example.com")]),
            1,
            "the duplicate row is not stored a second time",
        )
        for external_id in ("C-3", "C-4", "C-5", "C-6", "C-7", "C-8", "C-9"):
            self.assertFalse(self.subscription(external_id), external_id)

        # The rejected rows download as CSV: row number, reason, then the row itself.
        action = record.action_download_rejections()
        attachment = self.env["ir.attachment"].browse(int(action["url"].split("/")[3].split("?")[0]))
        rows = list(csv.reader(io.StringIO(attachment.raw.decode("utf-8-sig"))))
        self.assertEqual(rows[0][:4], ["Row", "Reason", "customer_id", "email"])
        self.assertEqual([row[0] for row in rows[1:]], ["4", "5", "6", "7", "8", "10", "11"])
        self.assertEqual(rows[1][2:4], ["C-3", "not-an-email"])

        # The same file again: every good row updates its contact, nothing is created twice.
        again, _chunks = self.run_import(self.wizard(content).with_context())
        self.assertEqual((again.contacts_created, again.contacts_updated), (0, 2))
        self.assertEqual(
            self.env["gobysend.subscription"].search_count([("workspace_id", "=", self.workspace_a.id)]), 2
        )

    def test_a_large_file_is_imported_in_chunks_that_resume_where_the_last_ended(self):
        rows = [
            f'C-{number},c{number}@example.com,,"Customer, no. {number}",gold,{number},no,,yes\n'
            for number in range(1, 8)
        ]
        # A duplicate of row 2 in a later chunk, and a quoted line break inside a cell.
        rows.append("C-1,c1@example.com,,Again,gold,1,no,,yes\n")
        rows.append('C-9,c9@example.com,,"Two\nlines",gold,9,no,,yes\n')
        wizard = self.wizard((HEADER + "".join(rows)).encode())
        wizard.action_read_columns()
        record, chunks = self.run_import(wizard, chunk_rows=3)
        self.assertEqual(chunks, 3)
        self.assertRecordValues(record, [{"state": "done", "rows_done": 9, "rows_rejected": 1, "contacts_created": 8}])
        self.assertEqual(self.rejections(record), [(9, "The same contact as row 2: the file names each contact once.")])
        self.assertEqual(self.subscription("C-9").partner_id.name, "Two\nlines")
        self.assertEqual(self.subscription("C-5").partner_id.name, "Customer, no. 5")
        self.env.cr.execute("SELECT count(*) FROM gobysend_contact_claim WHERE import_id = %s", (record.id,))
        self.assertEqual(self.env.cr.fetchone()[0], 0, "the duplicate check's claims go once the import ends")

    def test_the_claims_of_an_import_still_running_outlive_the_daily_purge(self):
        rows = [f"P-{number},p{number}@example.com,,Person {number},gold,{number},no,,yes\n" for number in range(1, 5)]
        rows.append("P-9,p1@example.com,,Again,gold,1,no,,yes\n")  # row 6 names the contact of row 2
        wizard = self.wizard((HEADER + "".join(rows)).encode())
        wizard.action_read_columns()
        record = self.env["gobysend.contact.import"].browse(wizard.action_import()["res_id"])
        record.chunk_rows = 2
        for _job in range(2):  # the plan, then the first chunk: rows 2 and 3
            job = self.pending_import_jobs()[0]
            Job.load(self.env, job.uuid).perform()
            job.state = "done"
        self.assertEqual(record.state, "running")
        self.env["gobysend.ingest"].identify(self.workspace_a, {"id": "API-1", "email": "api@example.com"})
        claims = "SELECT identifier FROM gobysend_contact_claim WHERE workspace_id = %s ORDER BY identifier"
        self.env.cr.execute(claims, [self.workspace_a.id])
        self.assertEqual(
            [row[0] for row in self.env.cr.fetchall()],
            ["email:api@example.com", "email:p1@example.com", "email:p2@example.com", "id:API-1", "id:P-1", "id:P-2"],
        )
        # A day later, on the database's own clock (the one the purge reads), the import runs on.
        self.env.cr.execute(
            "UPDATE gobysend_contact_claim SET claimed_at = claimed_at - interval '25 hours' WHERE workspace_id = %s",
            [self.workspace_a.id],
        )
        self.env.ref("gobysend_automation.ir_cron_purge_contact_claims").method_direct_trigger()
        self.env.cr.execute(claims, [self.workspace_a.id])
        self.assertEqual(
            [row[0] for row in self.env.cr.fetchall()],
            ["email:p1@example.com", "email:p2@example.com", "id:P-1", "id:P-2"],
            "the request's claims go, the running import's stay",
        )
        self.run_import_jobs()
        self.assertRecordValues(record, [{"state": "done", "rows_done": 5, "rows_rejected": 1, "contacts_created": 4}])
        self.assertEqual(self.rejections(record), [(6, "The same contact as row 2: the file names each contact once.")])

    def test_a_chunk_sets_off_few_garbage_collections(self):
        rows = [f"G-{number},g{number}@example.com,,Guest {number},gold,{number},no,,yes\n" for number in range(300)]
        wizard = self.wizard((HEADER + "".join(rows)).encode())
        wizard.action_read_columns()
        action = wizard.action_import()
        jobs = self.pending_import_jobs()
        Job.load(self.env, jobs.uuid).perform()  # the plan: one chunk
        jobs.state = "done"
        chunk = self.pending_import_jobs()
        self.assertEqual(chunk.method_name, "_run_chunk")
        _result, collections, after = self.count_collections(lambda: Job.load(self.env, chunk.uuid).perform())
        chunk.state = "done"
        self.run_import_jobs()
        record = self.env["gobysend.contact.import"].browse(action["res_id"])
        self.assertRecordValues(record, [{"state": "done", "rows_done": 300, "contacts_created": 300}])
        # At Python's default thresholds, the same chunk set off about fifteen collections.
        self.assertLessEqual(collections, 3)
        self.assertEqual(after, (700, 10, 10), "the thresholds are put back once the chunk ends")

    def test_rows_with_text_the_database_cannot_store_are_rejected_alone(self):
        rows = [
            "N-1,n1@example.com,,Lan,gold,1,no,,yes\n",
            "N-2,n2\x00@example.com,,Minh,gold,2,no,,yes\n",  # in an identifier
            "N-3,n3@example.com,,Ha\x00i,gold,3,no,,yes\n",  # in a contact field
            "N-4,n4@example.com,,Tuan,gold,4,no,,yes\n",
        ]
        wizard = self.wizard((HEADER + "".join(rows)).encode())
        wizard.action_read_columns()
        # The preview shows where the character is, and which rows will be rejected.
        self.assertIn("Ha\ufffdi", wizard.preview_html)
        self.assertEqual(wizard.preview_html.count("Text cannot contain NUL characters"), 2)
        record, _chunks = self.run_import(wizard)
        self.assertRecordValues(record, [{"state": "done", "rows_done": 4, "rows_rejected": 2, "contacts_created": 2}])
        self.assertEqual(record.rejection_ids[1].cells, "N-3,n3@example.com,,Ha\ufffdi,gold,3,no,,yes")
        nul = "Text cannot contain NUL characters (\\u0000)."
        self.assertEqual(self.rejections(record), [(3, f"email: {nul}"), (4, f"name: {nul}")])
        self.assertEqual(
            (self.subscription("N-1").partner_id.name, self.subscription("N-4").partner_id.name), ("Lan", "Tuan")
        )

    def test_an_xlsx_file_is_imported(self):
        book = openpyxl.Workbook()
        sheet = book.active
        sheet.append(["Email", "Full Name", "Points", "Joined"])
        sheet.append(["lan@example.com", "Lan", 12, datetime.date(2024, 5, 1)])
        sheet.append(["minh@example.com", "Minh", 7.5, datetime.date(2024, 6, 1)])
        sheet.append(["bad", "Bad", 1, datetime.date(2024, 6, 1)])
        sheet["D2"].number_format = sheet["D3"].number_format = sheet["D4"].number_format = "yyyy-mm-dd"
        stream = io.BytesIO()
        book.save(stream)
        wizard = self.wizard(stream.getvalue(), file_name="customers.xlsx")
        wizard.action_read_columns()
        self.assertEqual(wizard.file_type, "xlsx")
        types = {line.header: (line.target, line.attribute_type) for line in wizard.column_ids}
        self.assertEqual(types["Points"], ("attribute", "number"))
        self.assertEqual(types["Joined"], ("attribute", "date"))
        record, _chunks = self.run_import(wizard)
        self.assertEqual((record.state, record.contacts_created, record.rows_rejected), ("done", 2, 1))
        self.assertEqual(self.rejections(record)[0][0], 4)
        partner = self.env["res.partner"].search([("email_normalized", "=", "minh@example.com")])
        self.assertEqual(partner.name, "Minh")
        self.assertEqual(self.value(partner, "points").value_number, 7.5)
        self.assertEqual(self.value(partner, "joined").value_date, datetime.date(2024, 6, 1))

    def test_files_that_cannot_be_imported_are_refused_with_a_reason(self):
        for content, file_name, message in (
            (b"", "customers.csv", "The file is empty"),
            (b"\n\n  \n", "customers.csv", "The file is empty"),
            (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "customers.pdf", "is not a CSV or XLSX file"),
            (b"\x89PNG\r\n\x1a\n" + bytes(200), "customers.csv", "is not a CSV or XLSX file"),
        ):
            with self.subTest(file_name=file_name, content=content[:10]):
                wizard = self.wizard(content, file_name=file_name)
                with self.assertRaisesRegex(UserError, message):
                    wizard.action_read_columns()
                with self.assertRaisesRegex(UserError, message):
                    wizard.action_import()
        self.assertFalse(self.env["gobysend.contact.import"].search([]))

    def test_a_file_over_the_size_limit_is_refused_before_it_is_read(self):
        # 200 MB is refused with the default limit, Odoo's own for an uploaded file...
        self.assertLess(DEFAULT_MAX_IMPORT_BYTES, 200 * 1024 * 1024)
        with self.assertRaisesRegex(UserError, r"The file is 200.0 MB; files of up to 128.0 MB can be imported"):
            self.env["gobysend.contact.import"]._check_size(200 * 1024 * 1024)
        # ...and so is any file over a lower limit, whatever it holds: the size is checked on
        # the stored file, before anything parses it.
        self.env["ir.config_parameter"].set_param(MAX_BYTES_PARAMETER, 1024)
        for content in ((HEADER + "C-1,lan@example.com,,,,,,,\n" * 100).encode(), b"\x89PNG\r\n\x1a\n" + bytes(4000)):
            wizard = self.wizard(content)
            with self.assertRaisesRegex(UserError, "files of up to 0.0 MB can be imported"):
                wizard.action_read_columns()
            with self.assertRaisesRegex(UserError, "files of up to 0.0 MB can be imported"):
                wizard.action_import()

    def test_a_mapping_that_cannot_be_imported_is_refused(self):
        self.env["gobysend.attribute"].create(
            {"workspace_id": self.workspace_a.id, "key": "points", "value_type": "number"}
        )
        wizard = self.wizard(b"name,points\nLan,3\n")
        wizard.action_read_columns()
        with self.assertRaisesRegex(UserError, "Map a column to the customer ID, the email or the phone"):
            wizard.action_import()
        wizard = self.wizard(b"email,points,mail\nlan@example.com,3,x@example.com\n")
        wizard.action_read_columns()
        line = wizard.column_ids.filtered(lambda line: line.header == "points")
        self.assertEqual(line.attribute_type, "number", "an existing attribute keeps its type")
        line.attribute_type = "string"
        with self.assertRaisesRegex(UserError, "holds values of type Number already"):
            wizard.action_import()
        line.attribute_type = "number"
        wizard.column_ids.filtered(lambda line: line.header == "mail").write({"target": "email"})
        with self.assertRaisesRegex(UserError, "fill the same field"):
            wizard.action_import()
        self.assertFalse(self.env["gobysend.contact.import"].search([]))

    def test_a_user_imports_only_into_their_own_workspaces(self):
        wizard = self.wizard((HEADER + "C-1,lan@example.com,,,,,,,\n").encode(), user=self.user_b)
        with self.assertRaises(AccessError):
            wizard.action_read_columns()
        with self.assertRaises(AccessError):
            wizard.action_import()
        self.assertFalse(self.subscription("C-1"))
        # Imports of workspace A are hidden from a member of B.
        record, _chunks = self.run_import(self.wizard((HEADER + "C-1,lan@example.com,,,,,,,\n").encode()))
        self.assertFalse(self.env["gobysend.contact.import"].with_user(self.user_b).search([("id", "=", record.id)]))
        self.assertTrue(self.env["gobysend.contact.import"].with_user(self.user_a).search([("id", "=", record.id)]))

    def test_an_import_left_half_done_by_the_previous_version_goes_on_after_the_upgrade(self):
        rows = [
            f"C-{number},c{number}@example.com,,Customer {number},gold,{number},no,,yes\n" for number in range(1, 6)
        ]
        action = self.wizard((HEADER + "".join(rows)).encode()).action_import()
        record = self.env["gobysend.contact.import"].browse(action["res_id"])
        # The previous version had imported rows 2 and 3 (the first two contacts), noted where
        # it stood on the import and queued its next chunk as a job without arguments.
        self.pending_import_jobs().unlink()
        self.env["gobysend.ingest"]._identify_many(
            self.workspace_a, [{"id": "C-1", "email": "c1@example.com"}, {"id": "C-2", "email": "c2@example.com"}]
        )
        record.write({"state": "running", "rows_total": 5, "rows_done": 2, "contacts_created": 2})
        self.env.cr.execute(
            "ALTER TABLE gobysend_contact_import ADD COLUMN IF NOT EXISTS next_offset integer, "
            "ADD COLUMN IF NOT EXISTS next_row integer"
        )
        self.env.cr.execute(
            "UPDATE gobysend_contact_import SET next_offset = %s, next_row = 4 WHERE id = %s",
            (len((HEADER + "".join(rows[:2])).encode()), record.id),
        )
        old_job = record.with_delay(channel="root.gobysend")._run_chunk(0)
        self.env.cr.execute("UPDATE queue_job SET args = '[]' WHERE uuid = %s", (old_job.uuid,))
        self.env["queue.job"].invalidate_model(["args"])

        path = os.path.join(os.path.dirname(__file__), "..", "migrations", "18.0.1.2.0", "post-migrate.py")
        spec = importlib.util.spec_from_file_location("gobysend_post_migrate_18_0_1_2_0", path)
        migration = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(migration)
        migration.migrate(self.env.cr, "18.0.1.1.0")

        self.assertEqual(
            [(job.method_name, list(job.args)) for job in self.pending_import_jobs()], [("_run_chunk", [4])]
        )
        self.assertEqual(self.run_import_jobs(), 1)
        self.assertRecordValues(
            record,
            [{"state": "done", "rows_done": 5, "rows_rejected": 0, "contacts_created": 5, "contacts_updated": 0}],
        )
        self.assertEqual(self.subscription("C-5").partner_id.name, "Customer 5")
        self.assertEqual(self.subscription("C-1").partner_id.name, "c1@example.com", "rows 2 and 3 are not read again")
