"""Where the CPU went while the bench drove its workflows: each measured process's CPU time, the
bench's own and the whole machine's, read from /proc before and after, and what that makes per
workflow."""

from __future__ import annotations

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Processes `unbind up` runs in place of another party (the development lender): measured, reported
# apart, and counted in no total of the project's services.
STAND_INS = frozenset({"lender"})


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds used so far by each service process, by this process and by the whole machine."""

    services: dict[str, float]
    bench: float
    machine_busy: float
    machine_total: float
    at: float

    @classmethod
    def take(cls, pids: dict[str, int]) -> CpuSnapshot:
        ticks = os.sysconf("SC_CLK_TCK")
        services = {}
        for service, pid in pids.items():
            try:
                # utime and stime are fields 14 and 15; the command name before them may hold spaces.
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
                services[service] = (int(fields[11]) + int(fields[12])) / ticks
            except (OSError, IndexError, ValueError):
                continue
        usage = resource.getrusage(resource.RUSAGE_SELF)
        cpu = [int(value) / ticks for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = cpu[3] + cpu[4]  # idle and iowait
        return cls(services, usage.ru_utime + usage.ru_stime, sum(cpu) - idle, sum(cpu), time.monotonic())


def cpu_budget(before: CpuSnapshot, after: CpuSnapshot, workflows: int) -> dict[str, Any]:
    """CPU ms per workflow of each part, and how busy the machine's cores were between the snapshots."""
    if not workflows:
        return {}
    per_workflow = {
        service: round((after.services[service] - before.services[service]) * 1000 / workflows, 1)
        for service in after.services
        if service in before.services
    }
    # With `unbind up --instances N`, each instance is measured (`binding`, `binding#2`, ...).
    per_service: dict[str, float] = {}
    for instance, value in per_workflow.items():
        service = instance.partition("#")[0]
        per_service[service] = round(per_service.get(service, 0.0) + value, 1)
    services_total = sum(value for service, value in per_workflow.items() if service not in STAND_INS)
    stand_ins_total = sum(value for service, value in per_workflow.items() if service in STAND_INS)
    bench = round((after.bench - before.bench) * 1000 / workflows, 1)
    machine = round((after.machine_busy - before.machine_busy) * 1000 / workflows, 1)
    return {
        "ms_per_workflow": {
            **per_workflow,
            "services": round(services_total, 1),
            "bench": bench,
            "kafka_postgres_kernel": round(machine - services_total - stand_ins_total - bench, 1),
            "machine": machine,
        },
        # Each service's instances together, when it ran more than one.
        "ms_per_workflow_by_service": per_service if per_service.keys() != per_workflow.keys() else None,
        "cores": os.cpu_count(),
        "machine_busy": round(
            (after.machine_busy - before.machine_busy)
            / max(after.machine_total - before.machine_total, 1e-9),
            3,
        ),
    }
