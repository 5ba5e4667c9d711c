"""How many metrics fit in the collector's 4096-byte termination message.

Prints `name=value` lines: for a few realistic naming styles, the largest metric count
whose encoded result still fits, and the compression ratio at that count.
"""

from __future__ import annotations

import json
import random

from eval_runner import results

STYLES = {
    # e.g. per-subject scores of an MMLU-like set: "mmlu_high_school_physics_acc"
    "subject_acc": lambda i: f"mmlu_subject_{i:03d}_acc",
    "short": lambda i: f"m{i}",
    "category_f1": lambda i: f"bfcl_v4_category_{i:03d}_f1_score",
}


def fits(style, count: int, rng: random.Random, digits: int | None) -> tuple[bool, int, int]:
    metrics = {
        STYLES[style](i): rng.random() if digits is None else round(rng.random(), digits)
        for i in range(count)
    }
    raw = len(json.dumps(metrics, separators=(",", ":")))
    try:
        return True, len(results.encode(metrics)), raw
    except results.MetricsError:
        return False, 0, raw


def capacity(style: str, digits: int | None) -> tuple[int, float]:
    lo, hi = 1, 4096
    while lo < hi:  # largest count that fits
        mid = (lo + hi + 1) // 2
        if fits(style, mid, random.Random(mid), digits)[0]:
            lo = mid
        else:
            hi = mid - 1
    _, encoded, raw = fits(style, lo, random.Random(lo), digits)
    return lo, raw / encoded


def main() -> None:
    for digits in (4, 6, None):
        for style in STYLES:
            count, ratio = capacity(style, digits)
            precision = "full" if digits is None else str(digits)
            print(
                f"style={style} value_digits={precision} max_metrics={count} "
                f"raw_to_encoded_ratio={ratio:.2f}"
            )


if __name__ == "__main__":
    main()
