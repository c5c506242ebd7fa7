"""Replays the x-ms-examples of Azure's Microsoft.Cache/redis specification (2024-11-01,
tests/fixtures/azure-rest-api-specs) against a running serve: every example's request is
sent as the example gives it, its status must be one the operation declares, and the body
served must validate against the operation's response schema in the specification.

Usage: spec_examples.py BASE_URL TOKEN AZURITE_CONTAINER_SAS_URL SPEC_DIR

What the replay adapts, because the examples name things that exist only in Azure:
- storage URLs (export's container, import's files) point at Azurite instead of
  contosostorage.blob.core.windows.net;
- the operation-status example asks for an operation that a flush started here;
- a second Premium cache (cache2) is created first for the geo-replication link to name.
Prints one line per example and exits non-zero when any failed.
"""
import copy
import json
import pathlib
import sys
import time
import urllib.parse

import jsonschema
import referencing
import referencing.jsonschema
import requests

BASE, TOKEN, CONTAINER_SAS, SPEC_DIR = sys.argv[1:5]
SPEC = pathlib.Path(SPEC_DIR) / "specification/redis/resource-manager/Microsoft.Cache/stable/2024-11-01/redis.json"
ROOT = pathlib.Path(SPEC_DIR)

session = requests.Session()
session.headers["Authorization"] = f"Bearer {TOKEN}"


def load_registry():
    """Every JSON file of the fixture, by its file URI, as draft-4 schemas."""
    resources = []
    for path in ROOT.rglob("*.json"):
        if "examples" in path.parts:
            continue
        doc = json.loads(path.read_text())
        resources.append((path.resolve().as_uri(), referencing.Resource.from_contents(
            doc, default_specification=referencing.jsonschema.DRAFT4)))
    return referencing.Registry().with_resources(resources)


def nullable(schema):
    """Swagger's x-nullable as JSON Schema: null is also valid."""
    if isinstance(schema, dict):
        out = {k: nullable(v) for k, v in schema.items()}
        if schema.get("x-nullable") and "type" in schema:
            t = schema["type"]
            out["type"] = (t if isinstance(t, list) else [t]) + ["null"]
        return out
    if isinstance(schema, list):
        return [nullable(s) for s in schema]
    return schema


REGISTRY = load_registry()
SPEC_URI = SPEC.resolve().as_uri()
spec = json.loads(SPEC.read_text())


def validate(schema, body, where):
    if "$ref" in schema:
        schema = {"$ref": urllib.parse.urljoin(SPEC_URI, schema["$ref"])}
    validator = jsonschema.Draft4Validator(nullable(schema), registry=REGISTRY)
    errors = sorted(validator.iter_errors(body), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        raise AssertionError(f"{where}: body off the schema at {list(e.path)}: {e.message}")


def operations():
    """(operationId, method, path template, operation) for every operation."""
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method in ("get", "put", "post", "patch", "delete"):
                yield op["operationId"], method.upper(), path, op


def wait_provisioned(sub, rg, name):
    sub, rg, name = (urllib.parse.quote(p, safe="") for p in (sub, rg, name))
    url = f"{BASE}/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Cache/redis/{name}?api-version=2024-11-01"
    deadline = time.time() + 120
    while time.time() < deadline:
        r = session.get(url)
        if r.status_code == 404:
            return
        state = r.json()["properties"]["provisioningState"]
        if state in ("Succeeded", "Failed", "Canceled"):
            return
        time.sleep(0.1)
    raise AssertionError(f"{name} is still provisioning")


def wait_operation(headers):
    url = headers.get("Azure-AsyncOperation") or headers.get("Location")
    if not url:
        return None
    deadline = time.time() + 120
    while time.time() < deadline:
        body = session.get(url).json()
        if body.get("status") not in ("InProgress", None):
            return body
        time.sleep(0.1)
    raise AssertionError(f"operation {url} did not end")


def adapt(op_id, params):
    """The example's parameters with Azure-only things replaced by local ones."""
    params = copy.deepcopy(params)
    body = params.get("parameters")
    if op_id == "Redis_ExportData":
        body["container"] = CONTAINER_SAS
    if op_id == "Redis_ImportData":
        base, sas = CONTAINER_SAS.split("?", 1)
        body["files"] = [f"{base}/{EXPORTED}?{sas}"]
    if op_id == "AsyncOperationStatus_Get":
        params["operationId"] = LAST_OPERATION[0]
        params["location"] = LAST_OPERATION[1]
    return params


EXPORTED = "spec-example-export"
LAST_OPERATION = [None, None]


def ensure_cache(op_id, params):
    """The cache an example acts on exists (a Premium one is created when it does not):
    the examples name several, each as if it were there."""
    name = params.get("cacheName") or params.get("name")
    if name is None or op_id in ("Redis_Create", "Redis_Delete"):
        return
    sub, rg = params["subscriptionId"], params["resourceGroupName"]
    sub_q, rg_q, name_q = (urllib.parse.quote(p, safe="") for p in (sub, rg, name))
    url = f"{BASE}/subscriptions/{sub_q}/resourceGroups/{rg_q}/providers/Microsoft.Cache/redis/{name_q}"
    if session.get(url, params={"api-version": "2024-11-01"}).status_code == 200:
        return
    r = session.put(url, params={"api-version": "2024-11-01"},
                    json={"location": "West US", "properties": {"sku": {"name": "Premium", "family": "P", "capacity": 1}}})
    assert r.status_code in (200, 201), f"setting up {name}: {r.text}"
    wait_provisioned(sub, rg, name)


def request(op_id, method, template, op, params):
    path = template
    for name, value in params.items():
        path = path.replace("{" + name + "}", urllib.parse.quote(str(value), safe=""))
    query = {"api-version": params.get("api-version", "2024-11-01")}
    for p in op.get("parameters", []):
        p = resolve_param(p)
        if p.get("in") == "query" and p["name"] in params and p["name"] != "api-version":
            query[p["name"]] = params[p["name"]]
    body_param = next((resolve_param(p) for p in op.get("parameters", [])
                       if resolve_param(p).get("in") == "body"), None)
    body = params.get(body_param["name"]) if body_param else None
    if op_id == "Redis_ExportData":
        body = dict(body, prefix=EXPORTED)
    return session.request(method, BASE + path, params=query, json=body)


def resolve_param(p):
    if "$ref" not in p:
        return p
    uri = urllib.parse.urljoin(SPEC_URI, p["$ref"])
    return REGISTRY.resolver().lookup(uri).contents


ORDER = [
    "Operations_List", "Redis_CheckNameAvailability",
    "Redis_Create", "Redis_Update", "Redis_Get", "Redis_ListByResourceGroup", "Redis_ListBySubscription",
    "Redis_ListKeys", "Redis_RegenerateKey", "Redis_ForceReboot", "Redis_ListUpgradeNotifications",
    "FirewallRules_CreateOrUpdate", "FirewallRules_Get", "FirewallRules_List",
    "PatchSchedules_CreateOrUpdate", "PatchSchedules_Get", "PatchSchedules_ListByRedisResource",
    "LinkedServer_Create", "LinkedServer_Get", "LinkedServer_List",
    "PrivateEndpointConnections_Put", "PrivateEndpointConnections_Get", "PrivateEndpointConnections_List",
    "PrivateLinkResources_ListByRedisCache",
    "AccessPolicy_CreateUpdate", "AccessPolicy_Get", "AccessPolicy_List",
    "AccessPolicyAssignment_CreateUpdate", "AccessPolicyAssignment_Get", "AccessPolicyAssignment_List",
    "Redis_ExportData", "Redis_ImportData", "Redis_FlushCache", "AsyncOperationStatus_Get",
    "AccessPolicyAssignment_Delete", "AccessPolicy_Delete", "PrivateEndpointConnections_Delete",
    "LinkedServer_Delete", "PatchSchedules_Delete", "FirewallRules_Delete", "Redis_Delete",
]


def main():
    ops = {op_id: (method, path, op) for op_id, method, path, op in operations()}
    missing = sorted(set(ops) - set(ORDER))
    assert not missing, f"operations without a place in the replay: {missing}"
    # The link's other end.
    r = session.put(f"{BASE}/subscriptions/subid/resourceGroups/rg1/providers/Microsoft.Cache/redis/cache2",
                    params={"api-version": "2024-11-01"},
                    json={"location": "West US", "properties": {"sku": {"name": "Premium", "family": "P", "capacity": 1}}})
    assert r.status_code in (200, 201), r.text
    wait_provisioned("subid", "rg1", "cache2")
    failures = 0
    count = 0
    for op_id in ORDER:
        method, template, op = ops[op_id]
        for title, ref in op.get("x-ms-examples", {}).items():
            example = json.loads((SPEC.parent / ref["$ref"]).read_text())
            params = adapt(op_id, example["parameters"])
            count += 1
            try:
                ensure_cache(op_id, params)
                r = request(op_id, method, template, op, params)
                if method in ("PUT", "PATCH") and op_id.startswith("Redis_"):
                    wait_provisioned(params["subscriptionId"], params["resourceGroupName"], params["name"])
                declared = op["responses"]
                if str(r.status_code) not in declared:
                    raise AssertionError(f"status {r.status_code} is not one of {sorted(declared)}: {r.text[:400]}")
                schema = declared[str(r.status_code)].get("schema")
                if schema is not None:
                    validate(schema, r.json(), f"{r.status_code} body")
                if r.status_code in (201, 202) or "Azure-AsyncOperation" in r.headers:
                    status = wait_operation(r.headers)
                    if status is not None and status.get("status") != "Succeeded" and op_id != "Redis_Delete":
                        raise AssertionError(f"the operation ended {status}")
                    if status is not None and "id" in status:
                        parts = status["id"].split("/")
                        LAST_OPERATION[0] = parts[-1]
                        LAST_OPERATION[1] = parts[parts.index("locations") + 1]
                print(f"ok   {op_id} {title}")
            except AssertionError as e:
                failures += 1
                print(f"FAIL {op_id} {title}: {e}")
    print(f"{count - failures} of {count} examples passed")
    sys.exit(1 if failures else 0)


main()
