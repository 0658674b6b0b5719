"""Settings of the dashboard (environment prefix `UNBIND_`; see shared.settings)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from pydantic import Field

from shared.settings import ServiceSettings


class DashboardSettings(ServiceSettings):
    service_name = "dashboard"
    default_port = 8005
    # The dashboard signs nothing: it reads the stream and forwards the ops user's own token to the services.
    needs_signing_key: ClassVar[bool] = False

    # Where one-time sign-in links are exchanged for an ops session (shared.login_links); unset: none.
    login_link_dir: Path | None = None
    # The review queue and its decisions go to the risk service, as the signed-in ops user.
    risk_url: str = "http://127.0.0.1:8003"
    # The case view and the support view read binding, verification and notification, as the
    # signed-in ops user (and resend a lost message through notification).
    binding_url: str = "http://127.0.0.1:8001"
    verification_url: str = "http://127.0.0.1:8002"
    notification_url: str = "http://127.0.0.1:8004"
    # An open request without a transition for this long is listed as stuck.
    stuck_after_seconds: int = Field(120, ge=1)
    # How many recent events the live feed keeps (the page asks for them on load).
    feed_size: int = Field(500, ge=10, le=10_000)
    # Finished requests kept in memory with their stage times; older ones are only counted.
    finished_requests_kept: int = Field(20_000, ge=100)
    # The overview is pushed to open pages at most this often, and only when it changed.
    push_interval_seconds: float = Field(1.0, gt=0, le=10)

    def service_urls(self) -> dict[str, str]:
        """Where each service the dashboard calls lives."""
        return {
            "risk": self.risk_url,
            "binding": self.binding_url,
            "verification": self.verification_url,
            "notification": self.notification_url,
        }
