#!/usr/bin/env python3
"""plot.py — the figures of one `benches/compare.sh` run as a PNG: per scenario, each tool's
wall time and the first snapshot's peak RSS as a ratio to restic's (restic = 1; lower is
better), with the issue's targets for cairn drawn as marks.

    python3 benches/plot.py WORKDIR/results.tsv OUT.png

Reads the raw rows compare.sh writes (rep, tool, scenario, wall_s, user_s, sys_s, maxrss_kib,
repo_bytes, rc); with REPS > 1 the median per tool and scenario is plotted. Needs matplotlib
(`pip install matplotlib`); plots only what it is given, so the PNG shows measured figures only.
"""

import csv
import statistics
import sys

SCENARIOS = [
    ("first", "first snapshot", "wall_s", 0.33),
    ("unchanged", "unchanged", "wall_s", 0.20),
    ("modified-1%", "1 % modified", "wall_s", None),
    ("restore", "restore", "wall_s", 0.33),
    ("check-read-data", "check --read-data", "wall_s", 0.25),
    ("check-auth-only", "check, seals only", "wall_s", 0.25),
    ("first", "peak RSS, first", "maxrss_kib", 0.50),
]
# cairn-only scenarios, set against restic's figure for the same work.
AGAINST = {"check-auth-only": "check-read-data"}
TOOLS = [("cairn", "#3572b0"), ("borg-zstd3", "#c0732d"), ("borg-lz4", "#d9a441")]


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))

    def value(tool, scenario, field):
        vs = [
            float(r[field])
            for r in rows
            if r["tool"] == tool and r["scenario"] == scenario and r[field] not in ("", None)
        ]
        return statistics.median(vs) if vs else None

    fig, ax = plt.subplots(figsize=(10, 4.8), dpi=120)
    width = 0.8 / len(TOOLS)
    labels = []
    for i, (scenario, label, field, target) in enumerate(SCENARIOS):
        base = value("restic", AGAINST.get(scenario, scenario), field)
        labels.append(label)
        for k, (tool, colour) in enumerate(TOOLS):
            v = value(tool, scenario, field)
            if v is None or not base:
                continue
            x = i - 0.4 + width * (k + 0.5)
            ratio = v / base
            ax.bar(x, ratio, width, color=colour, label=tool if i == 0 else None)
            ax.text(x, ratio + 0.02, f"{ratio:.2f}", ha="center", va="bottom", fontsize=7)
        if target is not None:
            x0 = i - 0.4 + width * 0.05
            ax.hlines(target, x0, x0 + width * 0.9, colors="black", linestyles="dashed")
    ax.axhline(1.0, color="#777", linewidth=0.8)
    ax.text(len(SCENARIOS) - 0.45, 1.01, "restic = 1", fontsize=8, color="#555", ha="right")
    ax.set_xticks(range(len(SCENARIOS)))
    ax.set_xticklabels(labels, fontsize=9)
    ax.set_ylabel("ratio to restic (lower is better)")
    ax.set_title("cairn vs restic vs borg (usr corpus; dashes: cairn's targets)")
    ax.plot([], [], color="black", linestyle="dashed", label="cairn target")
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(sys.argv[2])


if __name__ == "__main__":
    main()
