"""How Odoo hands a request of the tracking API to its FastAPI app.

The ``fastapi`` addon's dispatcher passes the body on only as far as ``Content-Length`` says, so
a chunked body (``Transfer-Encoding: chunked``, no ``Content-Length``) arrives empty; and it
reads any body whole into memory before the app can refuse it. This one reads the body itself,
chunked or not, counting the bytes as they come, and answers 413 as soon as the count passes
the limit, keeping no more than the limit in memory; a body that is not UTF-8 is a 400.
"""

import logging
from io import BytesIO

from werkzeug.exceptions import RequestEntityTooLarge

from odoo import _

from odoo.addons.fastapi.fastapi_dispatcher import FastApiDispatcher

_logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 5 * 1024 * 1024
READ_SIZE = 64 * 1024
ROUTING_TYPE = "gobysend_api"


class BodyTooLarge(Exception):
    """The request body is larger than ``MAX_BODY_BYTES``."""


def too_large_message():
    return _("The request body is larger than %(max)s bytes; split it into smaller batches.", max=MAX_BODY_BYTES)


class GobysendApiDispatcher(FastApiDispatcher):
    routing_type = ROUTING_TYPE

    def dispatch(self, endpoint, args):
        try:
            body = self._read_body()
        except BodyTooLarge:
            return self._refuse(413, too_large_message(), headers=[("Connection", "close")])
        try:
            # JSON travels in UTF-8 (RFC 8259); Python's parser would also guess UTF-16 and 32.
            body.decode()
        except UnicodeDecodeError:
            message = _("The request body must be JSON encoded in UTF-8.")
            return self._refuse(400, [{"loc": ["body"], "msg": message, "type": "body_not_utf8"}])
        return super().dispatch(endpoint, args)

    def _refuse(self, status, detail, headers=None):
        self.request.params = {}  # read by other addons' ``_post_dispatch``, as after any dispatch
        _logger.info("Tracking API answered %s to %s", status, self.request.httprequest.path)
        return self.request.make_json_response({"detail": detail}, status=status, headers=headers)

    def _wrapped_httprequest(self):
        # The same unwrapping as the fastapi addon's ``_get_environ``.
        try:
            return self.request.httprequest._HTTPRequest__wrapped
        except AttributeError:
            return self.request.httprequest

    def _read_body(self):
        """The request body as bytes, read once per request (Odoo runs a request again after a
        serialization failure), or raise ``BodyTooLarge``."""
        httprequest = self._wrapped_httprequest()
        body = getattr(httprequest, "_gobysend_body", None)
        if body is not None:
            return body
        declared = httprequest.content_length
        if declared is not None and declared > MAX_BODY_BYTES:
            self._discard(httprequest)
            raise BodyTooLarge()
        try:
            # Werkzeug hands out chunked bodies when the server decodes them, as Odoo's does.
            stream = httprequest._get_stream_for_parsing()
            buffer = BytesIO()
            while chunk := stream.read(READ_SIZE):
                buffer.write(chunk)
                if buffer.tell() > MAX_BODY_BYTES:
                    self._discard(httprequest, stream)
                    raise BodyTooLarge()
        except RequestEntityTooLarge:
            raise BodyTooLarge() from None
        httprequest._gobysend_body = body = buffer.getvalue()
        return body

    def _discard(self, httprequest, stream=None):
        """Read what is left of a refused body without keeping it, so that the client, still
        sending, receives the answer instead of a reset connection. Odoo's own limit on request
        sizes (``max_content_length``) bounds how long this lasts."""
        try:
            stream = stream or httprequest._get_stream_for_parsing()
            while stream.read(READ_SIZE):
                pass
        except (RequestEntityTooLarge, OSError) as error:
            # Past Odoo's own limit, or the client gave up: the answer goes out anyway.
            _logger.debug("Stopped reading a refused request body: %s", error)

    def _get_environ(self):
        environ = self._wrapped_httprequest().environ
        body = self._read_body()
        # The FastAPI bridge reads exactly ``CONTENT_LENGTH`` bytes, chunked bodies included.
        environ["wsgi.input"] = BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        return environ
