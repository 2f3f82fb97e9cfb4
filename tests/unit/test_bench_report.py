"""The bench report's bound: a request doing the work of both ceilings and nothing else."""

from __future__ import annotations

from typing import Any

from bench.report import cost_section


def _phase(machine_us: float, **more: Any) -> dict[str, Any]:
    return {"cpu_us_per_request": {"machine_busy": machine_us}, **more}


def test_the_bound_is_the_cores_over_the_two_ceilings_machine_time() -> None:
    out = {
        "api": {"phases": {"shipped": {"16": _phase(2000.0, cpu_cores={"cores": 2})}}},
        "bare": {"shipped": {"16": _phase(750.0)}},
        "raw_ledger": {"coalition": {"16": {"random": _phase(1250.0, tx_per_s=1600.0)}}},
        "ratios": {"shipped/c16": {"api_requests_per_s": 800.0, "api_ledger_writes_per_s": 700.0}},
    }
    lines = cost_section(out)
    # 2 cores / 2,000 µs = 1,000 req/s; 87.5% of them writes = 875/s = 0.547x (b)
    assert lines[-1] == (
        "The bound of (a) + (b): 16 clients: 2 cores / (750.0 + 1,250.0) µs = 1,000.0 req/s,"
        " writes 0.547x (b); the API reached 0.8 of it."
    )
    assert "| API mix (shipped) | 16 | 2,000.0 | - | - | - |" in lines


def test_no_bound_without_both_ceilings() -> None:
    out = {"api": {"phases": {"shipped": {"16": _phase(2000.0)}}}, "bare": {}}
    assert cost_section(out) == []
