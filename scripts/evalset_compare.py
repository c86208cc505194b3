#!/usr/bin/env python3
"""Markdown tables of `smolq verify --eval-set` reports side by side (docs/verify.md, "Finding").

    python3 scripts/evalset_compare.py NAME=out/report.json [NAME=out2/report.json ...]

For every report: mean KLD per category and quant, the ratio of each category's KLD to the
WikiText category's, and the worst category of each quant. With two reports, a table of the
second's KLD relative to the first's for the quants both have."""
import json
import sys


def load(arg):
    """NAME=report.json, or NAME=a/report.json+b/report.json: runs of the same set with other
    types, merged (the quants of both, in file-size order)."""
    name, _, paths = arg.partition("=")
    merged = None
    for path in paths.split("+"):
        with open(path, encoding="utf-8") as f:
            r = json.load(f)
        if merged is None:
            merged = r
            continue
        assert [c["name"] for c in r["categories"]] == [c["name"] for c in merged["categories"]], path
        merged["quants"] += r["quants"]
        for cm, c in zip(merged["categories"], r["categories"]):
            cm["quants"] += c["quants"]
    order = sorted(range(len(merged["quants"])), key=lambda i: -merged["quants"][i]["file_size"])
    merged["quants"] = [merged["quants"][i] for i in order]
    cats = merged["categories"]
    for c in cats:
        c["quants"] = [c["quants"][i] for i in order]
        for q in c["quants"]:
            q["worst"] = False
    for qi in range(len(order)):  # each quant's worst category
        ci = max(range(len(cats)), key=lambda k: cats[k]["quants"][qi]["kld_mean"])
        cats[ci]["quants"][qi]["worst"] = True
    return name, merged


def table(name, r):
    cats = r["categories"]
    labels = [q["label"] for q in r["quants"]]
    out = [f"**{name}** (imatrix: {r['imatrix']}): mean KLD (nats), ratio to wikitext in brackets\n"]
    out.append("| category | ctx × chunks | " + " | ".join(labels) + " |")
    out.append("|:---|---:|" + "---:|" * len(labels))
    wiki = next(c for c in cats if c["name"] == "wikitext")
    for c in cats:
        cells = []
        for i, q in enumerate(c["quants"]):
            k, w = q["kld_mean"], wiki["quants"][i]["kld_mean"]
            cells.append(f"{'**' if q['worst'] else ''}{k:.4f}{'**' if q['worst'] else ''} ({k / w:.1f}×)")
        out.append(f"| {c['name']} | {c['n_ctx']} × {c['n_chunks']} | " + " | ".join(cells) + " |")
    out.append("| all (pooled) | | " + " | ".join(f"{q['kld_mean']:.4f}" for q in r["quants"]) + " |")
    return "\n".join(out) + "\n"


def compare(a, b):
    (na, ra), (nb, rb) = a, b
    la = {q["label"]: i for i, q in enumerate(ra["quants"])}
    common = [q["label"] for q in rb["quants"] if q["label"] in la]
    out = [f"Mean KLD with {nb} / with {na} (below 1: {nb} is better)\n"]
    out.append("| category | " + " | ".join(common) + " |")
    out.append("|:---|" + "---:|" * len(common))
    for ca, cb in zip(ra["categories"], rb["categories"]):
        lb = {q["label"]: q for q in cb["quants"]}
        out.append(f"| {ca['name']} | " + " | ".join(
            f"{lb[l]['kld_mean'] / ca['quants'][la[l]]['kld_mean']:.2f}" for l in common) + " |")
    qb = {q["label"]: q for q in rb["quants"]}
    out.append("| all (pooled) | " + " | ".join(
        f"{qb[l]['kld_mean'] / ra['quants'][la[l]]['kld_mean']:.2f}" for l in common) + " |")
    return "\n".join(out) + "\n"


def main():
    reports = [load(a) for a in sys.argv[1:]]
    if not reports:
        sys.exit(__doc__)
    for name, r in reports:
        print(table(name, r))
    if len(reports) == 2:
        print(compare(*reports))


if __name__ == "__main__":
    main()
