"""OverallSystemUsage: min/p50/p95/p99/max of every system metric over the whole job; never triggers.

SageMaker's verdict text, kept: p95 GPU < 70 and p95 CPU < 70 -> under-utilised (smaller instance);
p95 GPU < 70 and p95 CPU > 70 -> likely CPU bottlenecks; p50 GPU > 70 -> well utilised. Without a GPU: the
CPU p95 against the same 70 % line. Totals are means over cores (CPU) and GPUs.
"""

from __future__ import annotations

import statistics

from vizsla.profiler.data import ProfileData, describe
from vizsla.profiler.rules import register_rule
from vizsla.profiler.rules.base import NO_ISSUES, BaseRule, Finding


def usage_table(data: ProfileData) -> dict[str, dict]:
    """metric label -> describe(series): the report's system usage table."""
    table = {
        "CPU total (%)": describe(data.cpu_total()),
        "CPU busiest core (%)": describe(data.cpu_max_core()),
        "I/O wait, busiest core (%)": describe(data.iowait_max_core()),
        "Memory used (%)": describe(data.series("memory_percent")),
        "Process + workers RSS (MB)": describe(data.series("rss_mb")),
        "Disk read (MB/s)": describe([v / 2**20 for v in data.series("disk_read_bps")]),
        "Disk write (MB/s)": describe([v / 2**20 for v in data.series("disk_write_bps")]),
        "Network received (MB/s)": describe([v / 2**20 for v in data.series("net_recv_bps")]),
        "Network sent (MB/s)": describe([v / 2**20 for v in data.series("net_sent_bps")]),
    }
    for index in range(data.gpu_count):
        table[f"GPU{index} utilisation (%)"] = describe(data.gpu_series(index, "util"))
        table[f"GPU{index} memory (%)"] = describe(data.gpu_series(index, "memory_percent"))
        table[f"GPU{index} power (W)"] = describe(data.gpu_series(index, "power_w"))
    return {label: stats for label, stats in table.items() if stats["n"]}


@register_rule
class OverallSystemUsage(BaseRule):
    name = "OverallSystemUsage"
    description = "Summarises CPU, memory, I/O, network and GPU usage over the job (informational)."
    defaults = {"threshold": 70}

    def evaluate(self, data: ProfileData) -> Finding:
        table = usage_table(data)
        cpu = table.get("CPU total (%)")
        if not cpu:
            return self.too_few("system samples", 0, 1)
        line = self.params["threshold"]
        numbers = {"cpu_p95": cpu["p95"], "samples": cpu["n"]}
        if data.has_gpu:
            gpu_p95 = statistics.fmean(table[f"GPU{i} utilisation (%)"]["p95"] for i in range(data.gpu_count))
            gpu_p50 = statistics.fmean(table[f"GPU{i} utilisation (%)"]["p50"] for i in range(data.gpu_count))
            numbers.update(gpu_p95=gpu_p95, gpu_p50=gpu_p50)
            if gpu_p50 > line:
                message = f"GPUs well utilised (p50 {gpu_p50:.0f}%)"
            elif cpu["p95"] > line:
                message = f"GPU p95 {gpu_p95:.0f}% with CPU p95 {cpu['p95']:.0f}%: likely CPU bottlenecks"
            else:
                message = (
                    f"GPU p95 {gpu_p95:.0f}% and CPU p95 {cpu['p95']:.0f}%: under-utilised; "
                    "a smaller machine would do"
                )
        elif cpu["p95"] > line:
            message = f"CPUs well utilised (p95 {cpu['p95']:.0f}% over {data.cores} cores)"
        else:
            message = f"CPUs under-used (p95 {cpu['p95']:.0f}% over {data.cores} cores)"
        return self.finding(NO_ISSUES, message, numbers=numbers, datapoints=cpu["n"])
