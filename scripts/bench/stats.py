#!/usr/bin/env python3
"""Summarizes scripts/bench.sh results: one `name: value` line per figure (the median over the
runs), then the ratios of those medians.

  stats.py RESULTS [--partial]

RESULTS holds one `name value` line per measurement (a name repeats once per run); values that
are not numbers (e.g. `azurite_storage memory`) are printed as recorded (the last one wins).
Figures keep the order in which they were first recorded. --partial: skip missing ratios
silently (used when a run failed half way).
"""

import statistics
import sys

# (ratio name, numerator figure, denominator figure)
RATIOS = [
    ("cold_vs_direct", "azblobfs_cold_s", "direct_get_s"),
    ("warm_vs_local", "azblobfs_warm_s", "local_s"),
    ("cold_vs_rclone", "azblobfs_cold_s", "rclone_cold_s"),
    ("warm_vs_rclone", "azblobfs_warm_s", "rclone_warm_s"),
    ("ls_l_cold_vs_list", "azblobfs_ls_l_cold_s", "list_raw_s"),
    ("ls_l_cold_vs_rclone", "azblobfs_ls_l_cold_s", "rclone_ls_l_cold_s"),
    ("ls_l_warm_vs_rclone", "azblobfs_ls_l_warm_s", "rclone_ls_l_warm_s"),
    ("find_cold_vs_rclone", "azblobfs_find_cold_s", "rclone_find_cold_s"),
    ("du_cold_vs_rclone", "azblobfs_du_cold_s", "rclone_du_cold_s"),
    ("walk_cold_vs_rclone", "azblobfs_walk_cold_s", "rclone_walk_cold_s"),
]


def fmt(name, v):
    if isinstance(v, str):
        return v
    if name.endswith("_s"):
        return f"{v:.3f}"
    if name.endswith(("_ms", "_mib")):
        return f"{v:.2f}"
    if float(v).is_integer():
        return str(int(v))
    return f"{v:.4f}"


def main():
    args = sys.argv[1:]
    partial = "--partial" in args
    args = [a for a in args if a != "--partial"]
    if len(args) != 1:
        sys.exit(__doc__)
    values, order = {}, []
    with open(args[0]) as f:
        for line in f:
            parts = line.split()
            if len(parts) != 2:
                continue
            name, raw = parts
            if name not in values:
                values[name] = []
                order.append(name)
            try:
                values[name].append(float(raw))
            except ValueError:
                values[name].append(raw)
    med = {}
    for name in order:
        vals = values[name]
        nums = [v for v in vals if not isinstance(v, str)]
        med[name] = statistics.median(nums) if len(nums) == len(vals) else vals[-1]
        print(f"{name}: {fmt(name, med[name])}")
    for ratio, num, den in RATIOS:
        a, b = med.get(num), med.get(den)
        if a is None and b is None:
            continue  # the other benchmark (read vs meta)
        if isinstance(a, float) and isinstance(b, float) and b > 0:
            print(f"{ratio}: {a / b:.2f}")
        elif not partial:
            print(f"{ratio}: n/a")


if __name__ == "__main__":
    main()
