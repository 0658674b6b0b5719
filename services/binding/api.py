"""Routes of the binding service (customer and ops HTTP API)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Header, Path, Response

from services.binding import service
from services.binding.config import BindingSettings
from services.binding.schemas import BindingList, BindingOut, UnbindRequestIn, UnbindRequestOut
from shared.app import RequestUnitOfWork, Runtime
from shared.auth import Customer, Principal, require_role

router = APIRouter(prefix="/v1")

ID_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"
BindingId = Annotated[str, Path(pattern=ID_PATTERN)]
RequestId = Annotated[str, Path(pattern=ID_PATTERN)]
CustomerOrOps = Annotated[Principal, Depends(require_role("customer", "ops"))]


@router.get("/bindings", tags=["bindings"])
async def list_bindings(principal: Customer, uow: RequestUnitOfWork) -> BindingList:
    return await service.list_bindings(uow, principal)


@router.get("/bindings/{binding_id}", tags=["bindings"])
async def get_binding(binding_id: BindingId, principal: Customer, uow: RequestUnitOfWork) -> BindingOut:
    return await service.get_binding(uow, principal, binding_id)


@router.post("/bindings/{binding_id}/unbind-requests", status_code=202, tags=["unbind requests"])
async def request_unbind(
    binding_id: BindingId,
    body: UnbindRequestIn,
    principal: Customer,
    uow: RequestUnitOfWork,
    runtime: Runtime,
    response: Response,
    idempotency_key: Annotated[str, Header(alias="Idempotency-Key", pattern=r"^[A-Za-z0-9._:-]{8,128}$")],
    channel: Annotated[str, Header(alias="X-Client-Channel", pattern=r"^[a-z_]{1,32}$")] = "app",
) -> UnbindRequestOut:
    """Ask to unbind. Accepted (202) once durably recorded; risk, verification and completion follow
    as events. Repeating the call with the same Idempotency-Key returns the same request."""
    settings: BindingSettings = runtime.settings  # type: ignore[assignment]
    request, created = await service.request_unbind(uow, settings, principal, binding_id, body, idempotency_key, channel)
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return request


@router.get("/unbind-requests/{request_id}", tags=["unbind requests"])
async def get_unbind_request(request_id: RequestId, principal: CustomerOrOps, uow: RequestUnitOfWork) -> UnbindRequestOut:
    return await service.get_request(uow, principal, request_id)
