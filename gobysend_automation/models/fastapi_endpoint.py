from starlette.middleware import Middleware

from odoo import api, fields, models

from ..routers.dispatcher import ROUTING_TYPE
from ..routers.tracking import ApiErrorMiddleware
from ..routers.tracking import router as tracking_router

API_DESCRIPTION = """
Push customer activity into a Gobysend workspace: contacts and their attributes, events, page
views, push devices and unsubscriptions. Fetch a contact's in-app banners and pop-ups and report
what the contact did with them.

Authenticate every request with a workspace API key: `Authorization: Bearer gbs_…`.
Errors come back as JSON whose `detail` names the offending field (`loc`).
"""


class FastapiEndpoint(models.Model):
    _inherit = "fastapi.endpoint"

    app = fields.Selection(selection_add=[("gobysend", "Gobysend Tracking API")], ondelete={"gobysend": "cascade"})

    def _get_fastapi_routers(self):
        if self.app == "gobysend":
            return [tracking_router]
        return super()._get_fastapi_routers()

    def _get_routing_info(self):
        routing = super()._get_routing_info()
        if self.app == "gobysend":
            # Our dispatcher reads chunked bodies and refuses large ones before reading them whole.
            routing["type"] = ROUTING_TYPE
        return routing

    @api.model
    def _gobysend_sync_routes(self):
        """Register the tracking API's routes again, as the code now describes them: the
        registry keeps a route's routing (its dispatcher) from the time it was first synced."""
        self.search([("app", "=", "gobysend"), ("registry_sync", "=", True)])._handle_registry_sync()

    def _get_fastapi_app_middlewares(self):
        middlewares = super()._get_fastapi_app_middlewares()
        if self.app == "gobysend":
            middlewares.append(Middleware(ApiErrorMiddleware))
        return middlewares

    def _get_app_dependencies_overrides(self):
        # The tracking API uses neither the endpoint's id nor its company, and FastAPI rebuilds
        # every dependency of every request while any override is set (a tenth of a one-event
        # request's CPU time).
        if self.app == "gobysend":
            return {}
        return super()._get_app_dependencies_overrides()

    def _prepare_fastapi_app_params(self):
        params = super()._prepare_fastapi_app_params()
        if self.app == "gobysend":
            params.update({"title": "Gobysend Tracking API", "version": "1", "description": API_DESCRIPTION})
        return params
