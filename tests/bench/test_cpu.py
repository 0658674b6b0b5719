"""The bench's CPU budget: what each process spent per workflow, and each service's instances
together when `unbind up --instances` ran several."""

from __future__ import annotations

from tools.bench.cpu import CpuSnapshot, cpu_budget


def snapshot(services: dict[str, float], busy: float) -> CpuSnapshot:
    return CpuSnapshot(services=services, bench=1.0, machine_busy=busy, machine_total=busy * 2, at=0.0)


def test_instances_of_a_service_are_summed_and_stand_ins_left_out_of_the_services_total() -> None:
    before = snapshot({"binding": 1.0, "binding#2": 2.0, "risk": 0.0, "lender": 0.0}, busy=10.0)
    after = snapshot({"binding": 2.0, "binding#2": 2.5, "risk": 0.5, "lender": 0.1}, busy=14.0)

    budget = cpu_budget(before, after, workflows=100)

    per_workflow = budget["ms_per_workflow"]
    assert (per_workflow["binding"], per_workflow["binding#2"], per_workflow["risk"]) == (10.0, 5.0, 5.0)
    assert per_workflow["services"] == 20.0, "the lender stands in for another party"
    assert per_workflow["machine"] == 40.0 and per_workflow["kafka_postgres_kernel"] == 19.0
    assert budget["ms_per_workflow_by_service"] == {"binding": 15.0, "risk": 5.0, "lender": 1.0}


def test_one_instance_each_reports_no_separate_sum() -> None:
    before = snapshot({"binding": 1.0, "risk": 0.0}, busy=10.0)
    after = snapshot({"binding": 2.0, "risk": 0.5}, busy=12.0)

    assert cpu_budget(before, after, workflows=10)["ms_per_workflow_by_service"] is None
