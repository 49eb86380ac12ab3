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
