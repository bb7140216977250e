#!/usr/bin/env python3
"""Markdown table of the `cargo bench --bench router` medians (python3, stdlib only).

    python3 benches/router_table.py [CRITERION_DIR]

Criterion 0.8 writes one directory per benchmark id, `<group>/<function>/<value>/`, e.g.
`target/criterion/exact/trie/10000/new/estimates.json` for the id "exact/trie/10000"
(each part made filename-safe, and suffixed `_2`, `_3`, ... if two ids collide). Next to
each `estimates.json` sits a `benchmark.json` with the unmangled ids, so the directory is
found by reading those rather than by rebuilding the path.

CRITERION_DIR defaults to where criterion puts it: $CRITERION_HOME, else
$CARGO_TARGET_DIR/criterion, else target/criterion of this crate.
"""

import json
import os
import sys
from pathlib import Path

TIERS = ["exact", "prefix", "priority_prefix", "param", "regex", "miss"]
SIZES = ["100", "10000"]


def criterion_dir():
    if len(sys.argv) > 1:
        return Path(sys.argv[1])
    if os.environ.get("CRITERION_HOME"):
        return Path(os.environ["CRITERION_HOME"])
    if os.environ.get("CARGO_TARGET_DIR"):
        return Path(os.environ["CARGO_TARGET_DIR"]) / "criterion"
    return Path(__file__).resolve().parent.parent / "target" / "criterion"


def medians(root):
    """{(group, function, value): median ns} for every benchmark with a `new` estimate."""
    out = {}
    for meta in root.glob("**/new/benchmark.json"):
        estimates = meta.with_name("estimates.json")
        if not estimates.is_file():
            continue
        with open(meta) as f:
            m = json.load(f)
        with open(estimates) as f:
            e = json.load(f)
        key = (m["group_id"], m.get("function_id"), m.get("value_str"))
        out[key] = e["median"]["point_estimate"]
    return out


def fmt_ns(ns):
    if ns is None:
        return "–"
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.1f} ns"


def main():
    root = criterion_dir()
    if not root.is_dir():
        sys.exit(f"{root}: no criterion output; run `cargo bench --bench router` first")
    med = medians(root)
    if not any(g in TIERS for g, _, _ in med):
        sys.exit(f"{root}: no router benchmark results")

    def get(tier, function, size):
        return med.get((tier, function, size))

    print("| tier | trie 100 | trie 10000 | ratio 10k/100 | linear 100 | linear 10000 |")
    print("|---|---:|---:|---:|---:|---:|")
    for tier in TIERS:
        t100, t10k = get(tier, "trie", "100"), get(tier, "trie", "10000")
        ratio = f"{t10k / t100:.2f}x" if t100 and t10k else "–"
        cells = [
            fmt_ns(t100),
            fmt_ns(t10k),
            ratio,
            fmt_ns(get(tier, "linear", "100")),
            fmt_ns(get(tier, "linear", "10000")),
        ]
        print(f"| {tier} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
