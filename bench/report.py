"""Write the measured tables into ``docs/performance.md`` from the ``--json`` files of a run.

Only the part between ``<!-- bench:<db>:start -->`` and ``<!-- bench:<db>:end -->`` is
replaced; the analysis around it is written by hand. ``make bench`` and ``make bench-sqlite``
call this after the benchmarks::

    python -m bench.report --db postgres --api .bench/api.json --settlement .bench/settlement.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "performance.md"


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{mem_kb / 1024**2:.0f} GiB"
    except OSError:
        memory = "unknown memory"
    return (
        f"{os.cpu_count()} cores ({cpu}), {memory}, {platform.system()} {platform.release()},"
        f" Python {platform.python_version()}, PostgreSQL {_version(['postgres', '--version'])}"
    )


def _version(argv: list[str]) -> str:
    for candidate in (argv, ["psql", "--version"]):
        try:
            out = subprocess.run(candidate, capture_output=True, text=True, timeout=10).stdout
        except OSError:
            continue
        if match := re.search(r"\d+(\.\d+)+", out):
            return match.group(0)
    return "unknown"


def _n(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}" if value >= 100 else f"{value:,.3g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _phase_row(what: str, clients: Any, p: dict[str, Any], rate: str) -> str:
    lat = p.get("latency", {})
    noisy = " (noisy)" if p.get("noisy") else ""
    return (
        f"| {what}{noisy} | {clients} | {_n(p.get(rate))} | {_n(lat.get('p50_ms'))}"
        f" | {_n(lat.get('p99_ms'))} | {_n(p.get('errors'))} |"
    )


def api_section(out: dict[str, Any]) -> list[str]:
    api = out["api"]
    lines = [
        f"Signed API load: {api['partners']} partners, {api['members']:,} members,"
        f" {api['workers']} server workers; {api.get('warmup_seconds')} s warm-up per phase.",
        "",
        "| what | clients | req/s (tx/s) | p50 ms | p99 ms | errors |",
        "|---|---|---|---|---|---|",
    ]
    for variant, phases in api["phases"].items():
        for clients, p in phases.items():
            lines.append(_phase_row(f"API mix ({variant})", clients, p, "requests_per_s"))
    for variant, p in api.get("hot_member", {}).items():
        lines.append(
            _phase_row(
                f"API, one hot member, 1-point redemptions ({variant})",
                p["clients"],
                p,
                "requests_per_s",
            )
        )
    for variant, by_clients in out.get("bare", {}).items():
        for clients, p in by_clients.items():
            lines.append(
                _phase_row(f"(a) bare Litestar + verify ({variant})", clients, p, "requests_per_s")
            )
    for schema, by_clients in out.get("raw_ledger", {}).items():
        for clients, r in by_clients.items():
            for mode in ("random", "hot"):
                if mode in r:
                    lines.append(
                        _phase_row(
                            f"(b) raw ledger tx, {mode} member ({schema})",
                            clients,
                            r[mode],
                            "tx_per_s",
                        )
                    )
    lines.append("")
    if out.get("ratios"):
        lines += [
            "| phase | API req/s | ledger writes/s | vs (a) | writes vs (b) |",
            "|---|---|---|---|---|",
        ]
        for name, r in out["ratios"].items():
            vs_b = next((v for k, v in r.items() if k.startswith("writes_vs_raw_ledger")), None)
            lines.append(
                f"| {name} | {_n(r['api_requests_per_s'])} | {_n(r['api_ledger_writes_per_s'])}"
                f" | {_n(r.get('vs_bare_same_server'))} | {_n(vs_b)} |"
            )
        lines.append("")
    audit = api.get("audit", {})
    lines.append(
        f"Afterwards: auditor `{audit.get('verdict')}`; entries in the database match the"
        f" clients' 2xx answers: {api.get('cross_check', {}).get('ok')}."
        + (
            f" Ed25519 on this box: verify {out['ed25519']['verify_us']} µs, sign"
            f" {out['ed25519']['sign_us']} µs; the server's whole signature check"
            f" {out['ed25519']['server_check_us']} µs."
            if "ed25519" in out
            else ""
        )
    )
    return lines


def _cost_row(what: str, clients: Any, p: dict[str, Any]) -> str:
    cost = p.get("cpu_us_per_request") or {}
    parts = [cost.get(k) for k in ("machine_busy", "server", "postgres", "client")]
    return f"| {what} | {clients} | " + " | ".join(_n(v) for v in parts) + " |"


def cost_section(out: dict[str, Any]) -> list[str]:
    """Machine time per request of the API and of both ceilings, and the bound they set: a
    request that did (a)'s work and (b)'s and nothing else would cost their sum."""
    api, bare = out["api"], out.get("bare", {})
    raw: dict[str, Any] = next(iter(out.get("raw_ledger", {}).values()), {})
    if not bare or not raw:
        return []
    lines = [
        "Machine time per request (CPU µs of every process on the box, measured by phase):",
        "",
        "| what | clients | machine | server | PostgreSQL | load generator |",
        "|---|---|---|---|---|---|",
    ]
    bounds = []
    for variant, phases in api["phases"].items():
        for clients, p in phases.items():
            lines.append(_cost_row(f"API mix ({variant})", clients, p))
            a = bare.get(variant, {}).get(clients)
            b = raw.get(clients, {}).get("random")
            ratio = out.get("ratios", {}).get(f"{variant}/c{clients}")
            if a is None or b is None or ratio is None:
                continue
            lines.append(_cost_row(f"(a) bare Litestar + verify ({variant})", clients, a))
            lines.append(_cost_row("(b) raw ledger tx, random member", clients, b))
            a_us = a["cpu_us_per_request"]["machine_busy"]
            b_us = b["cpu_us_per_request"]["machine_busy"]
            cores = p.get("cpu_cores", {}).get("cores") or os.cpu_count() or 1
            bound = cores * 1e6 / (a_us + b_us)
            share = ratio["api_ledger_writes_per_s"] / ratio["api_requests_per_s"]
            writes_vs_b = round(bound * share / b["tx_per_s"], 3)
            reached = round(ratio["api_requests_per_s"] / bound, 2)
            bounds.append(
                f"{clients} clients: {cores} cores / ({_n(a_us)} + {_n(b_us)}) µs ="
                f" {_n(round(bound, 1))} req/s, writes {_n(writes_vs_b)}x (b); the API"
                f" reached {_n(reached)} of it"
            )
    if bounds:
        lines += ["", "The bound of (a) + (b): " + "; ".join(bounds) + "."]
    return lines


def settlement_section(runs: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| postings (day / history) | partners | load s | prepare s | sign s | settle s"
        " | statements/s | peak RSS MB | status | one scan of the postings s (same run) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in runs:
        s = r["summary"]
        lines.append(
            f"| {_n(s['postings'])} / {_n(s['history_postings'])} | {_n(s['partners'])}"
            f" | {_n(s['load_seconds'])} | {_n(s['prepare_seconds'])} | {_n(s['sign_seconds'])}"
            f" | **{_n(s['settle_seconds'])}** | {_n(s['statements_per_second'])}"
            f" | {_n(s['peak_rss_mb_settling_process'])} | {s['status']}"
            f" | {_n(s.get('postings_scan_seconds'))} |"
        )
    return lines


def render(db: str, api: list[Path], settlement: list[Path], commands: list[str]) -> str:
    lines = [
        f"Generated by `python -m bench.report` on"
        f" {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} ({db}).",
        f"Machine: {machine()}.",
        "",
        "Commands:",
        "",
        "```sh",
        *commands,
        "```",
        "",
    ]
    for path in api:
        out = json.loads(path.read_text())
        lines += [*api_section(out), ""]
        if cost := cost_section(out):
            lines += [*cost, ""]
    runs = [r for path in settlement for r in json.loads(path.read_text())]
    if runs:
        lines += [*settlement_section(runs), ""]
    return "\n".join(lines)


def replace_section(doc: str, db: str, body: str) -> str:
    start, end = f"<!-- bench:{db}:start -->", f"<!-- bench:{db}:end -->"
    if start not in doc or end not in doc:
        return f"{doc.rstrip()}\n\n{start}\n{body}\n{end}\n"
    before, rest = doc.split(start, 1)
    return f"{before}{start}\n{body}\n{end}{rest.split(end, 1)[1]}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--api", type=Path, action="append", default=[])
    parser.add_argument("--settlement", type=Path, action="append", default=[])
    parser.add_argument("--command", action="append", default=[], help="a command that ran")
    parser.add_argument("--doc", type=Path, default=DOC)
    args = parser.parse_args(argv)
    body = render(args.db, args.api, args.settlement, args.command)
    args.doc.write_text(replace_section(args.doc.read_text(), args.db, body))
    print(f"wrote the {args.db} tables into {args.doc}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
