import logging

from odoo import api, models

_logger = logging.getLogger(__name__)


class ResLang(models.Model):
    _inherit = "res.lang"

    @api.model
    def _get_lang_from_accept_language(self, accept_language):
        # The fastapi addon picks a request's language from its Accept-Language header, whose
        # parser raises on malformed values (``fr;q=#E``): a header any client may send must not
        # fail the request, so such a header is ignored like a missing one.
        try:
            return super()._get_lang_from_accept_language(accept_language)
        except ValueError:
            _logger.debug("Ignored a malformed Accept-Language header: %r", accept_language)
            return None
