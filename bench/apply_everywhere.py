"""Apply one set of resources (YAML on stdin) in every tenant of a bench
(standard library only): each tenant's owner signs in on the node at PORT
and posts it to `/api/apply`.

  apply_everywhere.py PORT SLUGS(comma-separated) OWNER_PASSWORD < resources.yaml
"""
import http.client, json, sys

port, slugs, password = int(sys.argv[1]), sys.argv[2].split(","), sys.argv[3]
yaml = sys.stdin.read()

def call(method, path, host, body, headers):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, body=body, headers={"Host": host, **headers})
    resp = conn.getresponse(); data = resp.read(); conn.close()
    if resp.status != 200:
        raise SystemExit(f"{method} {path} for {host}: HTTP {resp.status}: {data[:300]!r}")
    return data

for slug in slugs:
    host = f"{slug}.localhost:{port}"
    login = {"email": f"owner@{slug}.test", "password": password}
    token = json.loads(call("POST", "/api/auth/login", host, json.dumps(login), {"Content-Type": "application/json"}))["token"]
    call("POST", "/api/apply", host, yaml, {"Content-Type": "application/yaml", "Authorization": "Bearer " + token})
