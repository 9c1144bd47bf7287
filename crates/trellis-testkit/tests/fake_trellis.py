#!/usr/bin/env python3
"""A stand-in for the `trellis` binary, for testing the mesh launcher without the real control
plane and proxy. It follows the command-line contract of docs/architecture.md:

- `control-plane`: serves /ready, /debug/syncz (generation grows with every change of the *.yaml
  files in --config-dir; every registered proxy is up to date, or NACKs when a file contains
  FAKE_NACK) and /metrics on --monitoring-address;
- `proxy` / `agent`: registers with the fake control plane and serves /ready on --admin-address;
  exits at once if its workload name contains "crash";
- `echo`: answers JSON like the real echo app.
"""
import glob
import hashlib
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

LDS = "type.googleapis.com/envoy.config.listener.v3.Listener"


def flags(argv):
    out = {}
    i = 0
    while i < len(argv):
        key = argv[i]
        if key.startswith("--"):
            value = argv[i + 1] if i + 1 < len(argv) and not argv[i + 1].startswith("--") else ""
            out.setdefault(key[2:], []).append(value)
            i += 2 if value else 1
        else:
            i += 1
    return out


def addr(s):
    host, port = s.rsplit(":", 1)
    return host, int(port)


def state_dir(xds):
    return os.path.join("/tmp", "fake-trellis-" + xds.replace(":", "_"))


def serve(address, handler_fn):
    class H(BaseHTTPRequestHandler):
        def do_GET(self):
            status, body = handler_fn(self)
            data = json.dumps(body).encode() if not isinstance(body, str) else body.encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    ThreadingHTTPServer(addr(address), H).serve_forever()


def control_plane(f):
    config_dir = f["config-dir"][0]
    xds = f["xds-address"][0]
    sdir = state_dir(xds)
    os.makedirs(sdir, exist_ok=True)
    for p in glob.glob(os.path.join(sdir, "*.json")):
        os.remove(p)
    state = {"hash": None, "generation": 0}

    def handle(req):
        if req.path == "/ready":
            return 200, "ok"
        files = sorted(glob.glob(os.path.join(config_dir, "*.yaml")))
        h = hashlib.sha256()
        nack = False
        for p in files:
            text = open(p).read()
            nack = nack or "FAKE_NACK" in text
            h.update(p.encode() + b"\0" + text.encode())
        if h.hexdigest() != state["hash"]:
            state["hash"] = h.hexdigest()
            state["generation"] += 1
        g = state["generation"]
        if req.path == "/metrics":
            return 200, "pilot_total_xds_rejects{type=\"lds\"} %d\n" % (1 if nack else 0)
        proxies = []
        for p in sorted(glob.glob(os.path.join(sdir, "*.json"))):
            pid = json.load(open(p))["id"]
            t = {"sent": str(g), "acked": str(g - 1 if nack else g),
                 "nack": {"version": str(g), "error": "fake rejection"} if nack else None}
            proxies.append({"id": pid, "generation": g, "synced": not nack, "types": {LDS: t}})
        return 200, {"generation": g, "proxies": proxies}

    print("fake control plane on", f["monitoring-address"][0], flush=True)
    serve(f["monitoring-address"][0], handle)


def proxy(f):
    workload = f["workload"][0]
    if "crash" in workload:
        print("fake proxy: refusing to start", workload, file=sys.stderr, flush=True)
        sys.exit(3)
    ns = f.get("namespace", ["default"])[0]
    ip = f["ip"][0]
    node = "sidecar~%s~%s.%s~%s.svc.cluster.local" % (ip, workload, ns, ns)
    sdir = state_dir(f["xds-address"][0])
    with open(os.path.join(sdir, workload + ".json"), "w") as out:
        json.dump({"id": node}, out)
    serve(f.get("admin-address", [ip + ":15000"])[0], lambda req: (200, "LIVE"))


def echo(f):
    def handle(req):
        return 200, {"service": f["service"][0], "version": f.get("version", ["v1"])[0],
                     "instance": f.get("instance", [""])[0], "protocol": "HTTP/1.1",
                     "method": "GET", "path": req.path, "query": "", "headers": {},
                     "upstreams": [], "http_proxy": os.environ.get("HTTP_PROXY")}

    serve(f["listen"][0], handle)


if __name__ == "__main__":
    cmd, rest = sys.argv[1], sys.argv[2:]
    {"control-plane": control_plane, "proxy": proxy, "agent": proxy, "echo": echo}[cmd](flags(rest))
