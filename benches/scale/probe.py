#!/usr/bin/env python3
"""The measuring steps of benches/scale.sh. Each subcommand prints one JSON object on stdout
(diagnostics on stderr) and exits non-zero with a clear message when a bounded wait runs out.

  probe.py start   --facts F --pidfile F --timeout S             time to serving and to ready
  probe.py loadlog --log FILE --t0 EPOCH                          load figures from stderr
  probe.py fault   --facts F                                      fault -> new answer, changed
  probe.py catalog --facts F [--adds 20]                          PUT/DELETE one registry
  probe.py reload  --facts F                                      answers during a reload
"""

import argparse
import json
import os
import random
import re
import statistics
import sys
import threading
import time
from datetime import datetime

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import admin  # noqa: E402
import dnsq  # noqa: E402

FAULT_DEP = "storage-07"
FAULT_MOD = 7


def log(msg):
    print(f"probe.py: {msg}", file=sys.stderr, flush=True)


def die(msg):
    print(f"probe.py: error: {msg}", file=sys.stderr, flush=True)
    sys.exit(1)


def load_facts(path):
    with open(path) as f:
        return json.load(f)


def client_for(facts, region=0, timeout=1.0, retries=2):
    return dnsq.Client(tuple(facts["dns"]), src=facts["client"][region], timeout=timeout, retries=retries)


def name_of(j):
    return f"r{j}.registry.example."


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except OSError:
        return False


# --- start: time to serving, time to ready ---------------------------------------------------

def cmd_start(a):
    """Armed before the server starts (so Python's own start-up is not in the figures):
    writes PIDFILE.armed, waits for PIDFILE = "PID T0" (written by scale.sh right after it
    started the server at epoch T0), then polls DNS and /ready every 50 ms."""
    facts = load_facts(a.facts)
    name = name_of(max(facts["n"] - 1, 0))
    c = client_for(facts, timeout=0.2, retries=0)
    open(a.pidfile + ".armed", "w").close()
    armed = time.monotonic()
    while not os.path.exists(a.pidfile):
        if time.monotonic() - armed > 30:
            die(f"no {a.pidfile} within 30 s: the server was not started")
        time.sleep(0.001)
    with open(a.pidfile) as f:
        pid, t0 = f.read().split()
    a.pid, a.t0 = int(pid), float(t0)
    serving = ready = None
    deadline = a.t0 + a.timeout
    while serving is None or ready is None:
        now = time.time()
        if now > deadline:
            die(f"server not serving/ready within {a.timeout:.0f}s (serving={serving}, ready={ready})")
        if not alive(a.pid):
            die(f"server pid {a.pid} exited before it was serving and ready")
        if serving is None:
            r = c.query(name)
            if r is not None and r.rcode == 0 and r.a:
                serving = time.time() - a.t0
                log(f"serving after {serving:.2f}s ({name} -> {r.a})")
        if ready is None and admin.ready(facts["admin"], timeout=0.5):
            ready = time.time() - a.t0
            log(f"ready after {ready:.2f}s")
        time.sleep(0.05)
    print(json.dumps({"serving_s": round(serving, 3), "ready_s": round(ready, 3)}))


# --- loadlog: what the server's stderr says about loading ---------------------------------------

UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0}


def cmd_loadlog(a):
    out = {}
    with open(a.log, errors="replace") as f:
        lines = f.read().splitlines()
    for line in lines:
        line = re.sub(r"\x1b\[[0-9;]*m", "", line)
        if "steerdns starting" in line and "starting_s" not in out:
            m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)Z", line)
            if m:
                ts = datetime.fromisoformat(m.group(1) + "+00:00").timestamp()
                out["starting_s"] = round(ts - a.t0, 3)
            for k in ("registries", "probe_targets"):
                m = re.search(rf"\b{k}=(\d+)", line)
                if m:
                    out[k] = int(m.group(1))
        # An explicit load duration, if the server logs one (e.g. `catalog loaded ... elapsed=1.2s`).
        if "load_logged_s" not in out and re.search(r"catalog|config", line, re.I) and re.search(r"load", line, re.I):
            m = re.search(r"\b(elapsed|took|duration|load_time|load_ms|secs)=([0-9.]+)(ns|us|µs|ms|s)?\b", line)
            if m:
                unit = m.group(3) or ("ms" if m.group(1) == "load_ms" else "s")
                out["load_logged_s"] = round(float(m.group(2)) * UNITS[unit], 4)
                out["load_logged_line"] = line[-200:]
    print(json.dumps(out))


# --- fault: one dependency fails on region 0 --------------------------------------------------

def snapshot(c, js):
    """name index -> tuple of A addresses (or an rcode string / 'timeout')."""
    out = {}
    for j in js:
        r = c.query(name_of(j))
        if r is None:
            out[j] = "timeout"
        elif r.rcode != 0:
            out[j] = r.rcode_name
        else:
            out[j] = tuple(sorted(r.a))
    return out


def wait_all(c, js, pred, timeout, what):
    """Query js round after round until pred(reply) holds for each (once seen, done).
    Returns (first, last) seconds from now at which a name was first seen satisfying pred."""
    t0 = time.monotonic()
    pending = set(js)
    first = last = None
    while pending:
        if time.monotonic() - t0 > timeout:
            die(f"{what}: {len(pending)} of {len(js)} names still not there after {timeout:.0f}s "
                f"(e.g. r{sorted(pending)[0]})")
        for j in sorted(pending):
            r = c.query(name_of(j))
            if r is not None and pred(r):
                t = time.monotonic() - t0
                pending.discard(j)
                first = t if first is None else first
                last = t
        if pending:
            time.sleep(0.05)
    return first, last


def replica_control(facts, region):
    return facts["replica_health_url"][region].rsplit("/", 1)[0]


def cmd_fault(a):
    facts = load_facts(a.facts)
    n = facts["n"]
    h = facts["health"]
    rnd = random.Random(20261127)
    affected = [j for j in range(n) if j % 64 == FAULT_MOD]
    unaffected = [j for j in range(n) if j % 64 != FAULT_MOD]
    if not affected:
        print(json.dumps({"skipped": f"no registry depends on {FAULT_DEP} (N < 8)"}))
        return
    if len(affected) > a.affected:
        affected = sorted(rnd.sample(affected, a.affected))
    if len(unaffected) > a.unaffected:
        unaffected = sorted(rnd.sample(unaffected, a.unaffected))
    c = client_for(facts, region=0)
    home = facts["replica_ipv4"][0]
    ctl = replica_control(facts, 0)
    bound = h["failure_threshold"] * h["interval_s"] + 1
    recover_bound = h["success_threshold"] * h["interval_s"] + 1

    # Everything answers from region 0 before the fault (bounded settle).
    _, _ = wait_all(c, affected + unaffected, lambda r: r.rcode == 0 and r.a == [home], 30,
                    "before the fault, answering from region 0")
    before = snapshot(c, unaffected)
    out = {"affected_sampled": len(affected), "unaffected_sampled": len(unaffected),
           "expected_bound_s": bound, "recover_bound_s": recover_bound}

    st, body, _ = admin.http("POST", f"{ctl}/fail?dep={FAULT_DEP}")
    if st != 200:
        die(f"replica {ctl} refused /fail: {st} {body}")
    t_fail = time.monotonic()
    first, last = wait_all(c, affected, lambda r: r.rcode == 0 and r.a and home not in r.a,
                           a.timeout, f"after failing {FAULT_DEP}, affected registries leaving region 0")
    out["fault_first_s"] = round(first, 3)
    out["fault_all_s"] = round(last, 3)
    log(f"fault: first affected moved after {first:.2f}s, all {len(affected)} after {last:.2f}s (bound {bound}s)")

    if facts["mode"] == "catalog":
        st, body, took = admin.status_page(facts["admin"], state="degraded", limit=5)
        out["status_degraded_http"] = st
        out["status_degraded_s"] = round(took, 4)
        out["status_summary"] = admin.summary_of(body)
        st, body, took = admin.status_registry(facts["admin"], f"r{affected[0]}")
        out["status_registry_http"] = st

    after1 = snapshot(c, unaffected)
    time.sleep(2 * h["interval_s"])  # a late wrong flip would show here
    after2 = snapshot(c, unaffected)
    changed = sorted({j for j in unaffected if after1[j] != before[j] or after2[j] != before[j]})
    out["unaffected_changed"] = len(changed)
    if changed:
        out["unaffected_changed_examples"] = {f"r{j}": [before[j], after1[j], after2[j]] for j in changed[:5]}
        log(f"unaffected registries whose answer changed: {len(changed)} (e.g. {out['unaffected_changed_examples']})")

    st, body, _ = admin.http("POST", f"{ctl}/recover")
    if st != 200:
        die(f"replica {ctl} refused /recover: {st} {body}")
    _, last = wait_all(c, affected, lambda r: r.rcode == 0 and r.a == [home], a.timeout,
                       "after recovery, affected registries back on region 0")
    out["recover_all_s"] = round(last, 3)
    log(f"recovered: all back on region 0 after {last:.2f}s (bound {recover_bound}s)")
    print(json.dumps(out))


# --- catalog: add and remove one registry at runtime ----------------------------------------

def poll_dns(c, name, pred, timeout):
    t0 = time.monotonic()
    while True:
        r = c.query(name)
        if r is not None and pred(r):
            return time.monotonic() - t0
        if time.monotonic() - t0 > timeout:
            die(f"{name}: no expected answer within {timeout}s (last: {r})")
        time.sleep(0.002)


def cmd_catalog(a):
    facts = load_facts(a.facts)
    c = client_for(facts, region=0, timeout=0.5, retries=1)
    put, answer, delete, gone = [], [], [], []
    for k in range(a.adds):
        key = f"new-{k}"
        name = f"{key}.registry.example."
        t = time.monotonic()
        st, body, took = admin.put_registry(facts["admin"], key, name, "fleet", ["storage-01", "auth"])
        if st != 200:
            die(f"PUT /v1/registries/{key}: {st} {body}")
        put.append(took)
        answer.append(took + poll_dns(c, name, lambda r: r.rcode == 0 and bool(r.a), 10))
        st, body, took = admin.delete_registry(facts["admin"], key)
        if st not in (200, 204):
            die(f"DELETE /v1/registries/{key}: {st} {body}")
        delete.append(took)
        gone.append(took + poll_dns(c, name, lambda r: r.rcode == 3, 10))
    med = lambda xs: round(statistics.median(xs), 4)  # noqa: E731
    print(json.dumps({"adds": a.adds, "put_s": med(put), "put_to_answer_s": med(answer),
                      "delete_s": med(delete), "delete_to_nxdomain_s": med(gone),
                      "put_to_answer_max_s": round(max(answer), 4)}))


# --- reload: answers while POST /v1/reload runs -----------------------------------------------

def cmd_reload(a):
    facts = load_facts(a.facts)
    if facts["n"] < 2:
        print(json.dumps({"skipped": "needs registry r1 (N >= 2)"}))
        return
    registry, replica = "r1", facts["regions"][0]
    name, disabled = name_of(1), facts["replica_ipv4"][0]
    c = client_for(facts, region=0)
    st, body, _ = admin.disable_replica(facts["admin"], registry, replica, "bench")
    if st != 200:
        die(f"PUT /v1/overrides: {st} {body}")
    poll_dns(c, name, lambda r: r.rcode == 0 and r.a and disabled not in r.a, 5)

    flood = dnsq.Client(tuple(facts["dns"]), src=facts["client"][0], timeout=1.0, retries=0)
    res = {"queries": 0, "during": 0, "after": 0, "disabled_answers": 0, "timeouts": 0,
           "not_noerror": 0, "empty": 0}
    reload_result = {}
    done = threading.Event()

    def do_reload():
        st, body, took = admin.reload(facts["admin"], timeout=a.reload_timeout)
        reload_result.update(status=st, body=body, took=took, end=time.monotonic())
        done.set()

    max_q, max_s, after_s = 20000, 10.0, 2.0
    reserve_after = 4000          # queries kept for the 2 s after the reload (2000/s)
    t0 = time.monotonic()
    th = None
    while res["queries"] < max_q and time.monotonic() - t0 < max_s:
        now = time.monotonic()
        if th is None and now - t0 > 0.1:   # 100 ms of answers before the reload starts
            th = threading.Thread(target=do_reload, daemon=True)
            th.start()
        phase = "after" if done.is_set() else "during"
        if phase == "after" and now - reload_result["end"] > after_s:
            break
        if phase == "during" and res["during"] >= max_q - reserve_after:
            time.sleep(0.005)        # budget for "during" spent: keep sampling, slowly
        elif phase == "after":
            time.sleep(0.0005)
        r = flood.query(name)
        res["queries"] += 1
        res[phase] += 1
        if r is None:
            res["timeouts"] += 1
        elif r.rcode != 0:
            res["not_noerror"] += 1
        elif not r.a:
            res["empty"] += 1
        elif disabled in r.a:
            res["disabled_answers"] += 1
    res["flood_s"] = round(time.monotonic() - t0, 3)
    if th is not None:
        th.join(timeout=a.reload_timeout)
    if not done.is_set():
        die(f"POST /v1/reload did not return within {a.reload_timeout}s")
    res["reload_http"] = reload_result["status"]
    res["reload_s"] = round(reload_result["took"], 3)
    res["reload_covered"] = reload_result["end"] - t0 <= res["flood_s"]
    if reload_result["status"] != 200:
        res["reload_error"] = reload_result["body"]
    st, body, _ = admin.enable_replica(facts["admin"], registry, replica, "bench")
    res["enable_http"] = st
    if st == 200:
        poll_dns(c, name, lambda r: r.rcode == 0 and r.a == [disabled], 10)
    print(json.dumps(res))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("start")
    p.add_argument("--facts", required=True)
    p.add_argument("--pidfile", required=True)
    p.add_argument("--timeout", type=float, default=300)
    p = sub.add_parser("loadlog")
    p.add_argument("--log", required=True)
    p.add_argument("--t0", type=float, required=True)
    p = sub.add_parser("fault")
    p.add_argument("--facts", required=True)
    p.add_argument("--affected", type=int, default=200)
    p.add_argument("--unaffected", type=int, default=2000)
    p.add_argument("--timeout", type=float, default=60)
    p = sub.add_parser("catalog")
    p.add_argument("--facts", required=True)
    p.add_argument("--adds", type=int, default=20)
    p = sub.add_parser("reload")
    p.add_argument("--facts", required=True)
    p.add_argument("--reload-timeout", type=float, default=300)
    a = ap.parse_args()
    {"start": cmd_start, "loadlog": cmd_loadlog, "fault": cmd_fault,
     "catalog": cmd_catalog, "reload": cmd_reload}[a.cmd](a)


if __name__ == "__main__":
    main()
