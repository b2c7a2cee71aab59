"""A storm of abandoned requests against a running `twingraph serve --demo`
(issue 19), by hand: 8 threads send a heavy request (HEAVY, an ordered and
filtered list by default) for 5 s, each abandoned by a client timeout of
0.02 s to 1.5 times its answered time; then how long until /readyz says
ready, and 600 lookups from 6 threads, each checked against the demo
plant's formula (its own twin, its own power).

    python3 tools/load/storm.py [PORT=4000] [DEMO_CELLS=400]

Standard library only."""
import http.client, json, random, sys, threading, time

HOST, PORT = "127.0.0.1", int(sys.argv[1]) if len(sys.argv) > 1 else 4000
import os
HEAVY = os.environ.get("HEAVY", "{ pumps(where: {runState: {eq: running}}, orderBy: [{power: DESC}], first: 100) { totalCount nodes { id power } } }")

def post(q, variables=None, timeout=30.0):
    c = http.client.HTTPConnection(HOST, PORT, timeout=timeout)
    body = json.dumps({"query": q, "variables": variables or {}})
    c.request("POST", "/graphql", body, {"Content-Type": "application/json"})
    r = c.getresponse()
    out = json.loads(r.read())
    c.close()
    return out

def timed(q):
    t = time.time(); post(q); return time.time() - t

answered = [timed(HEAVY) for _ in range(3)]
print("heavy answered in", ["%.3f" % a for a in answered])
stop = time.time() + 5
abandoned = [0]
def storm(seed):
    rnd = random.Random(seed)
    while time.time() < stop:
        try:
            post(HEAVY, timeout=rnd.uniform(0.02, 1.5 * max(answered)))
        except Exception:
            abandoned[0] += 1
threads = [threading.Thread(target=storm, args=(i,)) for i in range(8)]
[t.start() for t in threads]; [t.join() for t in threads]
t0 = time.time()
while True:
    c = http.client.HTTPConnection(HOST, PORT, timeout=5); c.request("GET", "/readyz")
    status = c.getresponse().status; c.close()
    if status == 200: break
    time.sleep(0.01)
print("abandoned %d heavy requests; ready %.3f s after the storm" % (abandoned[0], time.time() - t0))
errors, wrong, ok = {}, 0, 0
def power(cell, k): return 5.0 + ((cell * 7 + k * 3) % 10) / 2.0
cells = int(sys.argv[2]) if len(sys.argv) > 2 else 400
lock = threading.Lock()
def ordinary(c):
    global wrong, ok
    for j in range(100):
        cell, k = (c * 31 + j * 7) % cells, (c + j) % 30
        tid = "c%d.e%d" % (cell, k)
        v = post('query($id: ID!) { twin(id: $id) { id reported } }', {"id": tid})
        with lock:
            if v.get("errors"):
                code = v["errors"][0]["extensions"]["code"]; errors[code] = errors.get(code, 0) + 1
            elif not (v.get("data") or {}).get("twin") or v["data"]["twin"]["id"] != tid or v["data"]["twin"]["reported"].get("power") != power(cell, k):
                wrong += 1
            else:
                ok += 1
t1 = time.time()
threads = [threading.Thread(target=ordinary, args=(i,)) for i in range(6)]
[t.start() for t in threads]; [t.join() for t in threads]
print("ordinary: %d correct, %d wrong, errors %s, in %.2f s" % (ok, wrong, errors, time.time() - t1))
