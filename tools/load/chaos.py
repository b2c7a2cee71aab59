"""The database stopped and started under load (issue 19), by hand: 4
writers patch their pump's flowRate 1, 2, 3, ... and 2 readers read, until
the file STOP (default /tmp/twingraph-chaos-stop) exists; then every
acknowledged write is looked up in its pump's history. Stop and start the
database meanwhile. Prints the writes acknowledged, those lost (must be 0)
and the error codes seen.

    python3 tools/load/chaos.py [PORT=4000]

Standard library only."""
import http.client, json, os, sys, threading, time
PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 4000
STOP = os.environ.get("STOP", "/tmp/twingraph-chaos-stop")
def post(q, v=None):
    c = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
    c.request("POST", "/graphql", json.dumps({"query": q, "variables": v or {}}), {"Content-Type": "application/json"})
    out = json.loads(c.getresponse().read()); c.close(); return out
for p in range(4):
    post('mutation($id: ID!) { createTwin(id: $id, model: "dtmi:twingraph:isa95:Pump;1", reported: {flowRate: 0}) { version } }', {"id": "chaos%d" % p})
acks = {p: [] for p in range(4)}; errors = {}; lock = threading.Lock()
def writer(p):
    n = 0
    while not os.path.exists(STOP):
        n += 1
        try:
            v = post('mutation($id: ID!, $n: Float) { patchReported(id: $id, patch: {flowRate: $n}) { version } }', {"id": "chaos%d" % p, "n": n})
        except Exception as e:
            v = {"errors": [{"extensions": {"code": "HTTP:" + type(e).__name__}}]}
        with lock:
            if v.get("data") and v["data"].get("patchReported"):
                acks[p].append((v["data"]["patchReported"]["version"], n))
            else:
                c = v["errors"][0]["extensions"].get("code"); errors[c] = errors.get(c, 0) + 1
        if not (v.get("data") or {}).get("patchReported"): time.sleep(0.05)
def reader(r):
    while not os.path.exists(STOP):
        try: v = post('{ twin(id: "chaos%d") { id } }' % r)
        except Exception as e: v = {"errors": [{"extensions": {"code": "HTTP:" + type(e).__name__}}]}
        if v.get("errors"):
            with lock:
                c = v["errors"][0]["extensions"].get("code"); errors[c] = errors.get(c, 0) + 1
            time.sleep(0.05)
ts = [threading.Thread(target=writer, args=(p,)) for p in range(4)] + [threading.Thread(target=reader, args=(r,)) for r in range(2)]
[t.start() for t in ts]; [t.join() for t in ts]
lost = 0
for p in range(4):
    recorded, after = {}, None
    while True:
        v = post('query($id: ID!, $a: String) { history(id: $id, first: 100, after: $a) { nodes { kind change } pageInfo { hasNextPage endCursor } } }', {"id": "chaos%d" % p, "a": after})
        h = v["data"]["history"]
        for e in h["nodes"]:
            if e["kind"] == "reportedPatched": recorded[e["change"]["version"]] = e["change"]["patch"]["flowRate"]
        if not h["pageInfo"]["hasNextPage"]: break
        after = h["pageInfo"]["endCursor"]
    lost += sum(1 for (ver, n) in acks[p] if recorded.get(ver) != n)
print("acknowledged %d, lost %d, errors %s" % (sum(len(a) for a in acks.values()), lost, errors))
