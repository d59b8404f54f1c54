"""LoadBalancing: do the GPUs of a multi-GPU job, or the processes of a distributed job, carry the same load?

GPUs, as SageMaker: per GPU a histogram of utilisation in 2 %-wide bins; a pair of GPUs whose histograms
are further apart than `threshold` in Jensen-Shannon distance is a violation (threshold 0.5 in the SDK and
the docs, 0.2 in the rule code; we keep 0.5). `patience` (1000) becomes `min_samples` (10). Needs 2+ GPUs.

Ranks (ours; SageMaker compares only GPUs): every process of a distributed job writes its step times, and
the rule compares their medians over each rank's steps (its first step and the torch.profiler window left
out, as StepOutlier does; the median also shrugs off the slower first batch of each epoch). The ranks of a
data-parallel job run in lock step: every step ends with the gradient all-reduce, so a slow rank makes the
others wait there and all step times come out equal. The slow rank shows in what happens before the
all-reduce, so three medians per rank are compared, each as a share of the fastest rank's median step:
  step      the whole step (ranks that are not in lock step, or a rank behind on every step);
  data      the wait for the batch (that rank's loader: its data share, workers, storage);
  to_sync   data wait + forward, the time to reach the gradient all-reduce (its compute: its device, or
            other load on its machine).
The rule triggers when the largest gap between the slowest and the fastest rank exceeds `rank_threshold`
(0.2: the slowest rank costs every step 20 % more than the fastest needs). Each rank needs `min_steps` (10).
With 2+ GPUs and 2+ ranks both comparisons run; the finding is the one that triggered.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from vizsla.profiler.data import ProfileData, percentile
from vizsla.profiler.rules import register_rule
from vizsla.profiler.rules.base import INSUFFICIENT, NO_ISSUES, TRIGGERED, BaseRule, Finding

BINS = 50  # 2 %-wide bins over 0-100 %


def histogram(values: list[float]) -> list[float]:
    counts = [0.0] * BINS
    for value in values:
        counts[min(BINS - 1, max(0, int(value // 2)))] += 1
    total = sum(counts) or 1.0
    return [c / total for c in counts]


def js_distance(p: list[float], q: list[float]) -> float:
    """Jensen-Shannon distance (base 2, so in [0, 1]) between two discrete distributions."""
    m = [(a + b) / 2 for a, b in zip(p, q, strict=True)]

    def kl(a: list[float]) -> float:
        return sum(x * math.log2(x / y) for x, y in zip(a, m, strict=True) if x > 0)

    return math.sqrt(max(0.0, (kl(p) + kl(q)) / 2))


def rank_stats(data: ProfileData) -> list[dict[str, Any]]:
    """Per rank: step count, median / p90 / mean step time, median data wait and time to the all-reduce."""
    rows = []
    for rank in data.ranks:
        steps = data.comparable_steps(data.rank_steps[rank])
        totals = [r["total_s"] for r in steps if r.get("total_s") is not None]
        if not totals:
            rows.append({"rank": rank, "steps": 0})
            continue
        rows.append(
            {
                "rank": rank,
                "steps": len(totals),
                "median_s": statistics.median(totals),
                "p90_s": percentile(totals, 90),
                "mean_s": statistics.fmean(totals),
                "data_median_s": statistics.median(r.get("data_s", 0.0) for r in steps),
                "to_sync_median_s": statistics.median(
                    r.get("data_s", 0.0) + r.get("forward_s", 0.0) for r in steps
                ),
            }
        )
    return rows


MEASURES = {"step": "median_s", "data": "data_median_s", "to_sync": "to_sync_median_s"}
ADVICE = {
    "step": "find what makes it slower: its data share (more or larger images, fewer loader workers, "
    "slower storage), its device (a slower or throttled GPU, a CPU instead of a GPU) or other load on its "
    "machine (check its cores)",
    "data": "it waits longer for its batches: check its data share (more or larger, slower-to-decode "
    "images), its loader workers (data.num_workers for its cores) and its storage",
    "to_sync": "it computes slower: check its device (a slower or throttled GPU, a CPU instead of a GPU) "
    "and other load on its machine (other processes on its cores)",
}


@register_rule
class LoadBalancing(BaseRule):
    name = "LoadBalancing"
    description = (
        "Compares the utilisation of the GPUs of a multi-GPU job and the step times of the processes of a "
        "distributed job."
    )
    defaults = {"threshold": 0.5, "min_samples": 10, "rank_threshold": 0.2, "min_steps": 10}

    def evaluate(self, data: ProfileData) -> Finding:
        findings = []
        if data.gpu_count >= 2:
            findings.append(self._gpus(data))
        if len(data.ranks) >= 2:
            findings.append(self._ranks(data))
        if not findings:
            return self.finding(
                INSUFFICIENT,
                f"{data.gpu_count} GPU(s) and {data.world_size} process(es): load balancing needs two or "
                "more GPUs or a distributed job",
            )
        if len(findings) == 1:
            return findings[0]
        order = {TRIGGERED: 0, NO_ISSUES: 1, INSUFFICIENT: 2}
        main, other = sorted(findings, key=lambda f: order[f.verdict])
        label = {id(findings[0]): "GPUs", id(findings[1]): "ranks"}
        return self.finding(
            main.verdict,
            f"{label[id(main)]}: {main.message}; {label[id(other)]}: {other.message}",
            recommendation=main.recommendation,
            numbers={**other.numbers, **main.numbers},
            datapoints=main.datapoints,
            details=main.details + other.details,
        )

    def _ranks(self, data: ProfileData) -> Finding:
        rows = rank_stats(data)
        need = int(self.params["min_steps"])
        usable = [r for r in rows if r["steps"] >= need]
        if len(usable) < 2:
            counts = ", ".join(f"rank {r['rank']}: {r['steps']}" for r in rows)
            return self.finding(
                INSUFFICIENT,
                f"comparing ranks needs {need} train steps on two ranks or more ({counts}); profile a "
                "longer job or lower LoadBalancing.min_steps",
                datapoints=sum(r["steps"] for r in rows),
                details=rows,
            )
        base = min(r["median_s"] for r in usable)
        gaps = {}
        for measure, key in MEASURES.items():
            slow = max(usable, key=lambda r, k=key: r[k])
            fast = min(usable, key=lambda r, k=key: r[k])
            gaps[measure] = (slow, fast, (slow[key] - fast[key]) / base if base > 0 else 0.0)
        # The most specific measure within a hundredth of a step of the largest gap: a slow loader widens
        # the data, to_sync and (out of lock step) step gaps alike, and is named as the data wait.
        largest = max(g[2] for g in gaps.values())
        measure = next(m for m in ("data", "to_sync", "step") if gaps[m][2] >= largest - 0.01)
        slow, fast, share = gaps[measure]
        key = MEASURES[measure]
        numbers: dict[str, Any] = {
            "ranks": len(usable),
            "fastest_median_step_s": base,
            "slowest_median_step_s": max(r["median_s"] for r in usable),
            **{f"{m}_gap": g[2] for m, g in gaps.items()},
            "slow_rank": slow["rank"],
            "measure": measure,
        }
        details = [{k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()} for r in rows]
        limit = self.params["rank_threshold"]
        gap_ms = 1000 * (slow[key] - fast[key])
        if measure == "step":
            what = (
                f"rank {slow['rank']}'s median step takes {slow[key]:.3f} s, {share:.0%} longer than rank "
                f"{fast['rank']}'s {fast[key]:.3f} s"
            )
        elif measure == "data":
            what = (
                f"rank {slow['rank']} waits {gap_ms:.0f} ms longer for its batch than rank {fast['rank']} "
                f"(median {slow[key]:.3f} s vs {fast[key]:.3f} s), {share:.0%} of the fastest median step "
                f"{base:.3f} s"
            )
        else:
            what = (
                f"rank {slow['rank']} reaches the gradient all-reduce {gap_ms:.0f} ms later than rank "
                f"{fast['rank']} (median data wait + forward {slow[key]:.3f} s vs {fast[key]:.3f} s), "
                f"{share:.0%} of the fastest median step {base:.3f} s"
            )
        if share <= limit:
            return self.finding(
                NO_ISSUES,
                f"{len(usable)} ranks balanced: largest gap {share:.0%} of a step ({measure}), threshold "
                f"{limit:.0%}; median steps {base:.3f}-{numbers['slowest_median_step_s']:.3f} s",
                numbers=numbers,
                datapoints=sum(r["steps"] for r in usable),
                details=details,
            )
        return self.finding(
            TRIGGERED,
            f"{what} (threshold {limit:.0%}); the other ranks wait for it at every step",
            recommendation=f"the job runs at rank {slow['rank']}'s pace; {ADVICE[measure]}",
            numbers=numbers,
            datapoints=sum(r["steps"] for r in usable),
            details=details,
        )

    def _gpus(self, data: ProfileData) -> Finding:
        samples = data.train_system()
        series = [data.gpu_series(i, "util", samples) for i in range(data.gpu_count)]
        if min(len(s) for s in series) < self.params["min_samples"]:
            return self.too_few("GPU samples", min(len(s) for s in series), int(self.params["min_samples"]))
        hists = [histogram(s) for s in series]
        details = [
            {"gpus": [i, j], "distance": round(js_distance(hists[i], hists[j]), 3)}
            for i in range(len(hists))
            for j in range(i + 1, len(hists))
        ]
        worst = max(details, key=lambda d: d["distance"])
        numbers = {"max_distance": worst["distance"], "gpus": data.gpu_count}
        if worst["distance"] <= self.params["threshold"]:
            return self.finding(
                NO_ISSUES,
                f"largest distance {worst['distance']:.2f}",
                numbers=numbers,
                datapoints=len(samples),
                details=details,
            )
        return self.finding(
            TRIGGERED,
            f"GPUs {worst['gpus']} differ by {worst['distance']:.2f} (threshold {self.params['threshold']})",
            recommendation="give every GPU the same share: use DistributedDataParallel with one process per "
            "GPU "
            "and equal per-GPU batches (train.batch_size divisible by the GPU count)",
            numbers=numbers,
            datapoints=len(samples),
            details=details,
        )
