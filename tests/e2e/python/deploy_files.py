"""Checks the deployment files that cannot be run here (no container engine): they parse,
and they agree with each other and with the binary's own flags.

Usage: deploy_files.py REPO_ROOT CACHEPLANE_BINARY
Run by tests/e2e/deploy.rs; exits non-zero with the failed assertion.
"""
import json
import pathlib
import re
import subprocess
import sys

import yaml

root, binary = pathlib.Path(sys.argv[1]), sys.argv[2]
serve_help = subprocess.run([binary, "serve", "--help"], check=True, capture_output=True, text=True).stdout


def flag_value(args, flag):
    assert flag in args, f"{flag} missing from {args}"
    return args[args.index(flag) + 1]


def check_serve_args(args, where):
    """`serve` with flags the binary has; returns the node port range."""
    assert args[0] == "serve", f"{where}: runs {args[0]}, not serve"
    for a in args:
        if a.startswith("--"):
            assert re.search(rf"\s{re.escape(a)}\b", serve_help), f"{where}: serve has no flag {a}"
    first, last = (int(p) for p in flag_value(args, "--node-ports").split("-"))
    assert 0 < first <= last, where
    assert flag_value(args, "--node-bind") == "0.0.0.0", f"{where}: nodes unreachable from outside"
    return first, last


# docker-compose.yml
compose = yaml.safe_load((root / "docker-compose.yml").read_text())
services = compose["services"]
assert set(services) == {"cacheplane", "azurite", "create-container", "minio", "create-bucket"}, set(services)
cp = services["cacheplane"]
first, last = check_serve_args(cp["command"], "docker-compose.yml")
listen_port = flag_value(cp["command"], "--listen").rsplit(":", 1)[1]
assert f"127.0.0.1:{listen_port}:{listen_port}" in cp["ports"], cp["ports"]
assert f"127.0.0.1:{first}-{last}:{first}-{last}" in cp["ports"], cp["ports"]
for name, svc in services.items():
    deps = svc.get("depends_on", [])
    for d in deps:
        assert d in services, f"{name} depends on unknown {d}"
    for v in svc.get("volumes", []):
        # A named volume must be declared; a bind mount (./...) names a folder beside the file.
        assert v.startswith("./") or v.split(":")[0] in compose.get("volumes", {}), f"{name}: undeclared volume {v}"
assert cp["build"]["dockerfile"] == "deploy/Dockerfile"
# The bucket and container the init services create are the ones the header's strings name.
assert "mc mb -p m/cacheplane" in " ".join(services["create-bucket"]["entrypoint"])
assert "cacheplane" in services["create-container"]["command"]

# deploy/Dockerfile
docker = (root / "deploy" / "Dockerfile").read_text()
cmd = json.loads(re.search(r"^CMD (\[.*\])$", docker, re.M).group(1))
d_first, d_last = check_serve_args(cmd, "deploy/Dockerfile")
expose = re.search(r"^EXPOSE (.*)$", docker, re.M).group(1).split()
assert f"{d_first}-{d_last}" in expose and flag_value(cmd, "--listen").rsplit(":", 1)[1] in expose, expose
assert re.search(r"^USER cacheplane$", docker, re.M)
uid = int(re.search(r"useradd .*--uid (\d+)", docker).group(1))

# deploy/k8s
docs = [d for f in sorted((root / "deploy" / "k8s").glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d]
by_kind = {}
for d in docs:
    assert d.get("apiVersion") and d.get("kind") and d["metadata"].get("name"), d
    by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
deploy = by_kind["Deployment"]["cacheplane"]
pod = deploy["spec"]["template"]
labels = pod["metadata"]["labels"]
assert deploy["spec"]["selector"]["matchLabels"].items() <= labels.items()
assert deploy["spec"]["replicas"] == 1 and deploy["spec"]["strategy"]["type"] == "Recreate"
assert pod["spec"]["securityContext"]["runAsUser"] == uid
(container,) = pod["spec"]["containers"]
args = [re.sub(r"\$\((\w+)\)", "X", a) for a in container["args"]]
k_first, k_last = check_serve_args(args, "deploy/k8s Deployment")
port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
assert set(range(k_first, k_last + 1)) | {int(flag_value(args, "--listen").rsplit(":", 1)[1])} == set(port_names.values())
for probe in ("readinessProbe", "livenessProbe"):
    assert container[probe]["httpGet"]["port"] in port_names
for e in container.get("env", []):
    ref = e["valueFrom"]["secretKeyRef"]
    secret = by_kind["Secret"][ref["name"]]
    assert ref["key"] in secret.get("stringData", {}) | secret.get("data", {}), ref
# serve listens beyond loopback everywhere: its token comes from a secret through the
# environment (never the public development token, never on the command line).
assert "CACHEPLANE_TOKEN" in serve_help, "serve reads CACHEPLANE_TOKEN"
assert any(e["name"] == "CACHEPLANE_TOKEN" for e in container.get("env", [])), "k8s: no token"
assert "--token" not in container["args"], "k8s: the token on the command line"
assert cp["environment"]["CACHEPLANE_TOKEN"].startswith("${CACHEPLANE_TOKEN:?"), "compose: token not required"
assert "cacheplane-dev-token" not in docker and "--token" not in cmd, "Dockerfile: a token baked in"
# TLS by default where serve runs beyond one machine: HTTPS probes, the CA where clients find it.
assert "--tls" in cp["command"] and "--tls" in container["args"], "TLS off by default"
assert all(container[p]["httpGet"].get("scheme") == "HTTPS" for p in ("readinessProbe", "livenessProbe"))
assert any(v.endswith(":/data/tls") for v in cp["volumes"]), "compose: the CA is not mounted"
for v in pod["spec"]["volumes"]:
    assert v["persistentVolumeClaim"]["claimName"] in by_kind["PersistentVolumeClaim"]
assert {m["name"] for m in container["volumeMounts"]} <= {v["name"] for v in pod["spec"]["volumes"]}
assert flag_value(args, "--data-dir") in {m["mountPath"] for m in container["volumeMounts"]}
for svc in by_kind["Service"].values():
    assert svc["spec"]["selector"].items() <= labels.items()
    for p in svc["spec"]["ports"]:
        assert p["targetPort"] in port_names, p
print("deploy ok")
