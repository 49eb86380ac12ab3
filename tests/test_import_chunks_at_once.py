"""A customer list's chunks run at once, as on several queue_job workers or servers: each contact
is stored once, a chunk queued twice imports its rows once, the counts add up and the import ends
once; the API creating the same contacts at that moment makes no second one. These tests commit
for real (that is what they test), on the end-to-end database."""

import os
import threading
import time
import uuid
from functools import partial

import pytest

from odoo import SUPERUSER_ID, api
from odoo.service.model import PG_CONCURRENCY_EXCEPTIONS_TO_RETRY, retrying

from odoo.addons.gobysend_automation.models.gobysend_ingest import ConcurrentContactCreation
from odoo.addons.queue_job.exception import RetryableJobError
from odoo.addons.queue_job.job import Job

E2E_DB = os.environ.get("GOBYSEND_E2E_DB")
pytestmark = pytest.mark.skipif(not E2E_DB, reason="needs the end-to-end database prepared by setup/run-tests")

COLUMNS = [
    {"index": 0, "header": "customer_id", "target": "id"},
    {"index": 1, "header": "email", "target": "email"},
    {"index": 2, "header": "name", "target": "name"},
    {"index": 3, "header": "points", "target": "attribute", "key": "points", "type": "number"},
]
CHUNK_ROWS = 40


@pytest.fixture
def workspace_id(registry):
    """A committed workspace, removed afterwards with the contacts, files and jobs of its imports."""
    with registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        workspace = env["gobysend.workspace"].create({"name": f"Import at once {uuid.uuid4().hex[:8]}"})
        created = workspace.id
    yield created
    with registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        imports = env["gobysend.contact.import"].search([("workspace_id", "=", created)])
        env["queue.job"].search([("model_name", "=", "gobysend.contact.import")]).filtered(
            lambda job: set(job.records.ids) & set(imports.ids)
        ).unlink()
        env["ir.attachment"].search([("res_model", "=", imports._name), ("res_id", "in", imports.ids)]).unlink()
        partners = (
            env["res.partner"].with_context(active_test=False).search([("gobysend_origin_workspace_id", "=", created)])
        )
        env["gobysend.workspace"].browse(created).unlink()
        partners.unlink()


def start_import(registry, workspace_id, content):
    """What the wizard's Import button does, with small chunks, into a new list; returns the
    ids of the import and of the list."""
    with registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        target_list = env["gobysend.segment"].create(
            {"name": "Imported", "workspace_id": workspace_id, "segment_type": "static"}
        )
        record = env["gobysend.contact.import"]._create_import(
            env["gobysend.workspace"].browse(workspace_id),
            "customers.csv",
            content.encode(),
            COLUMNS,
            target_list=target_list,
        )
        record.chunk_rows = CHUNK_ROWS
        return record.id, target_list.id


def pending_jobs(registry, import_id):
    with registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        jobs = env["queue.job"].search(
            [("model_name", "=", "gobysend.contact.import"), ("state", "=", "pending")], order="id"
        )
        return [(job.uuid, job.method_name) for job in jobs if import_id in job.records.ids]


def run_job(registry, job_uuid):
    """Run a job as a queue_job worker does: in its own transaction, committed; a concurrency
    error of PostgreSQL or a ``RetryableJobError`` rolls it back and runs it again."""
    for _attempt in range(20):
        with registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            try:
                retrying(lambda env=env: Job.load(env, job_uuid).perform(), env)
            except RetryableJobError:
                cr.rollback()
                time.sleep(0.2)
                continue
            env["queue.job"].search([("uuid", "=", job_uuid)]).state = "done"
            return
    raise AssertionError(f"job {job_uuid} kept asking to be retried")


def identify_batch(registry, workspace_id, items):
    """Identify ``items`` as the tracking API's ``/batch`` does: in its own transaction,
    committed; run again when another transaction creates the same contact at that moment."""
    for _attempt in range(20):
        with registry.cursor() as cr:
            env = api.Environment(cr, SUPERUSER_ID, {})
            try:
                results = env["gobysend.ingest"].batch(env["gobysend.workspace"].browse(workspace_id), items)
            except (ConcurrentContactCreation, *PG_CONCURRENCY_EXCEPTIONS_TO_RETRY):
                cr.rollback()
                time.sleep(0.2)
                continue
            assert [result["status"] for result in results] == ["ok"] * len(items), results
            return
    raise AssertionError("the batch kept colliding")


def run_at_once(registry, job_uuids, others=()):
    """Start every job, and every function of ``others``, at the same moment, each in its own
    thread and transaction."""
    functions = [partial(run_job, registry, job_uuid) for job_uuid in job_uuids] + list(others)
    barrier = threading.Barrier(len(functions), timeout=60)
    errors = []

    def run(function):
        try:
            barrier.wait()
            function()
        except Exception as error:  # reported below: a thread cannot fail the test itself
            errors.append(error)

    threads = [threading.Thread(target=run, args=(function,)) for function in functions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors


def test_chunks_running_at_once_store_each_contact_once_and_end_the_import_once(registry, workspace_id):
    tag = uuid.uuid4().hex[:8]
    rows = [f"C-{tag}-{number},c{number}.{tag}@example.com,Customer {number},{number}\n" for number in range(119)]
    # Row 3 of the file (C-1) comes back as row 102, in the third chunk: the same contact.
    rows.insert(100, f"C-{tag}-1,c1.{tag}@example.com,Again,1\n")
    import_id, list_id = start_import(registry, workspace_id, "customer_id,email,name,points\n" + "".join(rows))

    [(plan, method)] = pending_jobs(registry, import_id)
    assert method == "_plan_chunks"
    run_job(registry, plan)
    chunks = pending_jobs(registry, import_id)
    assert [method for _uuid, method in chunks] == ["_run_chunk"] * 3
    # The three chunks at once, and the first one queued a second time beside them.
    run_at_once(registry, [job_uuid for job_uuid, _method in chunks] + [chunks[0][0]])
    with registry.cursor() as cr:
        record = api.Environment(cr, SUPERUSER_ID, {})["gobysend.contact.import"].browse(import_id)
        assert record.state == "running", "the import ends when its chunks are counted"
    # Then the counts that each chunk queued as it ended, at once too.
    updates = pending_jobs(registry, import_id)
    assert [method for _uuid, method in updates] == ["_update_progress"] * 3
    run_at_once(registry, [job_uuid for job_uuid, _method in updates])
    assert not pending_jobs(registry, import_id)

    with registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        record = env["gobysend.contact.import"].browse(import_id)
        assert (record.state, record.rows_total, record.rows_done) == ("done", 120, 120)
        assert (record.rows_rejected, record.contacts_created, record.contacts_updated) == (1, 119, 0)
        # Whichever chunk came first keeps the contact; the other row is rejected, naming it.
        [(row_number, reason)] = [(rejection.row_number, rejection.reason) for rejection in record.rejection_ids]
        other = {3: 102, 102: 3}[row_number]
        assert reason == f"The same contact as row {other}: the file names each contact once."

        subscriptions = env["gobysend.subscription"].search([("workspace_id", "=", workspace_id)])
        assert len(subscriptions) == 119
        assert len(set(subscriptions.mapped("external_id"))) == 119
        assert len(set(subscriptions.mapped("partner_id.email_normalized"))) == 119
        points = env["gobysend.attribute.value"].search(
            [("workspace_id", "=", workspace_id), ("attribute_id.key", "=", "points")]
        )
        assert sorted(points.mapped("value_number")) == [float(number) for number in range(119)]
        # Every contact joined the import's list once, counted once.
        target_list = env["gobysend.segment"].browse(list_id)
        assert target_list.member_count == 119
        assert sorted(target_list.current_membership_ids.partner_id.ids) == sorted(subscriptions.partner_id.ids)

        cr.execute("SELECT count(*) FROM gobysend_contact_import_chunk WHERE import_id = %s", (import_id,))
        assert cr.fetchone()[0] == 0, "the chunks' bookkeeping goes once the import ends"
        cr.execute("SELECT count(*) FROM gobysend_contact_claim WHERE import_id = %s", (import_id,))
        assert cr.fetchone()[0] == 0, "so do the duplicate check's claims"


def test_the_api_creating_the_contacts_of_chunks_at_once_stores_each_contact_once(registry, workspace_id):
    tag = uuid.uuid4().hex[:8]
    rows = [f"C-{tag}-{number},c{number}.{tag}@example.com,Customer {number},{number}\n" for number in range(80)]
    import_id, _list_id = start_import(registry, workspace_id, "customer_id,email,name,points\n" + "".join(rows))
    [(plan, _method)] = pending_jobs(registry, import_id)
    run_job(registry, plan)
    chunks = [job_uuid for job_uuid, _method in pending_jobs(registry, import_id)]
    assert len(chunks) == 2
    # The shop's system identifies the same customers by their email, at the same moment.
    batches = [
        [
            {"type": "identify", "email": f"c{number}.{tag}@example.com", "attributes": {"shop": "online"}}
            for number in range(first, 80, 4)
        ]
        for first in range(4)
    ]
    run_at_once(registry, chunks, [partial(identify_batch, registry, workspace_id, batch) for batch in batches])
    while updates := pending_jobs(registry, import_id):
        for job_uuid, _method in updates:
            run_job(registry, job_uuid)

    with registry.cursor() as cr:
        env = api.Environment(cr, SUPERUSER_ID, {})
        record = env["gobysend.contact.import"].browse(import_id)
        assert (record.state, record.rows_done, record.rows_rejected) == ("done", 80, 0)
        assert record.contacts_created + record.contacts_updated == 80
        subscriptions = env["gobysend.subscription"].search([("workspace_id", "=", workspace_id)])
        assert len(subscriptions) == 80, "each customer is one contact, whoever created it"
        assert sorted(subscriptions.mapped("external_id")) == sorted(f"C-{tag}-{number}" for number in range(80))
        assert len(set(subscriptions.mapped("partner_id.email_normalized"))) == 80
        for key in ("points", "shop"):
            values = env["gobysend.attribute.value"].search(
                [("workspace_id", "=", workspace_id), ("attribute_id.key", "=", key)]
            )
            assert sorted(values.partner_id.ids) == sorted(subscriptions.partner_id.ids), key
