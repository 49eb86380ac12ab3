"""Request and response shapes of the tracking API, as published in its OpenAPI document.

The types here are deliberately wide (a timestamp may be text or a number, attributes any JSON
value): the service validates meaning and answers with sentences that name the field.
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ContactId = str | int | None
Timestamp = str | float | int | None


class ContactRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: ContactId = Field(None, description="The business's own customer id.", examples=["C-1001"])
    email: str | None = Field(None, examples=["lan.nguyen@example.com"])
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
    name: str = Field(..., examples=["order_completed"])
    properties: dict[str, Any] | None = Field(None, examples=[{"total": 750000, "currency": "VND"}])
    timestamp: Timestamp = Field(None, description="ISO 8601 or epoch seconds; defaults to now.")
    message_id: str | int | None = Field(None, description="Idempotency id: a repeated one is stored once.")


class PageRequest(ContactRef):
    url: str = Field(..., examples=["https://shop.example.com/products/42"])
    title: str | None = None
    referrer: str | None = None
    name: str | None = Field(None, description="Defaults to page_view.")
    properties: dict[str, Any] | None = None
    timestamp: Timestamp = None
    message_id: str | int | None = None


class EventResponse(BaseModel):
    event_id: int
    contact_id: int
    duplicate: bool = Field(description="True when this message_id was already received; nothing new was stored.")


class DeviceRequest(ContactRef):
    token: str
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
