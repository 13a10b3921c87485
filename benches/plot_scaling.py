#!/usr/bin/env python3
"""plot_scaling.py — the index axis of one `benches/scaling.sh` run as a PNG: how peak RSS
and wall time of a snapshot, a structure check and a prune's plan grow with the number of
indexed blobs, the cache's answer time, and the cache's size per blob against restic's
in-memory index (344 B per blob, docs/BENCHMARKS.md).

    python3 benches/plot_scaling.py WORKDIR/index.tsv OUT.png

Reads the rows scaling.sh writes (blobs, run, wall_s, rss_mib; index_scale's figures as
runs named add_s, db_bytes, contains_us, …). Where the largest step is below 10^8 blobs,
the wall times are extended to 10^8 by a least-squares line through the measured steps,
drawn dashed and labelled as extrapolated. Needs matplotlib (`pip install matplotlib`).
"""

import csv
import sys
from collections import defaultdict

RUNS = [
    ("new-1000", "snapshot, 1000 new files", "#3572b0"),
    ("new-big", "snapshot, new 256 MiB file", "#6aa84f"),
    ("check", "check (structure)", "#c0732d"),
    ("prune", "prune --dry-run", "#8e44ad"),
]
TARGET = 1e8
RESTIC_BYTES_PER_BLOB = 344


def fit(xs, ys):
    """Least-squares line y = a + b·x."""
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / var if var else 0.0
    return my - b * mx, b


def frame(ax, title, unit):
    """A log-x panel against the number of indexed blobs, its y axis from zero."""
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.set_xlabel("blobs in the index")
    ax.set_ylabel(unit)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig_rows = defaultdict(dict)  # run -> blobs -> (wall, rss)
    for r in csv.DictReader(open(sys.argv[1]), delimiter="\t"):
        fig_rows[r["run"]][int(r["blobs"])] = (float(r["wall_s"]), float(r["rss_mib"] or "nan"))

    fig, ((ax_rss, ax_wall), (ax_q, ax_b)) = plt.subplots(2, 2, figsize=(12, 8.5))
    for run, label, colour in RUNS:
        pts = sorted(fig_rows.get(run, {}).items())
        if not pts:
            continue
        xs = [max(b, 1e5) for b, _ in pts]  # 0 blobs drawn at the axis' left end
        ax_rss.plot(xs, [v[1] for _, v in pts], "o-", color=colour, label=label)
        ax_wall.plot(xs, [v[0] for _, v in pts], "o-", color=colour, label=label)
        top = pts[-1][0]
        if run in ("check", "prune") and 0 < top < TARGET and len(pts) >= 3:
            a, b = fit([p[0] for p in pts if p[0] > 0], [p[1][0] for p in pts if p[0] > 0])
            ax_wall.plot([top, TARGET], [a + b * top, a + b * TARGET], "--", color=colour,
                         label=f"{label}, extrapolated ({b * 1e7:.0f} s per 10⁷ blobs)")
    add = sorted(fig_rows.get("add_s", {}).items())
    if add:
        ax_wall.plot([b for b, _ in add], [v[0] for _, v in add], "s:", color="#777777",
                     label="bench: writing a step's index files, then rebuilding the cache")
    for ax, title, unit in ((ax_rss, "peak RSS", "MiB"), (ax_wall, "wall time", "s")):
        ax.set_xscale("log")
        ax.set_title(f"{title} against indexed blobs")
        ax.set_xlabel("blobs in the index (0 drawn at 10⁵)")
        ax.set_ylabel(unit)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    ax_wall.set_yscale("log")
    ax_rss.set_ylim(bottom=0)

    for run, label in (("contains_us", "is it stored? (stored id)"),
                       ("unknown_us", "is it stored? (unknown id)"),
                       ("lookup_us", "where is it?")):
        pts = sorted(fig_rows.get(run, {}).items())
        if pts:
            ax_q.plot([b for b, _ in pts], [v[0] for _, v in pts], "o-", label=label)
    frame(ax_q, "cache answer time", "µs per query")

    pts = sorted(fig_rows.get("db_bytes", {}).items())
    if pts:
        ax_b.plot([b for b, _ in pts], [v[0] / b for b, v in pts], "o-", color="#3572b0",
                  label="cairn: SQLite cache database on disk, per blob")
        ax_b.axhline(RESTIC_BYTES_PER_BLOB, color="#999999", linestyle="--",
                     label=f"restic: in-memory index, {RESTIC_BYTES_PER_BLOB} B per blob (RAM)")
    frame(ax_b, "index bytes per blob", "bytes")

    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=110)


if __name__ == "__main__":
    main()
