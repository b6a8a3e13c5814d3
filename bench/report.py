"""The tables: each operation × each server, the figure and its ratio to stock Radicale."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from bench.workloads import Outcome

BASELINE = "stock"
Results = Mapping[str, Mapping[str, Outcome]]  # server -> operation -> outcome


def milliseconds(value: float) -> str:
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    if value >= 10:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


def ratio(value: float, base: float) -> str:
    if base <= 0:
        return ""
    r = value / base
    if r < 0.1:
        return f" ({r:.2g}×)"  # two significant digits: 0.0039×, not 0.00×
    return f" ({r:.2f}×)" if r < 10 else f" ({r:.1f}×)" if r < 100 else f" ({r:.0f}×)"


def _figure(outcome: Outcome | None, stat: str) -> float | None:
    if outcome is None or outcome.status != "ok":
        return None
    if stat == "rate":
        return outcome.rate
    if stat == "errors":
        return float(outcome.errors)
    return outcome.percentile(50 if stat == "p50" else 95)


def cell(outcome: Outcome | None, stat: str, base: Outcome | None, with_ratio: bool = True) -> str:
    if outcome is None:
        return "-"
    if outcome.status == "fail":
        return "FAIL"
    if outcome.status != "ok":
        return outcome.status
    value = _figure(outcome, stat)
    if value is None:
        return "-"
    base_value = _figure(base, stat) if with_ratio and base is not outcome else None
    if stat == "errors":
        return str(int(value))
    if stat == "rate":
        text = f"{value:.1f}/s"
    else:
        text = milliseconds(value)
    if base_value is not None and stat != "errors":
        text += ratio(value, base_value)
    return text


def render(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    rule = "-+-".join("-" * w for w in widths)
    body = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join([line, rule, *body])


def table(
    title: str,
    servers: Sequence[str],
    labels: Mapping[str, str],
    rows_spec: Sequence[tuple[str, str, str]],  # (row label, operation, stat)
    results: Results,
    memory: Mapping[str, Mapping[str, int]],
    with_ratio: bool = True,
) -> str:
    rows = []
    for row_label, op, stat in rows_spec:
        base = results.get(BASELINE, {}).get(op)
        rows.append([row_label] + [cell(results.get(s, {}).get(op), stat, base, with_ratio) for s in servers])
    rss = []
    for s in servers:
        peak = memory.get(s, {}).get("VmHWM")
        rss.append(f"{peak / 1024:.0f} MiB" if peak else "-")
    rows.append(["peak RSS (VmHWM)", *rss])
    return f"{title}\n" + render(["operation", *(labels[s] for s in servers)], rows)
