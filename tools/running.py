"""A stack that `unbind up` runs, as the tools that play its clients see it (`unbind demo`,
`unbind bench`): the service URLs, the broker, the topic, the SMS sink and the process ids."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tools.errors import InfraError
from tools.kafka import Cluster, admin_cluster
from tools.services import load_settings
from tools.stack import live_supervisor, port_offset, read_pid_file, service_ports

# The services a customer's app and ops talk to (the dashboard is only looked at).
CUSTOMER_FACING = ("binding", "verification", "risk", "notification")


@dataclass(frozen=True)
class RunningStack:
    urls: dict[str, str]
    bootstrap: str
    topic: str
    sms_sink: Path
    offset: int = 0
    dashboard_url: str | None = None
    # Process ids of the services, when `unbind up` of the var dir recorded them.
    pids: dict[str, int] = field(default_factory=dict)
    # Where each instance (`risk`, `risk#2`, ...) answers by itself (its metrics, its readiness).
    instance_urls: dict[str, str] = field(default_factory=dict)
    # The PostgreSQL server of the services' databases (None: SQLite files in the var dir).
    database_server_url: str | None = None
    var_dir: Path = Path("var")

    @property
    def cluster(self) -> Cluster:
        """The stack's broker as the tools reach it (the admin of the var dir's broker)."""
        return admin_cluster(self.var_dir, self.bootstrap)


def find_running_stack(var_dir: Path, explicit_offset: int | None = None) -> RunningStack:
    """Where the stack runs: the pid file of this var dir's `unbind up`, else the ports of the offset."""
    binding = load_settings("binding", var_dir)
    sms_sink = load_settings("notification", var_dir).sms_sink  # type: ignore[attr-defined]
    state = read_pid_file(var_dir) if live_supervisor(var_dir) is not None else None
    if state is None:
        offset = port_offset(explicit_offset)
        ports = service_ports(offset)
        urls = {name: f"http://127.0.0.1:{ports[name]}" for name in CUSTOMER_FACING}
        return RunningStack(
            urls,
            binding.kafka_bootstrap_servers,
            binding.topic,
            sms_sink,
            offset,
            f"http://127.0.0.1:{ports['dashboard']}",
            instance_urls=urls,
            var_dir=var_dir,
        )
    recorded = state.get("services") or {}
    urls = {name: (recorded.get(name) or {}).get("url") for name in CUSTOMER_FACING}
    if not all(urls.values()):
        raise InfraError(
            f"{var_dir / 'unbind-up.pid'} names no URL for "
            f"{', '.join(name for name, url in urls.items() if not url)}; restart `unbind up`."
        )
    if explicit_offset is not None:
        wanted = service_ports(explicit_offset)
        running = {name: (recorded.get(name) or {}).get("port") for name in CUSTOMER_FACING}
        if any(running[name] != wanted[name] for name in CUSTOMER_FACING):
            raise InfraError(
                f"The `unbind up` of {var_dir} runs on ports {running}, not on those of --port-offset "
                f"{explicit_offset}; drop --port-offset or give the one `up` used."
            )
    dashboard = (recorded.get("dashboard") or {}).get("url")
    pids = {
        name: info["pid"]
        for name, info in recorded.items()
        if isinstance(info, dict) and isinstance(info.get("pid"), int)
    }
    instance_urls = {
        name: info.get("probe_url") or info["url"]
        for name, info in recorded.items()
        if isinstance(info, dict) and info.get("url")
    }
    bootstrap = state.get("kafka_bootstrap") or binding.kafka_bootstrap_servers
    server_url = state.get("database_server_url")
    return RunningStack(
        urls,
        bootstrap,
        binding.topic,
        sms_sink,
        dashboard_url=dashboard,
        pids=pids,
        instance_urls=instance_urls,
        database_server_url=server_url,
        var_dir=var_dir,
    )  # type: ignore[arg-type]


async def check_running(client: httpx.AsyncClient, stack: RunningStack, var_dir: Path) -> None:
    """Fail at once, and clearly, when the stack is not there rather than half-way through the story."""
    down = []
    for name in CUSTOMER_FACING:
        try:
            ready = (await client.get(f"{stack.urls[name]}/readyz", timeout=3.0)).status_code == 200
        except httpx.HTTPError:
            ready = False
        if not ready:
            down.append(f"{name} ({stack.urls[name]})")
    if not down:
        return
    if live_supervisor(var_dir) is None:
        shift = f" --port-offset {stack.offset}" if stack.offset else ""
        raise InfraError(
            f"No `unbind up` runs for {var_dir} and nothing is ready at {', '.join(down)}. Start the stack "
            f"first: `unbind --var-dir {var_dir} up{shift}`."
        )
    raise InfraError(
        f"Not ready: {', '.join(down)}. See `unbind --var-dir {var_dir} status` and {var_dir / 'logs'}."
    )
