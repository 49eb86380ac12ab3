"""Request and response shapes of the tracking API, as published in its OpenAPI document.

The types here are wide where meaning needs the database (a timestamp may be text or a number,
attributes any JSON value): the service validates meaning and answers with sentences that name
the field. Every constraint the service enforces on a field's shape alone (lengths, formats,
choices) is stated here too, so that the document promises what the API accepts.
"""

import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ..models.gobysend_ingest import DEVICE_TOKEN_PATTERN, MAX_BATCH_ITEMS, MAX_NAME_LENGTH, MAX_TEXT_LENGTH

# Text that is not blank: at least one character other than white space.
NOT_BLANK = r"\S"
Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME_LENGTH, pattern=NOT_BLANK)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_LENGTH)]
DeviceToken = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_TEXT_LENGTH, pattern=DEVICE_TOKEN_PATTERN),
]
ContactId = Name | int | None
Timestamp = str | float | int | None


class ContactRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: ContactId = Field(
        None, description="The business's own customer id, at most 200 characters.", examples=["C-1001"]
    )
    email: str | None = Field(None, json_schema_extra={"format": "email"}, examples=["lan.nguyen@example.com"])
    phone: str | None = Field(None, description="Any format; stored in E.164.", examples=["0912 345 678"])


class IdentifyRequest(ContactRef):
    attributes: dict[str, Any] = Field(
        default_factory=dict,
        description="Typed values; standard keys (email, phone, name, birthday, city, country_code, language) "
        "update the contact itself.",
        examples=[{"name": "Nguyễn Lan", "tier": "gold", "points": 1200}],
    )


class IdentifyResponse(BaseModel):
    contact_id: int
    created: bool


class TrackRequest(ContactRef):
    name: Name = Field(..., examples=["order_completed"])
    properties: dict[str, Any] | None = Field(None, examples=[{"total": 750000, "currency": "VND"}])
    timestamp: Timestamp = Field(None, description="ISO 8601 or epoch seconds; defaults to now.")
    message_id: Name | int | None = Field(None, description="Idempotency id: a repeated one is stored once.")


class PageRequest(ContactRef):
    url: Annotated[str, StringConstraints(min_length=1, max_length=MAX_TEXT_LENGTH, pattern=NOT_BLANK)] = Field(
        ..., examples=["https://shop.example.com/products/42"]
    )
    title: Text | None = None
    referrer: Text | None = None
    name: Name | None = Field(None, description="Defaults to page_view.")
    properties: dict[str, Any] | None = None
    timestamp: Timestamp = None
    message_id: Name | int | None = None


class EventResponse(BaseModel):
    event_id: int
    contact_id: int
    duplicate: bool = Field(description="True when this message_id was already received; nothing new was stored.")


class DeviceRequest(ContactRef):
    token: DeviceToken = Field(
        ...,
        description="The push token: printable ASCII without spaces; white space around it is dropped.",
        examples=["fcm:APA91bHun4MxP5egoKMwt2"],
    )
    platform: Literal["ios", "android", "web"]


class DeviceResponse(BaseModel):
    device_id: int
    contact_id: int | None = None
    active: bool = True


class UnsubscribeRequest(ContactRef):
    channel: Literal["email", "sms", "zalo", "push", "all"]


class UnsubscribeResponse(BaseModel):
    contact_id: int
    channel: str
    state: str


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Items are checked one by one by the service, so that a malformed item is reported in its
    # own result instead of refusing the whole batch.
    batch: list[Any] = Field(
        ...,
        max_length=MAX_BATCH_ITEMS,
        description="Up to 1000 items, each an identify, track, page or device payload (a JSON object) "
        "with a `type` key.",
        examples=[[{"type": "track", "id": "C-1001", "name": "cart_viewed"}]],
    )


class BatchItemError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class BatchItemResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    index: int
    status: Literal["ok", "error"]
    errors: list[BatchItemError] | None = None


class BatchResponse(BaseModel):
    accepted: int
    rejected: int
    results: list[BatchItemResult]


class ErrorResponse(BaseModel):
    """Every error: a sentence, or for invalid input a list of errors whose ``loc`` names the field."""

    detail: str | list[dict[str, Any]]


class InappMessage(BaseModel):
    id: int = Field(description="The message id, for POST /inapp/{id}/{action}.")
    kind: Literal["banner", "popup"]
    subject: str
    body: str = Field(description="Plain text, rendered for the contact.")
    link: str | None = Field(None, description="Where a tap leads (http or https).")
    image_url: str | None = None
    state: Literal["delivered", "opened", "clicked"] = Field(
        description="delivered: not seen yet; opened: seen; clicked: its link was followed."
    )
    created_at: datetime.datetime = Field(description="When the message was queued (UTC).")
    expires_at: datetime.datetime | None = Field(None, description="After this moment (UTC) it is no longer listed.")


class InappMessagesResponse(BaseModel):
    contact_id: int
    messages: list[InappMessage] = Field(description="Neither dismissed nor expired, newest first; at most 50.")


class InappEngagementResponse(BaseModel):
    id: int
    state: Literal["delivered", "opened", "clicked"]
    dismissed: bool
