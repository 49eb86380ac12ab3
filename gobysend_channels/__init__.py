import secrets

from . import controllers
from . import models


def post_init_hook(env):
    """Give every channel that existed before installation secrets of its own: the columns were
    filled with one default value for all of them."""
    for channel in env["gobysend.channel"].with_context(active_test=False).search([]):
        channel.write({"receipt_secret": secrets.token_urlsafe(32), "webhook_secret": secrets.token_urlsafe(32)})
