from odoo.exceptions import ValidationError


class InvalidInput(ValidationError):
    """Bad input about one named field.

    A ``ValidationError`` so that the web client and XML-RPC show its sentence as is; the HTTP
    API turns it into a 422 whose body names ``field``.
    """

    def __init__(self, field, message):
        self.field = field
        self.message = message
        super().__init__(message)


class UnknownContact(InvalidInput):
    """The request names a contact that does not exist in the workspace."""


class UnknownDevice(InvalidInput):
    """The request names a push device that the workspace does not know."""


class UnknownMessage(InvalidInput):
    """The request names a message that the workspace does not have (or cannot act on)."""


class ContactNotWritable(InvalidInput):
    """The request would change the own fields (name, email...) of a contact that the workspace
    does not own: an Odoo user's or company's, an archived one, or one shared with the workspace
    that created it."""


# The most of a provider's answer kept on a message: enough for a human to read, never a whole
# document a provider (or whoever a URL points at) chose to send back.
PROVIDER_ANSWER_MAX_LENGTH = 4000


class SendError(Exception):
    """A provider refused or failed to take a message."""

    def __init__(self, reason, provider_answer=None):
        self.reason = reason
        if provider_answer and len(provider_answer) > PROVIDER_ANSWER_MAX_LENGTH:
            provider_answer = provider_answer[:PROVIDER_ANSWER_MAX_LENGTH] + "…"
        self.provider_answer = provider_answer
        super().__init__(reason)


class TransientSendError(SendError):
    """Worth retrying later: timeouts, connection errors, HTTP 429 and 5xx."""

    def __init__(self, reason, provider_answer=None, retry_after=None):
        self.retry_after = retry_after
        super().__init__(reason, provider_answer)


class PermanentSendError(SendError):
    """Retrying cannot help: an invalid number, a refused request (HTTP 4xx)."""


class UncertainSendError(PermanentSendError):
    """The request reached the provider but its answer did not come back (a read time-out): the
    message may or may not have arrived. Sending it again could send it twice, so it is not
    retried automatically; a manager checks with the provider."""
