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
    head = ["configuration", "trainable", "lr", "acc"]
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
        cells = [row["label"], f"{row['trainable']:,}", f"{row['lr']:g}" if "lr" in row else "—",
                 pm(row["acc_mean"], row["acc_std"])]
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


def lr_table(out):
    """Phase lr: one `krongrad train` per adapter and rate; its held-out accuracy curve."""
    runs = []
    for path in glob.glob(os.path.join(out, "lr-*", "metrics.jsonl")):
        adapter, lr = os.path.basename(os.path.dirname(path))[3:].split("-", 1)
        curve = [json.loads(l) for l in open(path) if '"eval_acc"' in l]
        runs.append((adapter, float(lr), curve))
    if not runs:
        return []
    runs.sort()
    steps = sorted({p["step"] for r in runs for p in r[2]})
    lines = ["**lr** — held-out accuracy during training, one seed per row (MiniLM, CommonsenseQA)",
             "", "| adapter | lr | " + " | ".join(f"step {s}" for s in steps) + " |",
             "|---|---|" + "---|" * len(steps)]
    for adapter, lr, curve in runs:
        acc = {p["step"]: p["eval_acc"] for p in curve}
        lines.append(f"| {adapter} | {lr:g} | " +
                     " | ".join(f"{acc[s]:.3f}" if s in acc else "—" for s in steps) + " |")
    return lines + [""]


def continual_summary(out):
    """Mean ± std over seeds, per adapter: each task's accuracy after its own stage and after
    the last, and the mean forgetting."""
    by = {}
    for path in glob.glob(os.path.join(out, "continual-*.txt")):
        adapter = os.path.basename(path)[len("continual-"):-len(".txt")].rsplit("-", 1)[0]
        names, rows, mean = continual_matrix(path)
        if names and mean is not None:
            by.setdefault(adapter, []).append((names, rows, mean))
    if not by:
        return []
    names = next(iter(by.values()))[0][0]
    head = ["adapter", "seeds"] + [f"{t} after {t}" for t in names] + \
           [f"{t} after {names[-1]}" for t in names[:-1]] + ["mean forgetting"]
    lines = ["**continual, over seeds** (mean ± std)", "", "| " + " | ".join(head) + " |",
             "|" + "---|" * len(head)]

    def ms(v):
        m = sum(v) / len(v)
        sd = (sum((x - m) ** 2 for x in v) / (len(v) - 1)) ** 0.5 if len(v) > 1 else 0.0
        return pm(m, sd)
    for adapter, runs in sorted(by.items()):
        cells = [adapter, str(len(runs))]
        cells += [ms([float(r[1][t][i]) for r in runs]) for i, t in enumerate(names)]
        cells += [ms([float(r[1][names[-1]][i]) for r in runs]) for i in range(len(names) - 1)]
        cells.append(ms([r[2] for r in runs]))
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def continual_tables(out):
    runs = sorted(glob.glob(os.path.join(out, "continual-*.txt")))
    lines = continual_summary(out)
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
    lines = lr_table(out)
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
