"""Customer list imports run in chunks planned up front, several at once. An import that the
previous version queued or left half done goes on under the new scheme: a queued one is planned
again, and a running one keeps what it counted so far (as a chunk already done) and imports the
rest of its file as one chunk from where it stopped."""

from odoo import SUPERUSER_ID, api

from odoo.addons.gobysend_automation.models.gobysend_contact_import import IMPORT_CHANNEL


def migrate(cr, version):
    if not version:
        return
    env = api.Environment(cr, SUPERUSER_ID, {})
    Import = env["gobysend.contact.import"]
    jobs = env["queue.job"].search(
        [("model_name", "=", Import._name), ("method_name", "=", "_run_chunk"), ("state", "in", ("pending", "failed"))]
    )
    # Jobs of the previous version take no argument; they would fail on the new method.
    old_jobs = jobs.filtered(lambda job: not job.args)
    imports = Import.browse([record_id for job in old_jobs for record_id in job.records.ids]).exists()
    old_jobs.unlink()
    cr.execute("SELECT id, next_offset, next_row FROM gobysend_contact_import WHERE id = ANY(%s)", (imports.ids,))
    positions = {import_id: (offset or 0, row or 1) for import_id, offset, row in cr.fetchall()}
    for record in imports:
        offset, next_row = positions[record.id]
        if record.state == "running" and next_row <= 1:
            record.state = "queued"  # no row read yet: planned from the start
        if record.state == "queued":
            record.with_delay(channel=IMPORT_CHANNEL)._plan_chunks()
            continue
        if record.state != "running":
            continue
        size = record.attachment_id.file_size  # where the file ends
        cr.execute(
            """
            INSERT INTO gobysend_contact_import_chunk (import_id, first_row, start_offset, end_offset, done,
                                                       rows_done, rows_rejected, contacts_created, contacts_updated)
            VALUES (%s, 0, 0, 0, true, %s, %s, %s, %s)
            ON CONFLICT DO NOTHING
            """,
            (record.id, record.rows_done, record.rows_rejected, record.contacts_created, record.contacts_updated),
        )
        if offset >= size:
            record._update_progress()
            continue
        cr.execute(
            "INSERT INTO gobysend_contact_import_chunk (import_id, first_row, start_offset, end_offset) "
            "VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
            (record.id, next_row, offset, size),
        )
        record.with_delay(channel=IMPORT_CHANNEL)._run_chunk(next_row)
