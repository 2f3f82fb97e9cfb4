"""What each scenario measured, printed after the run and written to ``.reliability/``:
requests, outcomes by status, acknowledged writes checked, the auditor's verdict."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS_DIR = Path(".reliability")


@dataclass
class Figures:
    scenario: str
    backend: str
    requests: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    acknowledged_checked: int = 0
    audit: str = "not run"
    extra: dict[str, Any] = field(default_factory=dict)
    passed: bool | None = None

    def record(self, statuses: Counter[str], **extra: Any) -> None:
        self.statuses = dict(sorted((self.statuses | dict(statuses)).items()))
        self.requests = sum(self.statuses.values())
        self.extra.update(extra)


RESULTS: list[Figures] = []


def summary_lines() -> list[str]:
    lines = ["| scenario | db | result | requests | outcomes | acked checked | audit | figures |"]
    lines.append("|---|---|---|---|---|---|---|---|")
    for f in RESULTS:
        outcomes = ", ".join(f"{k}: {v}" for k, v in f.statuses.items()) or "-"
        extra = ", ".join(f"{k}={v}" for k, v in f.extra.items()) or "-"
        result = {True: "pass", False: "FAIL", None: "?"}[f.passed]
        lines.append(
            f"| {f.scenario} | {f.backend} | {result} | {f.requests} | {outcomes} "
            f"| {f.acknowledged_checked} | {f.audit} | {extra} |"
        )
    return lines


def write(backend: str) -> Path:
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"results-{backend}.json"
    path.write_text(json.dumps([asdict(f) for f in RESULTS], indent=2) + os.linesep)
    (RESULTS_DIR / f"results-{backend}.md").write_text("\n".join(summary_lines()) + "\n")
    return path
