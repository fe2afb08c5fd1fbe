"""Cluster helper for bench/failover.sh and bench/scaling.sh (standard
library only). Talks to the nodes' platform API as the platform owner
(OWNER_EMAIL, OWNER_PASSWORD); TENANTS is how many tenants the cluster has.

  cluster.py settle PORT...
      wait (60 s at most) until every tenant is leased, each of the given
      nodes holds at least its share (TENANTS // nodes) and the nodes run
      TENANTS workers in all.
  cluster.py kill VICTIM_PID VICTIM_PORT SURVIVOR_PORT...
      kill -9 the victim, then poll the survivors every POLL_MS (default 20)
      until all the tenants it held run on them; print one JSON line:
      tenants moved, the kill's unix time (killed_at), and ms from the kill
      until the status showed the node
      dead (dead_ms), its tenants leased to live nodes (leased_ms), and
      their workers running on the survivors (running_ms).
"""
import http.client, json, os, signal, sys, time

TENANTS = int(os.environ["TENANTS"])
POLL = int(os.environ.get("POLL_MS", "20")) / 1000
EMAIL, PASSWORD = os.environ["OWNER_EMAIL"], os.environ["OWNER_PASSWORD"]

def call(port, method, path, token=None, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Host": f"localhost:{port}", "Content-Type": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    if resp.status != 200:
        raise RuntimeError(f"{method} {path} on {port}: HTTP {resp.status}: {data[:300]!r}")
    return json.loads(data)

def login(port):
    return call(port, "POST", "/api/auth/login", body={"email": EMAIL, "password": PASSWORD})["token"]

def leases(status):
    """node id -> set of tenant slugs it holds now."""
    by_node = {}
    for lease in status["leases"]:
        if lease["node"]:
            by_node.setdefault(lease["node"], set()).add(lease["tenant"])
    return by_node

def settle(ports):
    token = login(ports[0])
    ids = [call(p, "GET", "/api/platform/node", token)["id"] for p in ports]
    low = TENANTS // len(ports)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        by_node = leases(call(ports[0], "GET", "/api/platform/cluster", token))
        held = sum(len(t) for t in by_node.values())
        running = [len(call(p, "GET", "/api/platform/node", token)["tenants"]) for p in ports]
        if held == TENANTS and all(len(by_node.get(i, ())) >= low for i in ids) and sum(running) == TENANTS:
            return
        time.sleep(0.2)
    sys.exit(f"the cluster did not settle within 60 s: {by_node}")

def kill(victim_pid, victim_port, survivors):
    token = login(survivors[0])
    victim = call(victim_port, "GET", "/api/platform/node", token)["id"]
    moving = leases(call(survivors[0], "GET", "/api/platform/cluster", token)).get(victim, set())
    if not moving:
        sys.exit("the victim holds no tenant")
    os.kill(victim_pid, signal.SIGKILL)
    killed, killed_at = time.monotonic(), time.time()
    dead = leased = None
    while time.monotonic() - killed < 60:
        status = call(survivors[0], "GET", "/api/platform/cluster", token)
        now = time.monotonic() - killed
        if dead is None and any(n["id"] == victim and not n["alive"] for n in status["nodes"]):
            dead = now
        live = {n["id"] for n in status["nodes"] if n["alive"]}
        by_node = leases(status)
        if leased is None and all(any(t in by_node.get(n, ()) for n in live if n != victim) for t in moving):
            leased = now
        running = set()
        for port in survivors:
            running |= {w["tenant"] for w in call(port, "GET", "/api/platform/node", token)["tenants"]}
        if dead is not None and leased is not None and moving <= running:
            print(json.dumps({"tenants": len(moving), "killed_at": killed_at, "dead_ms": dead * 1000, "leased_ms": leased * 1000,
                              "running_ms": (time.monotonic() - killed) * 1000}))
            return
        time.sleep(POLL)
    sys.exit(f"the victim's tenants were not running elsewhere 60 s after the kill (dead {dead}, leased {leased})")

if sys.argv[1] == "settle":
    settle([int(p) for p in sys.argv[2:]])
else:
    kill(int(sys.argv[2]), int(sys.argv[3]), [int(p) for p in sys.argv[4:]])
