"""In-app messages over the tracking API: the business's app lists a contact's active banners
and pop-ups and reports what the contact did with them. Registered on the tracking router, so
that they share its API-key authentication, rate limit, errors and OpenAPI document."""

from typing import Annotated, Literal

from fastapi import Path, Query

from ..exceptions import UnknownContact, UnknownMessage
from . import schemas
from .tracking import ERROR_STATUS, Env, Workspace, router
from .tracking import _call as call_service

# An unknown contact or message is a 404 here: the app asks about one thing that is not there.
INAPP_ERROR_STATUS = ((UnknownContact, 404), (UnknownMessage, 404), *ERROR_STATUS)
ContactQuery = Annotated[str | None, Query(max_length=200)]
MAX_RECORD_ID = 2**31 - 1


@router.get(
    "/inapp",
    response_model=schemas.InappMessagesResponse,
    summary="List a contact's active in-app messages",
    description="Identify the contact with one of `id`, `email` or `phone` (tried in that order). Messages the "
    "contact dismissed or that expired are left out.",
    responses={404: {"model": schemas.ErrorResponse, "description": "No such contact in this workspace."}},
)
def list_inapp_messages(
    workspace: Workspace,
    env: Env,
    id: ContactQuery = None,
    email: ContactQuery = None,
    phone: ContactQuery = None,
):
    params = {key: value for key, value in (("id", id), ("email", email), ("phone", phone)) if value is not None}
    return call_service(
        env,
        "_inapp_api_list",
        workspace,
        params,
        model="gobysend.message",
        location="query",
        statuses=INAPP_ERROR_STATUS,
    )


@router.post(
    "/inapp/{message_id}/{action}",
    response_model=schemas.InappEngagementResponse,
    summary="Record that a contact saw, clicked or dismissed an in-app message",
    description="seen marks the message opened, clicked marks it clicked, dismissed stops listing it. "
    "Repeating a call changes nothing.",
    responses={404: {"model": schemas.ErrorResponse, "description": "No such in-app message in this workspace."}},
)
def record_inapp_engagement(
    # Within PostgreSQL's integer ids: a larger number is bad input, not a database error.
    message_id: Annotated[int, Path(ge=1, le=MAX_RECORD_ID)],
    action: Annotated[Literal["seen", "clicked", "dismissed"], Path()],
    workspace: Workspace,
    env: Env,
):
    return call_service(
        env,
        "_inapp_api_engage",
        workspace,
        message_id,
        action,
        model="gobysend.message",
        location="path",
        statuses=INAPP_ERROR_STATUS,
    )
