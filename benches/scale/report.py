#!/usr/bin/env python3
"""Print the table of benches/scale.sh from the JSON parts its run directories hold, then
the raw numbers as one JSON line.

    report.py --base DIR --main DIR --mode toml|catalog --n N --regions R --bin PATH --version V
"""

import argparse
import json
import os


def part(d, name):
    p = os.path.join(d, name)
    if not os.path.exists(p):
        return {}
    with open(p) as f:
        text = f.read().strip()
    return json.loads(text) if text else {}


def fmt_s(x):
    return "n/a" if x is None else (f"{x * 1000:.1f} ms" if x < 1 else f"{x:.2f} s")


def fmt_bytes(b):
    if b is None:
        return "n/a"
    for unit, div in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if abs(b) >= div:
            return f"{b / div:.2f} {unit}" if unit == "GB" else f"{b / div:.1f} {unit}"
    return f"{b:.0f} B"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--main", required=True)
    ap.add_argument("--mode", required=True)
    ap.add_argument("--n", type=int, required=True)
    ap.add_argument("--regions", type=int, required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--version", default="")
    a = ap.parse_args()

    base = {k: part(a.base, f"{k}.json") for k in ("proc", "start", "loadlog")}
    main_ = {k: part(a.main, f"{k}.json") for k in ("proc", "start", "loadlog", "fault", "catalog", "reload")}
    facts = part(a.main, "facts.json")
    h = facts.get("health", {})
    pm, st, ll = main_["proc"], main_["start"], main_["loadlog"]
    fa, ca, rl = main_["fault"], main_["catalog"], main_["reload"]

    rss = pm.get("rss_kb", 0) * 1024
    base_rss = base["proc"].get("rss_kb", 0) * 1024
    per_reg = (rss - base_rss) / a.n if a.n > 1 and base_rss else None

    rows = []
    add = lambda fig, val, note="": rows.append((fig, val, note))  # noqa: E731
    add("generation", fmt_s(pm.get("gen_s")), "zone, latency table, config" + (" + catalog" if a.mode == "catalog" else ""))
    if "load_logged_s" in ll:
        add("catalog/config load (logged)", fmt_s(ll["load_logged_s"]), "from the server's own log line")
    if "starting_s" in ll:
        add("start -> 'steerdns starting' log", fmt_s(ll["starting_s"]),
            "config + zones parsed, snapshot built" + (f"; {ll['probe_targets']} probe targets" if "probe_targets" in ll else ""))
    add("time to serving", fmt_s(st.get("serving_s")), f"first NOERROR + A for r{max(a.n - 1, 0)} (50 ms polls)")
    add("time to ready", fmt_s(st.get("ready_s")), "GET /ready = 200")
    add("RSS after ready", fmt_bytes(rss), f"peak {fmt_bytes(pm.get('hwm_kb', 0) * 1024)}; 1-registry run {fmt_bytes(base_rss)}")
    if "rss_end_kb" in pm:
        add("RSS at the end", fmt_bytes(pm["rss_end_kb"] * 1024),
            f"peak {fmt_bytes(pm['hwm_end_kb'] * 1024)}; after the fault, catalog and reload steps"
            + (f" ({fmt_bytes(pm['rss_after_fault_kb'] * 1024)} after the fault)" if pm.get("rss_after_fault_kb") else ""))
    add("bytes per registry", fmt_bytes(per_reg), "(RSS - RSS of the 1-registry run) / N")
    add("CPU, nothing changing", f"{pm['cpu_pct']:.1f} % of a core" if "cpu_pct" in pm else "n/a",
        f"utime+stime over {pm.get('idle_s', 0):.0f} s after ready")
    if "skipped" in fa:
        add("fault -> new answer", "n/a", fa["skipped"])
    elif fa:
        add(f"fault -> new answer ({fa['affected_sampled']} affected)", fmt_s(fa.get("fault_all_s")),
            f"bound {fa['expected_bound_s']} s (failure_threshold x interval + 1 s); first {fmt_s(fa.get('fault_first_s'))}")
        add("unaffected answers changed", f"{fa['unaffected_changed']} of {fa['unaffected_sampled']}", "must be 0")
        add("recovery -> old answer", fmt_s(fa.get("recover_all_s")),
            f"success_threshold x interval + 1 s = {fa['recover_bound_s']} s")
        if "status_summary" in fa:
            add("status summary during fault", json.dumps(fa["status_summary"]),
                f"GET /v1/status?state=degraded: HTTP {fa.get('status_degraded_http')} in {fmt_s(fa.get('status_degraded_s'))}")
    if a.mode == "catalog" and ca:
        add("catalog PUT (median of %d)" % ca["adds"], fmt_s(ca["put_s"]), "PUT /v1/registries/new-k")
        add("catalog PUT -> answers in DNS", fmt_s(ca["put_to_answer_s"]), f"median; max {fmt_s(ca['put_to_answer_max_s'])}")
        add("catalog DELETE", fmt_s(ca["delete_s"]), f"-> NXDOMAIN {fmt_s(ca['delete_to_nxdomain_s'])} (medians)")
    elif a.mode == "toml":
        add("catalog change cost", "n/a", "catalog mode only")
    if "skipped" in rl:
        add("reload", "n/a", rl["skipped"])
    elif rl:
        add("reload duration", fmt_s(rl["reload_s"]), f"POST /v1/reload, HTTP {rl['reload_http']}"
            + ("" if rl.get("reload_covered", True) else "; the flood ended before it did"))
        add("disabled replica answered in reload", f"{rl['disabled_answers']} of {rl['queries']}",
            f"must be 0; {rl['during']} during + {rl['after']} after; timeouts {rl['timeouts']}, "
            f"not NOERROR {rl['not_noerror']}, empty {rl['empty']}")

    title = (f"steerdns scale: N={a.n} registries x {a.regions} regions, mode {a.mode}, "
             f"{a.bin} ({a.version}), {os.cpu_count()} cores")
    if "loadavg" in pm:
        title += "\n1-min load average {} at start, {} at the end of the N-registry run".format(*pm["loadavg"])
    w1 = max(len(r[0]) for r in rows)
    w2 = max(len(r[1]) for r in rows)
    print(title)
    print(f"{'figure':<{w1}}  {'value':<{w2}}  note")
    print(f"{'-' * w1}  {'-' * w2}  {'-' * 4}")
    for fig, val, note in rows:
        print(f"{fig:<{w1}}  {val:<{w2}}  {note}")

    raw = {"n": a.n, "regions": a.regions, "mode": a.mode, "version": a.version,
           "health": h, "bytes_per_registry": per_reg and round(per_reg),
           "base": base, **main_}
    raw.pop("facts", None)
    print(json.dumps(raw, separators=(",", ":")))


if __name__ == "__main__":
    main()
