"""The inbound tracking API: ``/gobysend/api/v1``."""

import logging
import random
import time
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

from odoo import _, fields
from odoo.api import Environment
from odoo.service.model import PG_CONCURRENCY_EXCEPTIONS_TO_RETRY

from odoo.addons.fastapi.context import odoo_env_ctx
from odoo.addons.fastapi.dependencies import odoo_env

from ..exceptions import ContactNotWritable, InvalidInput, UnknownDevice
from ..models.gobysend_ingest import ConcurrentContactCreation
from . import schemas

_logger = logging.getLogger(__name__)

# A request that collides with another one creating the same contact runs again this many times.
MAX_ATTEMPTS = 5
# HTTP status of the service's refusals; any other ``InvalidInput`` is a 422.
ERROR_STATUS = ((UnknownDevice, 404), (ContactNotWritable, 409), (InvalidInput, 422))

router = APIRouter(
    tags=["tracking"],
    responses={
        401: {"model": schemas.ErrorResponse, "description": "Missing, invalid or revoked API key."},
        400: {"model": schemas.ErrorResponse, "description": "The request body is not UTF-8."},
        413: {
            "model": schemas.ErrorResponse,
            "description": "The request body is larger than 5 MiB (chunked bodies are counted as they arrive).",
        },
        429: {
            "model": schemas.ErrorResponse,
            "description": "Too many requests for this API key; retry after the seconds in `Retry-After`.",
        },
    },
)
bearer_scheme = HTTPBearer(auto_error=False, description="A workspace API key: `Authorization: Bearer gbs_…`")


class ApiError(HTTPException):
    """An answer to bad input. Odoo logs exceptions with a ``loglevel`` at that level instead of
    as server errors: a client's mistake is not ours."""

    loglevel = logging.INFO


def _field_error(field, message, kind, location="body", status=422):
    return ApiError(status, detail=[{"loc": [location, field], "msg": message, "type": kind}])


def authenticated_workspace(
    env: Annotated[Environment, Depends(odoo_env)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
):
    """The workspace opened by the request's API key, after counting the request against its rate limit."""
    if credentials is None:
        raise ApiError(
            401,
            detail=_("Missing API key: send “Authorization: Bearer <workspace API key>”."),
            headers={"WWW-Authenticate": "Bearer"},
        )
    key = env["gobysend.api.key"]._authenticate(credentials.credentials)
    if not key:
        raise ApiError(401, detail=_("Invalid or revoked API key."), headers={"WWW-Authenticate": "Bearer"})
    now = fields.Datetime.now()
    hits, window_start = key._touch_and_count(now)
    if hits > key.workspace_id.api_rate_limit:
        elapsed = (now - window_start).total_seconds()
        raise ApiError(
            429,
            detail=key._get_rate_limit_message(),
            headers={"Retry-After": str(max(1, 60 - int(elapsed)))},
        )
    return key.workspace_id.sudo()


Workspace = Annotated[object, Depends(authenticated_workspace)]
Env = Annotated[Environment, Depends(odoo_env)]


def _call(env, method, *args, location="body", model="gobysend.ingest", statuses=ERROR_STATUS):
    """Run a service method (of ``model``), turning its errors into HTTP answers that name
    the field, with the status of the first of ``statuses`` that the error is an instance of.

    When another request creates the same contact at the same moment, the method runs again
    in a new transaction, which sees that contact: the client never has to retry. Nothing but
    the method has written in this request's transaction (rate counters live on their own
    connection), so rolling it back loses nothing.
    """
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return getattr(env[model], method)(*args)
        except InvalidInput as error:
            status = next(status for kind, status in statuses if isinstance(error, kind))
            raise _field_error(error.field, error.message, type(error).__name__, location, status) from None
        except (ConcurrentContactCreation, *PG_CONCURRENCY_EXCEPTIONS_TO_RETRY) as error:
            if attempt == MAX_ATTEMPTS:
                raise
            env.cr.rollback()
            env.invalidate_all()
            _logger.info("Tracking API %s collided with a concurrent request (%s); running it again", method, error)
            time.sleep(random.uniform(0, 0.05 * 2**attempt))
    raise AssertionError("unreachable")


def _payload(model):
    return model.model_dump(exclude_unset=True)


@router.post(
    "/identify",
    response_model=schemas.IdentifyResponse,
    summary="Create or update a contact",
    responses={
        409: {
            "model": schemas.ErrorResponse,
            "description": "The standard keys would change a contact that is not this workspace's own: an Odoo "
            "user's or company's, an archived one, or one shared with the workspace that created it. `loc` names "
            "the key; store the value in an attribute of another name instead.",
        }
    },
)
def identify(body: schemas.IdentifyRequest, workspace: Workspace, env: Env):
    return _call(env, "identify", workspace, _payload(body))


@router.post("/track", response_model=schemas.EventResponse, summary="Record an event")
def track(body: schemas.TrackRequest, workspace: Workspace, env: Env):
    return _call(env, "track", workspace, _payload(body))


@router.post("/page", response_model=schemas.EventResponse, summary="Record a page view")
def page(body: schemas.PageRequest, workspace: Workspace, env: Env):
    return _call(env, "page", workspace, _payload(body))


@router.post("/devices", response_model=schemas.DeviceResponse, summary="Register a push device")
def add_device(body: schemas.DeviceRequest, workspace: Workspace, env: Env):
    return _call(env, "register_device", workspace, _payload(body))


# ``:path`` lets a token hold slashes, as web push endpoints do (sent URL-encoded).
@router.delete(
    "/devices/{token:path}",
    response_model=schemas.DeviceResponse,
    summary="Remove a push device",
    responses={404: {"model": schemas.ErrorResponse, "description": "No device with this token in this workspace."}},
)
def remove_device(token: Annotated[schemas.DeviceToken, Path()], workspace: Workspace, env: Env):
    return _call(env, "remove_device", workspace, token, location="path")


@router.post("/unsubscribe", response_model=schemas.UnsubscribeResponse, summary="Unsubscribe a contact from a channel")
def unsubscribe(body: schemas.UnsubscribeRequest, workspace: Workspace, env: Env):
    return _call(env, "unsubscribe", workspace, _payload(body))


@router.post(
    "/batch",
    response_model=schemas.BatchResponse,
    response_model_exclude_none=True,
    summary="Send up to 1000 items at once",
)
def batch(body: schemas.BatchRequest, workspace: Workspace, env: Env):
    results = _call(env, "batch", workspace, body.batch)
    rejected = sum(1 for result in results if result["status"] == "error")
    return {"accepted": len(results) - rejected, "rejected": rejected, "results": results}


class ApiErrorMiddleware:
    """Answers client errors itself: every ``HTTPException`` (FastAPI's and Starlette's) and
    validation error as a JSON response, after rolling back what the request wrote. (Bodies over
    the size limit never get here: the dispatcher refuses them.)

    Letting these exceptions travel out of the ASGI app, as the fastapi addon does by default,
    races inside a2wsgi: now and then the WSGI side never sees the answer start and Odoo turns
    a 401 or a 422 into a 500. A response sent from here always arrives.
    """

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except RequestValidationError as error:
            await self._answer(scope, receive, send, 422, jsonable_encoder(error.errors()))
        except StarletteHTTPException as error:
            # FastAPI raises Starlette's own class where it cannot parse a body.
            await self._answer(scope, receive, send, error.status_code, error.detail, error.headers)

    async def _answer(self, scope, receive, send, status_code, detail, headers=None):
        env = odoo_env_ctx.get(None)
        if env is not None:
            # Nothing a refused request wrote may stay (rate counters live on their own connection).
            env.cr.rollback()
            env.invalidate_all()
        _logger.info("Tracking API answered %s to %s", status_code, scope.get("path"))
        await JSONResponse({"detail": detail}, status_code=status_code, headers=headers)(scope, receive, send)
