#!/usr/bin/env python3
"""The fleet benchmark (not a test), driven by benches/fleet.sh: a real etcd, three steerdns
instances with [fleet], simulated replicas, N catalog registries, one table of figures.

    benches/fleet.sh [N ...]        default: 1000 100000

For each N (registries r0..r{N-1} on a shared template, each depending on storage-{j%64}
and auth, three regions; benches/scale/gen.py writes the setup):
  override propagation   20 trials: PUT /v1/overrides (r1/westeurope) on instance a, then
                         poll instance c over UDP until its answer for r1 leaves westeurope;
                         the time from sending the PUT (a applies, writes etcd, replies;
                         c sees the watch); then the enable, the same way back (40 samples)
  verdict propagation    20 trials: a report of key storage-07 from a synthetic live member
                         z (its own lease; quorum = any), written through etcd's HTTP
                         gateway, until instance c fails r7 over; then z's lease revoked,
                         until c routes back (not timed)
  etcd keys and bytes    under the fleet's prefix with storage-07 failing on the westeurope
                         replica (all three instances report it), after the trials (so one
                         override record is there too): keys, and key + value bytes
  answer cost            (with dnsperf; ANSWER_COST=0 skips) server CPU µs per answered query,
                         dnsperf 10 s at 5000 qps against instance c with [fleet], then the
                         same binary and config without [fleet]
Everything listens on 127.0.10.x; only processes started here are stopped, and the work
directory is removed (KEEP=1 keeps it). STEERDNS_BIN picks the binary (default
target/release/steerdns if built, else target/debug/steerdns).
"""

import base64
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
SCALE = os.path.join(REPO, "benches", "scale")
sys.path.insert(0, SCALE)
import admin  # noqa: E402
import dnsq  # noqa: E402

ETCD = "127.0.10.200"
ENDPOINT = f"http://{ETCD}:2379"
INSTANCES = ["a", "b", "c"]
REPLICA_IP = ["127.0.10.21", "127.0.10.22", "127.0.10.23"]
TRIALS = int(os.environ.get("TRIALS", "20"))
CLIENT = "127.0.100.1"  # 5 ms from region 0 (westeurope), farther from the others
LIMIT = 60.0

procs = []


def start(args, log, **kw):
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(log, "w"), **kw)
    procs.append(p)
    return p


def stop(p):
    if p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    if p in procs:
        procs.remove(p)


def wait(what, f, limit=LIMIT, step=0.002):
    t0 = time.monotonic()
    while not f():
        if time.monotonic() - t0 > limit:
            raise SystemExit(f"benches/fleet.sh: never: {what}")
        time.sleep(step)
    return time.monotonic() - t0


def etcdctl(*args, stdin=None):
    env = dict(os.environ, ETCDCTL_API="3")
    r = subprocess.run(["etcdctl", f"--endpoints={ENDPOINT}", *args], env=env, input=stdin,
                       capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        raise SystemExit(f"etcdctl {args}: {r.stderr}")
    return r.stdout


def gateway_put(key, value, lease_hex):
    body = {"key": base64.b64encode(key.encode()).decode(), "value": base64.b64encode(value.encode()).decode(),
            "lease": str(int(lease_hex, 16))}
    req = urllib.request.Request(f"{ENDPOINT}/v3/kv/put", data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(req, timeout=5) as r:
        r.read()


def prefix_usage(prefix):
    out = json.loads(etcdctl("get", "--prefix", prefix, "-w", "json"))
    kvs = out.get("kvs", [])
    size = sum(len(base64.b64decode(kv["key"])) + len(base64.b64decode(kv.get("value", ""))) for kv in kvs)
    keys = [base64.b64decode(kv["key"]).decode() for kv in kvs]
    return keys, size


def status(adm):
    code, body, _ = admin.http("GET", f"{adm}/v1/status?limit=1", timeout=2)
    return body if code == 200 and isinstance(body, dict) else {}


def setup(work, n, port):
    """Three instance directories for N registries; returns [(dir, dns, admin)]."""
    out = []
    for k, name in enumerate(INSTANCES):
        d = os.path.join(work, f"n{n}-{name}")
        subprocess.run([sys.executable, os.path.join(SCALE, "gen.py"), "--out", d, "--n", str(n),
                        "--regions", "3", "--mode", "catalog", "--dns-port", "5300",
                        "--admin-port", "8053", "--zone", os.path.join(REPO, "zones", "registry.example.zone"),
                        "--regions-file", os.path.join(REPO, "geo", "regions.toml")], check=True)
        config = os.path.join(d, "steerdns.toml")
        text = open(config).read()
        for i, ip in enumerate(REPLICA_IP):
            text = text.replace(f"127.0.20.{i + 1}:8080", f"{ip}:8080")
        text += (f"\n[fleet]\nendpoints = [\"{ENDPOINT}\"]\ncluster = \"bench{n}\"\ninstance = \"{name}\"\n"
                 "quorum = \"any\"\nlease_ttl = \"2s\"\ntimeout = \"250ms\"\nretry = \"200ms\"\n")
        open(config, "w").write(text)
        ip = f"127.0.10.{31 + k}"
        out.append((d, (ip, port), f"http://{ip}:{port + 1}"))
    return out


def answer(client, registry):
    r = client.query(f"{registry}.registry.example.")
    return r.a[0] if r and r.a else None


def trials_override(insts, clients):
    a_admin, c = insts[0][2], clients[2]
    west = answer(c, "r1")
    times = []
    for _ in range(TRIALS):
        for disable in (True, False):
            f = admin.disable_replica if disable else admin.enable_replica
            t0 = time.monotonic()
            code, body, _ = f(a_admin, "r1", "westeurope")
            assert code == 200 and body["event"]["fleet"] == "shared", (code, body)
            want_moved = disable
            wait("c follows the override", lambda: (answer(c, "r1") != west) == want_moved)
            times.append(time.monotonic() - t0)
    return times


def trials_verdict(n, insts, clients, key):
    c = clients[2]
    west = answer(c, "r7")
    times = []
    for _ in range(TRIALS):
        lease = etcdctl("lease", "grant", "30").split()[1]
        etcdctl("put", f"bench{n}/members/z", "z", f"--lease={lease}")
        wait("z live at c", lambda: "z" in status(insts[2][2]).get("fleet", {}).get("live", []), step=0.01)
        # The report is written through etcd's HTTP gateway (no client start-up in the time).
        t0 = time.monotonic()
        gateway_put(f"bench{n}/health/z/{key}", "degraded", lease)
        wait("c fails r7 over on z's report", lambda: answer(c, "r7") != west)
        times.append(time.monotonic() - t0)
        etcdctl("lease", "revoke", lease)
        wait("c routes r7 back", lambda: answer(c, "r7") == west)
    return times


def one_run(work, n, port, binary):
    insts = setup(work, n, port)
    servers = []
    t0 = time.monotonic()
    for (d, dns, adm), name in zip(insts, INSTANCES):
        servers.append(start([binary, "serve", "--config", os.path.join(d, "steerdns.toml"),
                              "--listen", f"{dns[0]}:{dns[1]}", "--admin-listen", adm[len('http://'):]],
                             os.path.join(d, "server.log"), cwd=d))
    for _, _, adm in insts:
        wait(f"{adm} ready and connected", lambda adm=adm: status(adm).get("server", {}).get("ready")
             and status(adm).get("fleet", {}).get("connected")
             and len(status(adm)["fleet"]["live"]) == 3, limit=600, step=0.1)
    started = time.monotonic() - t0
    clients = [dnsq.Client(dns, src=CLIENT) for _, dns, _ in insts]
    try:
        override = trials_override(insts, clients)
        # One real fault: storage-07 on the westeurope replica; every instance reports it.
        admin.http("POST", f"http://{REPLICA_IP[0]}:8080/fail?dep=storage-07")
        prefix = f"bench{n}/"
        reporters = lambda: {k.split("/")[2] for k in prefix_usage(prefix)[0] if "/health/" in k and "storage-07" in k}
        wait("a, b and c report the fault", lambda: reporters() == set(INSTANCES), step=0.1)
        keys, size = prefix_usage(prefix)
        key = next(k for k in keys if k.startswith(f"{prefix}health/a/") and "storage-07" in k).split("/", 3)[3]
        admin.http("POST", f"http://{REPLICA_IP[0]}:8080/recover")
        wait("the reports withdrawn", lambda: not [k for k in prefix_usage(prefix)[0] if "/health/" in k], step=0.1)
        verdict = trials_verdict(n, insts, clients, key)
        cost = {}
        if shutil.which("dnsperf") and os.environ.get("ANSWER_COST", "1") == "1":
            cost["fleet"] = answer_cost(servers[2].pid, insts[2][1], work, n)
    finally:
        for cl in clients:
            cl.close()
        for s in servers:
            stop(s)
    if "fleet" in cost:
        # The same instance, same binary and config without [fleet].
        d, dns, adm = insts[2]
        config = os.path.join(d, "steerdns.toml")
        single = os.path.join(d, "single.toml")
        open(single, "w").write(open(config).read().split("\n[fleet]\n")[0] + "\n")
        p = start([binary, "serve", "--config", single, "--listen", f"{dns[0]}:{dns[1]}",
                   "--admin-listen", adm[len("http://"):]], os.path.join(d, "single.log"), cwd=d)
        try:
            wait("the single server ready", lambda: admin.ready(adm), limit=600, step=0.1)
            cost["single"] = answer_cost(p.pid, dns, work, n)
        finally:
            stop(p)
    return {"n": n, "start_s": round(started, 1), "override_s": override, "verdict_s": verdict,
            "fault_keys": len(keys), "fault_bytes": size, "fault_key_list": keys, "answer_cost": cost}


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def answer_cost(pid, dns, work, n, seconds=10, qps=5000):
    """Server CPU µs per answered query under dnsperf at a fixed rate (the same for both)."""
    qfile = os.path.join(work, f"q{n}.txt")
    with open(qfile, "w") as f:
        for j in range(1000):
            f.write(f"r{(j * 7919) % n}.registry.example. A\n")
    cpu0 = cpu_seconds(pid)
    r = subprocess.run(["dnsperf", "-s", dns[0], "-p", str(dns[1]), "-d", qfile, "-l", str(seconds),
                        "-Q", str(qps), "-c", "1", "-t", "2"], capture_output=True, text=True, timeout=seconds + 30)
    cpu1 = cpu_seconds(pid)
    done = next((int(l.split()[2]) for l in r.stdout.splitlines() if l.strip().startswith("Queries completed:")), 0)
    lost = next((int(l.split()[2]) for l in r.stdout.splitlines() if l.strip().startswith("Queries lost:")), -1)
    return {"completed": done, "lost": lost, "cpu_s": round(cpu1 - cpu0, 3),
            "us_per_query": round((cpu1 - cpu0) * 1e6 / done, 2) if done else None}


def main():
    ns = [int(x) for x in sys.argv[1:]] or [1000, 100000]
    binary = os.environ.get("STEERDNS_BIN") or next(
        (b for b in (os.path.join(REPO, "target", p, "steerdns") for p in ("release", "debug")) if os.access(b, os.X_OK)),
        None)
    if not binary:
        raise SystemExit("benches/fleet.sh: no steerdns binary; cargo build --release (or set STEERDNS_BIN)")
    binary = os.path.abspath(binary)
    for tool in ("etcd", "etcdctl"):
        if not shutil.which(tool):
            raise SystemExit(f"benches/fleet.sh: {tool} is missing (apt-get install etcd-server etcd-client)")
    work = tempfile.mkdtemp(prefix="steerdns-fleet.")
    results = []
    try:
        start(["etcd", "--name", "bench", "--data-dir", os.path.join(work, "etcd"),
               "--listen-client-urls", ENDPOINT, "--advertise-client-urls", ENDPOINT,
               "--listen-peer-urls", f"http://{ETCD}:2380", "--initial-advertise-peer-urls", f"http://{ETCD}:2380",
               "--initial-cluster", f"bench=http://{ETCD}:2380"], os.path.join(work, "etcd.log"))
        wait("etcd healthy", lambda: b"true" in _get(f"{ENDPOINT}/health"), step=0.1)
        for i, ip in enumerate(REPLICA_IP):
            start([sys.executable, os.path.join(SCALE, "replica.py"), "--listen", f"{ip}:8080",
                   "--region", ["westeurope", "eastus", "southeastasia"][i]], os.path.join(work, f"replica{i}.log"))
        for i, n in enumerate(ns):
            results.append(one_run(work, n, 5300 + 10 * i, binary))
    finally:
        for p in list(procs):
            stop(p)
        if os.environ.get("KEEP") == "1":
            print(f"benches/fleet.sh: work directory kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"binary: {binary} ({version}); etcd: {subprocess.run(['etcd', '--version'], capture_output=True, text=True).stdout.splitlines()[0]}")
    print(f"{'registries':>10} {'start s':>8} {'override ms median/max':>24} {'verdict ms median/max':>23} {'etcd keys':>9} {'etcd bytes':>10}")
    for r in results:
        o, v = r["override_s"], r["verdict_s"]
        print(f"{r['n']:>10} {r['start_s']:>8} {statistics.median(o) * 1000:>12.1f} / {max(o) * 1000:<9.1f}"
              f"{statistics.median(v) * 1000:>11.1f} / {max(v) * 1000:<9.1f} {r['fault_keys']:>9} {r['fault_bytes']:>10}")
    for r in results:
        print(f"keys at N={r['n']} with one fault: {r['fault_key_list']}")
    for r in results:
        for what, c in r["answer_cost"].items():
            print(f"answer cost N={r['n']} {what:>6}: {c['us_per_query']} µs CPU/query "
                  f"({c['completed']} answered, {c['lost']} lost, dnsperf 10 s at 5000 qps)")
    print(json.dumps([{k: v for k, v in r.items() if k != "fault_key_list"} for r in results]))


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.read()
    except OSError:
        return b""


if __name__ == "__main__":
    main()
