"""Webhook load for bench/failover.sh (standard library only): THREADS
senders post `orders` webhooks to every tenant in rotation through one
address (the load balancer), each on a keep-alive connection opened again
after any failure, until STOP_FILE exists or MAX_SECONDS passed. Every
answer is written to OUT as `<unix time> <status>`, the status `ERR` when
no HTTP answer came (a reset, a refused connection, a timeout).

  webhook_load.py PORT SLUGS(comma-separated) THREADS OUT STOP_FILE MAX_SECONDS
"""
import http.client, json, os, sys, threading, time

port, slugs, threads = int(sys.argv[1]), sys.argv[2].split(","), int(sys.argv[3])
out, stop_file, max_seconds = sys.argv[4], sys.argv[5], float(sys.argv[6])
started = time.monotonic()
lock = threading.Lock()

def sender(n):
    lines, conn, i = [], None, n
    while not os.path.exists(stop_file) and time.monotonic() - started < max_seconds:
        slug = slugs[i % len(slugs)]
        i += threads
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            body = json.dumps({"order": i, "total_cents": 1999})
            conn.request("POST", "/hooks/orders", body, {"Host": f"{slug}.localhost", "Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            lines.append(f"{time.time():.3f} {resp.status}\n")
        except (OSError, http.client.HTTPException):
            lines.append(f"{time.time():.3f} ERR\n")
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(0.01)
    with lock, open(out, "a") as f:
        f.writelines(lines)

workers = [threading.Thread(target=sender, args=(n,)) for n in range(threads)]
for w in workers:
    w.start()
for w in workers:
    w.join()
