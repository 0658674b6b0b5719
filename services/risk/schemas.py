"""Response models of the risk API."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel

from shared.events import RiskReason


class AssessmentOut(BaseModel):
    request_id: str
    binding_id: str
    user_id: str
    signals: dict[str, Any]
    score: int
    level: str
    decision: str
    reasons: list[RiskReason]
    required_methods: list[str]
    created_at: datetime
