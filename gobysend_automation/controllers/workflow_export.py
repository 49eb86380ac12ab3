from odoo import http
from odoo.http import content_disposition, request

from .. import workflow_json


class WorkflowExport(http.Controller):
    @http.route("/gobysend/campaign/<int:campaign_id>/workflow.json", type="http", auth="user", methods=["GET"])
    def workflow_json(self, campaign_id):
        """A campaign's workflow as a JSON file, for a user who may read the campaign."""
        campaign = request.env["gobysend.campaign"].browse(campaign_id).exists()
        if not campaign:
            raise request.not_found()
        campaign.check_access("read")
        filename = f"{campaign.name or 'workflow'}.json"
        return request.make_response(
            workflow_json.dumps(campaign),
            headers=[("Content-Type", "application/json"), ("Content-Disposition", content_disposition(filename))],
        )
