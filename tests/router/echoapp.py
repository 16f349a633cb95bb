"""The WSGI app the router tests put behind the router (served by granian).

It answers with JSON describing what it received, so tests can check what the router
forwarded: method, path, query, the routing headers, the body size, and which backend
(`BACKEND_NAME`) answered. `/sleep?s=N` sleeps N seconds first; `/work` burns about 1 ms of
CPU and `/wait` sleeps 1 ms then hashes 1 KiB (the benchmark's two handlers).
"""

import hashlib
import json
import os
import time

KIB = b"x" * 1024

NAME = os.environ.get("BACKEND_NAME", "backend")


def application(environ, start_response):
    path = environ.get("PATH_INFO", "")
    query = environ.get("QUERY_STRING", "")
    if path == "/work":
        end = time.perf_counter() + 0.001
        n = 0
        while time.perf_counter() < end:
            n += 1
        body = b"ok %d\n" % n
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/wait":
        time.sleep(0.001)
        body = hashlib.sha256(KIB).hexdigest().encode() + b"\n"
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    if path == "/sleep":
        params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        time.sleep(float(params.get("s", "1")))
    length = int(environ.get("CONTENT_LENGTH") or 0)
    data = environ["wsgi.input"].read(length) if length else environ["wsgi.input"].read()
    headers = {
        k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")
    }
    reply = {
        "backend": NAME,
        "method": environ["REQUEST_METHOD"],
        "path": path,
        "query": query,
        "headers": headers,
        "body_bytes": len(data),
    }
    if path.startswith("/status/"):
        status = path.split("/")[2] + " X"
    else:
        status = "200 OK"
    body = json.dumps(reply).encode()
    start_response(status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
