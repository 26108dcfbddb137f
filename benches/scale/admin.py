"""The steerdns admin API calls benches/scale.sh makes, one small function each (so a
changed endpoint or body is a one-line fix). Plain urllib, proxies ignored, loopback only."""

import json
import time
import urllib.error
import urllib.request

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(method, url, body=None, timeout=10.0):
    """(status, parsed JSON or text or None, seconds). Never raises for an HTTP status;
    a connection failure gives status 0."""
    data = None
    headers = {}
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    t = time.monotonic()
    try:
        with _OPENER.open(req, timeout=timeout) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        return 0, str(e), time.monotonic() - t
    took = time.monotonic() - t
    try:
        payload = json.loads(raw) if raw else None
    except ValueError:
        payload = raw.decode(errors="replace")
    return status, payload, took


# --- readiness ---------------------------------------------------------------------------

def ready(admin, timeout=0.5):
    return http("GET", f"{admin}/ready", timeout=timeout)[0] == 200


# --- overrides and reload (today's API) -------------------------------------------------------

def disable_replica(admin, registry, replica, reason="bench"):
    return http("PUT", f"{admin}/v1/overrides",
                {"registry": registry, "replica": replica, "reason": reason})


def enable_replica(admin, registry, replica, reason="bench"):
    return http("DELETE", f"{admin}/v1/overrides",
                {"registry": registry, "replica": replica, "reason": reason})


def reload(admin, timeout=300.0):
    return http("POST", f"{admin}/v1/reload", timeout=timeout)


# --- the catalog API (catalog mode; written to the spec, not yet served) ---------------

def put_registry(admin, key, name, template="fleet", depends_on=None):
    body = {"name": name, "template": template}
    if depends_on is not None:
        body["depends_on"] = list(depends_on)
    return http("PUT", f"{admin}/v1/registries/{key}", body)


def delete_registry(admin, key):
    return http("DELETE", f"{admin}/v1/registries/{key}")


def status_page(admin, state="degraded", limit=10):
    """GET /v1/status?state=…&limit=…: {"summary": {...}, "registries": [...]}."""
    return http("GET", f"{admin}/v1/status?state={state}&limit={limit}")


def status_registry(admin, key):
    return http("GET", f"{admin}/v1/status?registry={key}")


def summary_of(payload):
    """The counts-per-state object of a status page, or None."""
    if isinstance(payload, dict) and isinstance(payload.get("summary"), dict):
        s = payload["summary"]
        # Counts only: the per-region and per-resource lists are for people, not the table.
        return {k: s[k] for k in ("registries", "fail_open", "states") if k in s}
    return None
