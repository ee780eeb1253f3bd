#!/usr/bin/env python3
"""Summary table of the generalisation study (jobscripts/study.sh) from its JSON outputs."""
import glob, json, os, sys

out = sys.argv[1] if len(sys.argv) > 1 else "out/study"
keys = [("abs_m", "<|M|>"), ("chi", "chi"), ("binder", "U_L"), ("xi2", "xi_2"), ("action_density", "S/V")]

def fmt(o):
    if not o or o.get("mean") is None:
        return "n/a"
    m, e = o["mean"], o.get("err") or 0.0
    return f"{m:.4g} ± {e:.2g}"

def dev(a, b):
    try:
        return f"{(b['mean'] - a['mean']) / (a['err']**2 + b['err']**2) ** 0.5:+.1f}σ"
    except Exception:
        return "n/a"

print("| κ | L | observable | HMC + clusters | diffusion raw | diffusion reweighted | Metropolis |")
print("|---|---|---|---|---|---|---|")
extra = []
for d in sorted(glob.glob(os.path.join(out, "k*"))):
    k = os.path.basename(d)[1:]
    for L in (32, 64, 128):
        f = os.path.join(d, f"compare_L{L}.json")
        r = os.path.join(d, f"raw_L{L}.json")
        if not os.path.exists(f):
            continue
        c = json.load(open(f)); raw = json.load(open(r))
        files = c["ensembles"]
        hmc, gen, mh = files[0], files[1], files[2]
        rawg = raw["ensembles"][1]
        for key, name in keys:
            h, g, m, rg = (x["observables"].get(key) for x in (hmc, gen, mh, rawg))
            print(f"| {k} | {L} | {name} | {fmt(h)} | {fmt(rg)} ({dev(h, rg)}) | {fmt(g)} ({dev(h, g)}) | {fmt(m)} ({dev(h, m)}) |")
        extra.append((k, L, gen.get("ess_fraction"), mh["attributes"].get("acceptance"), gen["attributes"].get("log_weight_std")))
print()
print("| κ | L | ESS/N | Metropolis acceptance | std(log w) |")
print("|---|---|---|---|---|")
for k, L, e, a, s in extra:
    print(f"| {k} | {L} | {e:.4f} | {a:.4f} | {s:.2f} |")
