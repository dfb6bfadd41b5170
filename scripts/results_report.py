#!/usr/bin/env python3
"""results_report.py — docs/results.md's tables from what scripts/results.sh wrote: each
compare.json as a table (mean ± std over seeds), each continual run's printed accuracy matrix,
and the load averages the log printed. The tables go between the markers
<!-- results.sh: begin --> and <!-- results.sh: end --> of the markdown file, the prose around
them is left alone; the compare SVGs are copied into the figures folder.

Usage: results_report.py OUT_DIR docs/results.md docs/figures [results.log ...]
"""
import glob
import json
import os
import re
import shutil
import sys

BEGIN, END = "<!-- results.sh: begin -->", "<!-- results.sh: end -->"


def pm(mean, std, digits=3):
    if mean is None:
        return "—"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def compare_table(path, title):
    r = json.load(open(path))
    bits = sorted({int(k[7]) for row in r["rows"] for k in row if re.fullmatch(r"acc_int\d_mean", k)},
                  reverse=True)
    norm = any(row.get("acc_norm_mean") is not None for row in r["rows"])
    curves = r.get("eval_every", 0) > 0
    head = ["configuration", "trainable", "acc"]
    if norm:
        head.append("acc_norm")
    head += [f"int{b} acc (Δ)" for b in bits]
    if curves:
        head.append(f"steps to {r['target_acc']:.3f}")
    head += ["peak MiB", "step s"]
    seeds = r["rows"][0]["seeds"] if r["rows"] else 0
    lines = [f"**{title}** — {r['steps']} steps, {seeds} seeds; accuracy before training "
             f"{r['base_acc']:.3f}" + (f"; curve every {r['eval_every']} steps" if curves else ""),
             "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in r["rows"]:
        cells = [row["label"], f"{row['trainable']:,}", pm(row["acc_mean"], row["acc_std"])]
        if norm:
            cells.append(pm(row.get("acc_norm_mean"), row.get("acc_norm_std")))
        for b in bits:
            q = row[f"acc_int{b}_mean"]
            cells.append(f"{pm(q, row[f'acc_int{b}_std'])} ({q - row['acc_mean']:+.3f})")
        if curves:
            s = row.get("steps_to_target", -1)
            cells.append(str(s) if s >= 0 else "not reached")
        cells += [f"{row['peak_mb']:.0f}", pm(row["step_seconds_mean"], row["step_seconds_std"], 2)]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def continual_matrix(path):
    """The matrix `krongrad train --tasks` printed: the line after "accuracy after each stage"
    names the tasks, then "before", one row per stage, "forgetting", "mean forgetting X"."""
    lines = open(path).read().splitlines()
    start = next((i for i, l in enumerate(lines) if l.startswith("accuracy after each stage")), None)
    if start is None or start + 1 >= len(lines):
        return None, {}, None
    names, rows, mean = lines[start + 1].split(), {}, None
    for line in lines[start + 2:]:
        cells = line.split()
        m = re.search(r"mean forgetting ([-0-9.]+)", line)
        if m:
            mean = float(m.group(1))
        elif len(cells) == len(names) + 1:
            rows[cells[0]] = cells[1:]
    return names, rows, mean


def continual_tables(out):
    runs = sorted(glob.glob(os.path.join(out, "continual-*.txt")))
    lines = []
    for path in runs:
        names, rows, mean = continual_matrix(path)
        if not names or mean is None:
            continue
        label = os.path.basename(path)[len("continual-"):-len(".txt")]
        lines += [f"**{label}** (adapter-seed): accuracy on each held-out set (columns) after each "
                  "stage (rows)", "", "| | " + " | ".join(names) + " |",
                  "|---|" + "---|" * len(names)]
        for key in ["before"] + names + ["forgetting"]:
            if key in rows:
                lines.append(f"| {key} | " + " | ".join(rows[key]) + " |")
        lines += ["", f"mean forgetting {mean:.4f}", ""]
    return lines


def main():
    out, md, figures, *logs = sys.argv[1:]
    os.makedirs(figures, exist_ok=True)
    lines = []
    for path in sorted(glob.glob(os.path.join(out, "*", "compare.json"))):
        name = os.path.basename(os.path.dirname(path))
        lines += compare_table(path, name) + [""]
        svg = os.path.join(os.path.dirname(path), "compare.svg")
        if not name.startswith("lr-") and os.path.exists(svg):
            shutil.copyfile(svg, os.path.join(figures, f"{name}.svg"))
            lines += [f"![{name}](figures/{name}.svg)", ""]
    lines += continual_tables(out)
    loads = [l.strip() for log in logs if os.path.exists(log) for l in open(log) if "load:" in l]
    if loads:
        lines += ["Load averages printed during the run (1, 5, 15 min; 2 cores):", "", "```"] + \
                 loads + ["```", ""]
    text = open(md).read() if os.path.exists(md) else f"{BEGIN}\n{END}\n"
    a, b = text.index(BEGIN) + len(BEGIN), text.index(END)
    tmp = md + ".tmp"
    with open(tmp, "w") as f:
        f.write(text[:a] + "\n" + "\n".join(lines) + "\n" + text[b:])
    os.replace(tmp, md)


if __name__ == "__main__":
    main()
