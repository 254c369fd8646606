#!/usr/bin/env bash
# Checks deploy/ as far as a machine without systemd as PID 1, a Kubernetes cluster, Slurm or a
# container engine can: unit files, manifests, the Slurm script and the Containerfile.
#
#   scripts/check-deploy.sh            # prints ok/FAIL lines, then "check-deploy: N passed, M failed"
#
# Installs what is missing (Debian, apt-get, as root or with sudo): systemd (systemd-analyze),
# python3, python3-yaml, python3-kubernetes (its API models give the manifests' schema), shellcheck.
# Exit status 1 when a check fails (each FAIL line names the file), 2 when a tool cannot be had.
#
# What is checked:
#   systemd     `systemd-analyze verify` of tts-coordinator.service and tts-worker@0.service in a
#               temporary root (see check_systemd: the binaries are stand-ins there); any message
#               fails. Environment files: KEY=VALUE syntax, no secret values.
#   flags       every --flag the deploy files pass exists in `tts-coordinator serve --help` /
#               `tts-worker join --help` of the binaries under .build/ (when built; else skipped).
#               A build that predates the HTTP server gets a note for --http, not a failure.
#   kubernetes  YAML parse; every field known to the Kubernetes API (python3-kubernetes models,
#               API 1.22), required fields present; then the fields that matter here (see
#               check_kubernetes); `kubectl kustomize` when kubectl is installed.
#   slurm       bash -n, shellcheck, #SBATCH lines, and runs the script with a stand-in tts-worker:
#               one worker per GPU with the right --gpu/--name/--state-dir, one SIGTERM each on
#               SIGUSR1, SIGTERM under Slurm not forwarded (outside Slurm it is), clear errors
#               for bad input, the settings file read with the job's environment winning.
#   container   FROM lines (tagged; swift:6 build, debian:bookworm-slim runtime), stages,
#               non-root USER, exec-form ENTRYPOINT/CMD, the -dev packages of scripts/setup.sh,
#               package names known to apt (when its lists are there), no secrets, ignore file.
#   secrets     nothing under deploy/ looks like a real token, key or webhook URL.
set -Eeuo pipefail
trap 'echo "check-deploy: internal error at line $LINENO (exit $?)" >&2' ERR

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
deploy="$root/deploy"
py=/usr/bin/python3
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1: $2"; }
fail() { failed=$((failed + 1)); echo "FAIL $1: $2"; }
note() { echo "note $1: $2"; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# ---------------------------------------------------------------------------------------------
# Tools
need=()
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
if [ ! -x "$py" ]; then
  need+=(python3 python3-yaml python3-kubernetes)
else
  "$py" -c 'import yaml' 2>/dev/null || need+=(python3-yaml)
  "$py" -c 'import kubernetes' 2>/dev/null || need+=(python3-kubernetes)
fi
command -v shellcheck >/dev/null 2>&1 || need+=(shellcheck)
if [ ${#need[@]} -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || { echo "check-deploy: missing ${need[*]} and no apt-get; install them" >&2; exit 2; }
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  echo "check-deploy: installing ${need[*]}" >&2
  { "${sudo[@]+"${sudo[@]}"}" apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive "${sudo[@]+"${sudo[@]}"}" apt-get install -y -qq --no-install-recommends "${need[@]}"; } >&2 \
    || { echo "check-deploy: apt-get install ${need[*]} failed" >&2; exit 2; }
fi

# ---------------------------------------------------------------------------------------------
# systemd.
# `systemd-analyze verify` also checks that each ExecStart= binary exists and is executable, and
# /usr/local/bin/tts-* is not installed here. Rather than edit the units, they are verified
# unchanged inside a temporary root (--root): the system's own units (for sysinit.target and
# friends), ours in etc/systemd/system, and a two-line stand-in script at each /usr/local/bin/tts-*
# path that an ExecStart= names. So this proves the unit files are valid for this systemd (every
# directive known, every value parsed, specifiers expanded for instance 0), not that the binaries
# run. ExecStartPre=-... (nvidia-modprobe) is optional by its "-" and verify accepts it missing.
check_systemd() {
  local sd="$deploy/systemd" r="$tmp/sysroot" unitdir bin out unit file
  unitdir=/usr/lib/systemd/system
  [ -d "$unitdir" ] || unitdir=/lib/systemd/system
  mkdir -p "$r/etc/systemd/system" "$r/usr/lib/systemd"
  cp -a "$unitdir" "$r/usr/lib/systemd/system"
  cp "$sd/tts-coordinator.service" "$sd/tts-worker@.service" "$r/etc/systemd/system/"
  # shellcheck disable=SC2013  # one path per line, no spaces
  for bin in $(sed -n 's/^ExecStart=[-+!@:]*\(\/usr\/local\/bin\/tts-[a-z-]*\).*/\1/p' "$sd"/*.service | sort -u); do
    mkdir -p "$r$(dirname "$bin")"
    printf '#!/bin/sh\nexit 0\n' > "$r$bin"
    chmod 0755 "$r$bin"
  done
  for unit in tts-coordinator.service tts-worker@0.service; do
    file="$sd/${unit/@0/@}"
    if out="$(systemd-analyze verify --root="$r" --man=no --generators=no "$unit" 2>&1)" && [ -z "$out" ]; then
      ok "$file" "systemd-analyze verify $unit ($(systemd-analyze --version | sed -n 1p))"
    else
      fail "$file" "systemd-analyze verify $unit: ${out:-non-zero exit}"
    fi
  done
  for unit in tts-coordinator.service tts-worker@0.service; do
    out="$(systemd-analyze security --offline=yes --root="$r" "$unit" 2>/dev/null | sed -n 's/.*Overall exposure level for [^:]*: //p')" || true
    [ -z "$out" ] || note "$sd/${unit/@0/@}" "systemd-analyze security exposure $out"
  done

  # Units: the variables expanded in ExecStart= have a default, so systemd never logs "unset".
  local var
  for file in "$sd/tts-coordinator.service" "$sd/tts-worker@.service"; do
    # shellcheck disable=SC2013  # variable names, no spaces
    for var in $(sed -n 's/^ExecStart=.*\$\([A-Z_]*\).*/\1/p' "$file"); do
      if grep -q "^Environment=$var=" "$file"; then
        ok "$file" "\$$var has an Environment= default"
      else
        fail "$file" "ExecStart= expands \$$var, which has no Environment=$var= default"
      fi
    done
    grep -q '^Restart=on-failure' "$file" || fail "$file" "Restart= is not on-failure"
    grep -q '^EnvironmentFile=-/etc/tts-cluster/' "$file" || fail "$file" "no optional EnvironmentFile=-/etc/tts-cluster/..."
    grep -q '^StateDirectory=' "$file" || fail "$file" "no StateDirectory="
  done
  # The worker must keep the GPU reachable and let its children finish their drain.
  file="$sd/tts-worker@.service"
  if grep -Eq '^(PrivateDevices=(yes|true|1|on)|DevicePolicy=(closed|strict)|DeviceAllow=|ProtectClock=(yes|true|1|on))' "$file"; then
    fail "$file" "a setting that hides /dev/nvidia* (PrivateDevices=, DevicePolicy=, DeviceAllow=, ProtectClock=)"
  else
    ok "$file" "no PrivateDevices=/DevicePolicy=/DeviceAllow=/ProtectClock= (GPU devices stay visible)"
  fi
  if grep -q '^KillMode=mixed' "$file" && grep -q -- '--gpu %i' "$file"; then
    ok "$file" "KillMode=mixed, --gpu %i"
  else
    fail "$file" "expected KillMode=mixed and --gpu %i"
  fi

  # Environment files: comments, blank lines or KEY=VALUE; secrets only as commented placeholders.
  for file in "$sd"/*.env.example; do
    local bad
    bad="$(grep -nEv '^[[:space:]]*(#.*)?$|^[A-Za-z_][A-Za-z0-9_]*=' "$file" || true)"
    if [ -n "$bad" ]; then fail "$file" "not KEY=VALUE: $bad"; else ok "$file" "KEY=VALUE syntax"; fi
    bad="$(grep -nE '^(WANDB_API_KEY|SLACK_WEBHOOK_URL)=.+' "$file" || true)"
    if [ -n "$bad" ]; then fail "$file" "a secret has a value: $bad"; else ok "$file" "no secret values"; fi
  done
}

# ---------------------------------------------------------------------------------------------
# Flags: every --flag passed by the deploy files is one the built binaries know.
find_bin() {  # newest built copy of $1 under .build/, or $TTS_BIN_DIR/$1
  if [ -n "${TTS_BIN_DIR:-}" ]; then [ -x "$TTS_BIN_DIR/$1" ] && echo "$TTS_BIN_DIR/$1"; return 0; fi
  local f best=""
  for f in "$root/.build/release/$1" "$root/.build/debug/$1"; do
    [ -x "$f" ] || continue
    if [ -z "$best" ] || [ "$f" -nt "$best" ]; then best="$f"; fi
  done
  [ -z "$best" ] || echo "$best"
}
check_flags() {
  local which sub bin help used flag missing label
  for which in coordinator worker; do
    if [ "$which" = coordinator ]; then
      sub="serve"
      used="$( { sed -n 's/^ExecStart=//p' "$deploy/systemd/tts-coordinator.service"
                 cat "$deploy/systemd/coordinator.env.example"
                 "$py" - "$deploy/kubernetes/coordinator-statefulset.yaml" <<'PY'
import sys, yaml
try:
    for d in yaml.safe_load_all(open(sys.argv[1])):
        for c in d["spec"]["template"]["spec"]["containers"]:
            print(" ".join(str(a) for a in c.get("args", [])))
except Exception as e:  # reported by the Kubernetes checks
    pass
PY
               } | grep -oE -- '(^|[[:space:]"])--[a-z][a-z0-9-]*' | tr -d ' "\t' | sort -u)" || true
    else
      sub="join"
      used="$( { sed -n 's/^ExecStart=//p' "$deploy/systemd/tts-worker@.service"
                 cat "$deploy/systemd/worker.env.example"
                 # shellcheck disable=SC2016  # a literal $worker_bin in the script
                 grep -E '"\$worker_bin" join' -A1 "$deploy/slurm/tts-worker.sbatch"
                 "$py" - "$deploy/kubernetes/worker-daemonset.yaml" <<'PY'
import sys, yaml
try:
    for d in yaml.safe_load_all(open(sys.argv[1])):
        for c in d["spec"]["template"]["spec"]["containers"]:
            print(" ".join(str(a) for a in c.get("args", [])))
except Exception as e:  # reported by the Kubernetes checks
    pass
PY
               } | grep -oE -- '(^|[[:space:]"])--[a-z][a-z0-9-]*' | tr -d ' "\t' | sort -u)" || true
    fi
    bin="$(find_bin "tts-$which")"
    label="tts-$which $sub"
    if [ -z "$bin" ]; then
      note "$label" "no built binary under .build/ (or TTS_BIN_DIR): flags not checked ($(echo "$used" | tr '\n' ' '))"
      continue
    fi
    if ! help="$("$bin" "$sub" --help 2>&1)"; then
      note "$label" "$bin $sub --help failed (binary being rebuilt?): flags not checked"
      continue
    fi
    missing=()
    for flag in $used; do
      grep -qE -- "(^|[[:space:],])$flag([[:space:],=<]|\$)" <<< "$help" || missing+=("$flag")
    done
    local pending=() real=()
    for flag in ${missing[@]+"${missing[@]}"}; do
      if [ "$which" = coordinator ] && [ "$flag" = --http ]; then pending+=("$flag"); else real+=("$flag"); fi
    done
    if [ ${#real[@]} -gt 0 ]; then
      fail "$label" "flags used under deploy/ that $bin does not know: ${real[*]}"
    else
      ok "$label" "$(( $(echo "$used" | wc -w) - ${#pending[@]} )) flags used under deploy/ are known to $bin"
    fi
    [ ${#pending[@]} -eq 0 ] || note "$label" "${pending[*]} not in this build yet (the HTTP server is coming; deploy/kubernetes passes it)"
  done
}

# ---------------------------------------------------------------------------------------------
# Kubernetes: a Python program (PyYAML + the API models of python3-kubernetes).
check_kubernetes() {
  "$py" - "$deploy/kubernetes" <<'PY'
import os, re, sys
import yaml
from kubernetes import client as k8s

kdir = sys.argv[1]
passed = failed = 0
def ok(f, m):
    global passed; passed += 1; print(f"ok   {f}: {m}")
def fail(f, m):
    global failed; failed += 1; print(f"FAIL {f}: {m}")

KINDS = {("apps/v1", "StatefulSet"): "V1StatefulSet", ("apps/v1", "DaemonSet"): "V1DaemonSet",
         ("v1", "Service"): "V1Service", ("v1", "Secret"): "V1Secret",
         ("v1", "PersistentVolumeClaim"): "V1PersistentVolumeClaim"}
QUANTITY_PARENTS = {"limits", "requests", "capacity", "hard"}

def walk(value, typ, path, errs, parent=""):
    """Unknown fields and wrong scalar types against the model classes' openapi_types."""
    if value is None:
        return
    m = re.fullmatch(r"list\[(.+)\]", typ)
    if m:
        if not isinstance(value, list):
            errs.append(f"{path}: expected a list"); return
        for i, v in enumerate(value):
            walk(v, m.group(1), f"{path}[{i}]", errs)
        return
    m = re.fullmatch(r"dict\(([^,]+), (.+)\)", typ)
    if m:
        if not isinstance(value, dict):
            errs.append(f"{path}: expected a map"); return
        for k, v in value.items():
            if m.group(2) == "str" and parent in QUANTITY_PARENTS and isinstance(v, (int, float)) and not isinstance(v, bool):
                continue  # a quantity may be a number
            walk(v, m.group(2), f"{path}.{k}", errs)
        return
    if typ == "str":
        if not isinstance(value, str): errs.append(f"{path}: expected a string, got {value!r} (quote it)")
        return
    if typ == "int":
        if not isinstance(value, int) or isinstance(value, bool): errs.append(f"{path}: expected an integer, got {value!r}")
        return
    if typ == "bool":
        if not isinstance(value, bool): errs.append(f"{path}: expected true/false, got {value!r}")
        return
    if typ in ("object", "float", "datetime", "date"):
        return
    cls = getattr(k8s, typ, None)
    if cls is None:
        errs.append(f"{path}: no model {typ}"); return
    if not isinstance(value, dict):
        errs.append(f"{path}: expected a {typ} object"); return
    by_json = {j: a for a, j in cls.attribute_map.items()}
    for k, v in value.items():
        if k not in by_json:
            errs.append(f"{path}.{k}: unknown field of {typ}")
        else:
            walk(v, cls.openapi_types[by_json[k]], f"{path}.{k}", errs, parent=k)

api = k8s.ApiClient()
docs = {}   # file -> [doc]
for name in sorted(os.listdir(kdir)):
    if not name.endswith((".yaml", ".yml")):
        continue
    path = os.path.join(kdir, name)
    try:
        docs[name] = [d for d in yaml.safe_load_all(open(path)) if d is not None]
    except yaml.YAMLError as e:
        fail(path, f"YAML: {e}".replace("\n", " ")); continue
    if name == "kustomization.yaml":
        ok(path, "YAML parses"); continue
    for d in docs[name]:
        what = f"{d.get('kind')} {d.get('metadata', {}).get('name')}"
        model = KINDS.get((d.get("apiVersion"), d.get("kind")))
        if model is None:
            fail(path, f"{what}: unexpected apiVersion/kind {d.get('apiVersion')}/{d.get('kind')}"); continue
        errs = []
        walk({k: v for k, v in d.items() if k not in ("apiVersion", "kind")}, model, d["kind"], errs)
        try:
            api._ApiClient__deserialize(d, model)   # the setters refuse missing required fields
        except (ValueError, TypeError) as e:
            errs.append(f"required field: {e}")
        if "namespace" in d.get("metadata", {}):
            errs.append("metadata.namespace is set: the manifests are namespace-agnostic")
        if errs:
            for e in errs: fail(path, f"{what}: {e}")
        else:
            ok(path, f"{what}: YAML parses, every field known to the API, required fields present")

def one(kind, name=None):
    for f, ds in docs.items():
        for d in ds:
            if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name):
                return os.path.join(kdir, f), d
    return None, None

def check(f, cond, good, bad):
    (ok if cond else fail)(f, good if cond else bad)

def pod(d): return d["spec"]["template"]["spec"]
def container(d): return pod(d)["containers"][0]
def arg(c, flag):
    a = [str(x) for x in c.get("args", [])]
    return a[a.index(flag) + 1] if flag in a and a.index(flag) + 1 < len(a) else None
def mounts(c): return {m["name"]: m["mountPath"] for m in c.get("volumeMounts", [])}
def labels_match(sel, labels): return bool(sel) and all(labels.get(k) == v for k, v in sel.items())

# Kustomization: every manifest listed (the Secret example not), files exist, images named.
kf = os.path.join(kdir, "kustomization.yaml")
kust = (docs.get("kustomization.yaml") or [{}])[0]
res = kust.get("resources", [])
check(kf, kust.get("kind") == "Kustomization" and kust.get("apiVersion", "").startswith("kustomize.config.k8s.io/"),
      "kind Kustomization", "not a Kustomization")
missing = [r for r in res if not os.path.exists(os.path.join(kdir, r))]
check(kf, not missing, f"resources exist: {', '.join(res)}", f"missing resources: {missing}")
unlisted = [n for n in docs if n not in res and n not in ("kustomization.yaml", "secret.example.yaml")]
check(kf, not unlisted, "every manifest is listed", f"manifests not in resources: {unlisted}")
check(kf, "secret.example.yaml" not in res, "secret.example.yaml is not applied by the kustomization",
      "secret.example.yaml is in resources: its placeholders would be applied")
check(kf, "namespace" not in kust, "no namespace (namespace-agnostic)", "namespace is set")
image_names = {i.get("name") for i in kust.get("images", [])}

# Secret example: placeholders only.
sf, secret = one("Secret")
secret_keys = set()
if secret:
    data = secret.get("stringData", {})
    secret_keys = set(data) | set(secret.get("data", {}))
    real = [k for k, v in data.items() if v and not re.search(r"REPLACE|CHANGE|EXAMPLE|PLACEHOLDER", str(v), re.I)]
    check(sf, not real and "data" not in secret, f"placeholder values only ({', '.join(sorted(secret_keys))})",
          f"values that are not placeholders: {real or 'data:'}")
    check(sf, "token" in secret_keys, "has the cluster token key", "no `token` key")
else:
    fail(os.path.join(kdir, "secret.example.yaml"), "no Secret")
secret_name = secret["metadata"]["name"] if secret else None

def secret_refs(f, d):
    bad = []
    for v in pod(d).get("volumes", []):
        s = v.get("secret")
        if s:
            if s.get("secretName") != secret_name: bad.append(f"volume {v['name']} -> secret {s.get('secretName')}")
            bad += [f"volume {v['name']} key {i['key']}" for i in s.get("items", []) if i["key"] not in secret_keys]
    for c in pod(d)["containers"]:
        for e in c.get("env", []):
            r = (e.get("valueFrom") or {}).get("secretKeyRef")
            if r and (r.get("name") != secret_name or r.get("key") not in secret_keys):
                bad.append(f"env {e['name']} -> {r.get('name')}/{r.get('key')}")
    check(f, not bad, f"secret references resolve to {secret_name} in secret.example.yaml", f"dangling secret references: {bad}")

def common(f, d, shared_claim):
    sel = d["spec"]["selector"].get("matchLabels", {})
    check(f, labels_match(sel, d["spec"]["template"]["metadata"].get("labels", {})),
          "selector matches the pod labels", f"selector {sel} does not match the pod labels")
    p = pod(d)
    vol_names = {v["name"] for v in p.get("volumes", [])} | {t["metadata"]["name"] for t in d["spec"].get("volumeClaimTemplates", [])}
    dangling = [n for c in p["containers"] for n in mounts(c) if n not in vol_names]
    check(f, not dangling, "every volumeMount has a volume", f"volumeMounts without a volume: {dangling}")
    for c in p["containers"]:
        img = c.get("image", "")
        check(f, img in image_names, f"container {c['name']} image {img} is set by the kustomization's images",
              f"container {c['name']} image {img!r} is not in kustomization images {sorted(image_names)}")
        sc = c.get("securityContext", {})
        check(f, sc.get("allowPrivilegeEscalation") is False and p.get("securityContext", {}).get("runAsNonRoot") is True,
              f"container {c['name']}: non-root, no privilege escalation", f"container {c['name']}: runAsNonRoot / allowPrivilegeEscalation: false missing")
    claim = [v for v in p.get("volumes", []) if (v.get("persistentVolumeClaim") or {}).get("claimName") == shared_claim]
    secret_refs(f, d)
    return claim and mounts(container(d)).get(claim[0]["name"])

# Shared storage.
pf, pvc = one("PersistentVolumeClaim")
shared_claim = pvc["metadata"]["name"] if pvc else None
if pvc:
    check(pf, "ReadWriteMany" in pvc["spec"].get("accessModes", []), "shared claim is ReadWriteMany",
          "the shared checkpoint claim must be ReadWriteMany")
else:
    fail(os.path.join(kdir, "shared-pvc.yaml"), "no PersistentVolumeClaim for shared checkpoints")

# Coordinator.
cf, sts = one("StatefulSet")
svc_f, svc = None, None
coord_shared = None
if sts:
    s = sts["spec"]; c = container(sts)
    check(cf, s.get("replicas") == 1, "replicas: 1", f"replicas must be 1 (one writer of the SQLite database), got {s.get('replicas')}")
    vct = [t["metadata"]["name"] for t in s.get("volumeClaimTemplates", [])]
    db = arg(c, "--db") or ""
    db_dir = os.path.dirname(db)
    check(cf, any(mounts(c).get(n) == db_dir for n in vct), f"volumeClaimTemplates {vct} mounted at the database directory {db_dir}",
          f"no volumeClaimTemplate mounted at the directory of --db {db!r} (volumeClaimTemplates: {vct})")
    ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
    http = arg(c, "--http") or ""
    check(cf, http.startswith("0.0.0.0:") and ports.get("http") == int(http.rsplit(":", 1)[-1] or 0),
          f"--http {http} matches containerPort http", f"--http {http!r} must bind 0.0.0.0 on containerPort http ({ports.get('http')})")
    listen = arg(c, "--listen") or ""
    check(cf, listen.startswith(("tcp://0.0.0.0:", "tls+tcp://0.0.0.0:")) and ports.get("nng") == int(listen.rsplit(":", 1)[-1] or 0),
          f"--listen {listen} matches containerPort nng", f"--listen {listen!r} must bind 0.0.0.0 on containerPort nng ({ports.get('nng')})")
    check(cf, bool(arg(c, "--token-file")), "--token-file given (off loopback a token is required)", "no --token-file")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        g = (c.get(probe) or {}).get("httpGet") or {}
        check(cf, g.get("path") == path and g.get("port") in ("http", ports.get("http")),
              f"{probe} GET {path} on the http port", f"{probe} must be an httpGet of {path} on the http port, got {g or None}")
    ann = sts["spec"]["template"]["metadata"].get("annotations", {})
    check(cf, ann.get("prometheus.io/scrape") == "true" and ann.get("prometheus.io/port") == str(ports.get("http"))
          and ann.get("prometheus.io/path") == "/metrics", "Prometheus scrape annotations (port, /metrics)",
          f"Prometheus annotations missing or wrong: {ann}")
    sf2, headless = one("Service", s.get("serviceName"))
    check(cf, bool(headless) and headless["spec"].get("clusterIP") == "None",
          f"serviceName {s.get('serviceName')} is a headless Service", f"serviceName {s.get('serviceName')!r} is not a headless Service in the manifests")
    coord_shared = common(cf, sts, shared_claim)
    check(cf, bool(coord_shared), f"shared claim mounted at {coord_shared}", "the shared claim is not mounted")
    root = arg(c, "--checkpoint-root") or ""
    check(cf, bool(coord_shared) and (root + "/").startswith(str(coord_shared).rstrip("/") + "/"),
          f"--checkpoint-root {root} is on the shared claim", f"--checkpoint-root {root!r} is not under the shared mount {coord_shared}")
    labels = sts["spec"]["template"]["metadata"]["labels"]
    for f, d in docs.items():
        for x in d:
            if x.get("kind") == "Service" and x["spec"].get("clusterIP") != "None":
                svc_f, svc = os.path.join(kdir, f), x
    if svc:
        check(svc_f, labels_match(svc["spec"].get("selector"), labels), "Service selects the coordinator pod", "Service selector does not match the coordinator pod")
        targets = {p.get("targetPort") for p in svc["spec"]["ports"]}
        check(svc_f, {"nng", "http"} <= targets or {ports.get("nng"), ports.get("http")} <= targets,
              "Service exposes the NNG port and 8080", f"Service ports {targets} do not cover nng and http")
    else:
        fail(os.path.join(kdir, "coordinator-service.yaml"), "no ClusterIP Service for the coordinator")
else:
    fail(os.path.join(kdir, "coordinator-statefulset.yaml"), "no StatefulSet")

# Workers.
wf, ds = one("DaemonSet")
if ds:
    p = pod(ds); c = container(ds)
    gpu = (c.get("resources", {}).get("limits") or {}).get("nvidia.com/gpu")
    check(wf, str(gpu) == "1", "resources.limits nvidia.com/gpu: 1", f"resources.limits must request nvidia.com/gpu: 1, got {gpu!r}")
    check(wf, arg(c, "--gpu") == "0", "--gpu 0 (the device plugin maps the GPU)", f"--gpu must be 0, got {arg(c, '--gpu')!r}")
    check(wf, bool(p.get("nodeSelector")) and any("nvidia.com/gpu" in t.get("key", "") for t in p.get("tolerations", [])),
          "nodeSelector and an nvidia.com/gpu toleration", "GPU nodeSelector / nvidia.com/gpu toleration missing")
    grace = p.get("terminationGracePeriodSeconds", 30)
    check(wf, grace >= 120, f"terminationGracePeriodSeconds {grace} (time to drain)", f"terminationGracePeriodSeconds {grace} is too short to drain (>= 120)")
    args = [str(a) for a in c.get("args", [])]
    addr = next((a for a in args if re.match(r"(tls\+)?tcp://", a)), "")
    m = re.match(r"(?:tls\+)?tcp://([^:/]+):(\d+)$", addr)
    if svc is None:
        fail(wf, "no coordinator Service to check the worker's coordinator address against")
    elif m:
        nng_port = next((pp["port"] for pp in svc["spec"]["ports"] if pp.get("name") == "nng"), None)
        check(wf, m.group(1).split(".")[0] == svc["metadata"]["name"] and int(m.group(2)) == nng_port,
              f"coordinator address {addr} is the Service's DNS name and NNG port",
              f"coordinator address {addr!r} is not tcp://{svc['metadata']['name']}:{nng_port}")
    else:
        fail(wf, f"no coordinator address tcp://SERVICE:PORT in the worker args ({args})")
    worker_shared = common(wf, ds, shared_claim)
    check(wf, bool(worker_shared) and worker_shared == coord_shared,
          f"shared claim mounted at the coordinator's path {worker_shared}",
          f"the shared claim must be mounted at the same path as in the coordinator ({coord_shared}), got {worker_shared}")
else:
    fail(os.path.join(kdir, "worker-daemonset.yaml"), "no DaemonSet")

print(f"RESULT {passed} {failed}")
PY
}

# ---------------------------------------------------------------------------------------------
# Slurm.
check_slurm() {
  local f="$deploy/slurm/tts-worker.sbatch" out v
  # The runs below set what they need; nothing from this shell's own job may leak in.
  for v in CUDA_VISIBLE_DEVICES TTS_GPUS TTS_COORDINATOR TTS_FORWARD_TERM TTS_WORKER_ARGS TTS_CLUSTER_TOKEN_FILE "${!SLURM_@}"; do
    unset "$v"
  done
  if out="$(bash -n "$f" 2>&1)"; then ok "$f" "bash -n"; else fail "$f" "bash -n: $out"; fi
  if out="$(shellcheck -s bash "$f" 2>&1)"; then ok "$f" "shellcheck ($(shellcheck --version | sed -n 's/^version: //p'))"; else fail "$f" "shellcheck: $out"; fi
  # #SBATCH lines count only before the first command.
  local first_cmd last_sbatch
  first_cmd="$(grep -m1 -nvE '^[[:space:]]*(#.*)?$' "$f" | cut -d: -f1)"
  last_sbatch="$(grep -n '^#SBATCH' "$f" | tail -1 | cut -d: -f1)"
  if [ -n "$last_sbatch" ] && [ "$last_sbatch" -lt "$first_cmd" ] && grep -qE '^#SBATCH --(gpus-per-node|gres=gpu)' "$f" && grep -q '^#SBATCH --signal=B:USR1@' "$f"; then
    ok "$f" "#SBATCH lines before the first command (GPUs, --signal=B:USR1@...)"
  else
    fail "$f" "#SBATCH lines must come before the first command and request GPUs and --signal=B:USR1@N"
  fi

  # Run it with a stand-in tts-worker that records its arguments and signals: the first SIGTERM
  # drains (exit 0 after 0.2 s), a second stops it (exit 130).
  local t="$tmp/slurm" fake
  mkdir -p "$t/bin"
  fake="$t/bin/tts-worker"
  cat > "$fake" <<'FAKE'
#!/usr/bin/env bash
rec="$FAKE_DIR/worker-$$.txt"
printf 'ARGS %s\n' "$*" > "$rec"
printf 'CUDA_DEVICE_ORDER=%s\n' "${CUDA_DEVICE_ORDER:-}" >> "$rec"
n=0; draining=0
trap 'n=$((n + 1)); echo "TERM $n" >> "$rec"; [ "$n" -lt 2 ] || exit 130; draining=1' TERM
for _ in $(seq 1 300); do
  sleep 0.1 & wait $! || true
  if [ "$draining" = 1 ]; then sleep 0.2; echo "DRAINED" >> "$rec"; exit 0; fi
done
exit 1
FAKE
  chmod +x "$fake"
  : > "$t/empty.env"

  # run_case NAME SIGNALS... (env comes from the caller; env_file= names a settings file): starts the script, waits for the workers,
  # sends each signal (0.3 s apart; SNAP instead saves the records so far in $snap), waits; sets
  # case_rc and leaves records in $FAKE_DIR.
  run_case() {
    local name="$1"; shift
    export FAKE_DIR="$t/$name"
    rm -rf "$FAKE_DIR"; mkdir -p "$FAKE_DIR/state" "$FAKE_DIR/logs"
    TTS_WORKER_BIN="$fake" TTS_ENV_FILE="${env_file:-$t/empty.env}" TTS_STATE_ROOT="$FAKE_DIR/state" TTS_LOG_DIR="$FAKE_DIR/logs" \
      bash "$f" > "$FAKE_DIR/out.txt" 2>&1 &
    local pid=$! sig
    for _ in $(seq 1 50); do
      [ "$(find "$FAKE_DIR" -maxdepth 1 -name 'worker-*.txt' | wc -l)" -ge "${expect_workers:-1}" ] && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    sleep 0.2
    snap=""
    for sig in "$@"; do
      if [ "$sig" = SNAP ]; then snap="$(records)"; else kill "-$sig" "$pid" 2>/dev/null || true; sleep 0.3; fi
    done
    case_rc=0
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid"; case_rc=999; else wait "$pid" || case_rc=$?; fi
    # Stand-in workers left behind by a broken script (their records are named after their pids).
    local rec
    for rec in "$FAKE_DIR"/worker-*.txt; do
      [ -e "$rec" ] || continue
      rec="${rec##*/worker-}"; kill -KILL "${rec%.txt}" 2>/dev/null || true
    done
  }
  records() { cat "$FAKE_DIR"/worker-*.txt 2>/dev/null; }
  # (not `records | grep -q`: with pipefail, grep -q quitting early can fail the pipeline by SIGPIPE)
  has() { grep -q -- "$1" <<< "$(records)"; }

  # 1. Slurm, two GPUs relative to the job (ConstrainDevices), node GPUs 2,3; SIGUSR1 drains.
  local host
  host="$(hostname -s)"
  expect_workers=2 SLURM_JOB_ID=4242 CUDA_VISIBLE_DEVICES=0,1 SLURM_JOB_GPUS=2,3 SLURM_GPUS_ON_NODE=2 \
    TTS_COORDINATOR=tcp://127.0.0.1:1 run_case usr1 USR1
  if [ "$case_rc" -eq 0 ] && [ "$(records | grep -c '^DRAINED')" -eq 2 ] && [ "$(records | grep -c '^TERM')" -eq 2 ] \
     && has "^ARGS join tcp://127.0.0.1:1 --gpu 0 --name $host-gpu2 --state-dir $FAKE_DIR/state/$host-gpu2\$" \
     && has "^ARGS join tcp://127.0.0.1:1 --gpu 1 --name $host-gpu3 --state-dir $FAKE_DIR/state/$host-gpu3\$" \
     && [ "$(records | grep -c '^CUDA_DEVICE_ORDER=PCI_BUS_ID')" -eq 2 ]; then
    ok "$f" "run: 2 workers (--gpu 0/1, names and state dirs after node GPUs 2/3), SIGUSR1 -> one SIGTERM each, all drained, exit 0"
  else
    fail "$f" "run with SIGUSR1: exit $case_rc; workers: $(records | tr '\n' '|'); script: $(tr '\n' '|' < "$FAKE_DIR/out.txt")"
  fi

  # 2. Slurm: SIGTERM to the script is not forwarded (Slurm signals the workers itself); USR1 then drains.
  expect_workers=1 SLURM_JOB_ID=4243 CUDA_VISIBLE_DEVICES=0 TTS_COORDINATOR=tcp://127.0.0.1:1 run_case term-slurm TERM SNAP USR1
  if [ "$case_rc" -eq 0 ] && ! grep -q '^TERM' <<< "$snap" && [ "$(records | grep -c '^TERM')" -eq 1 ] && has '^DRAINED'; then
    ok "$f" "run: SIGTERM under Slurm not forwarded (no double signal), SIGUSR1 then drains"
  else
    fail "$f" "SIGTERM under Slurm: exit $case_rc; workers: $(records | tr '\n' '|'); script: $(tr '\n' '|' < "$FAKE_DIR/out.txt")"
  fi

  # 3. Outside Slurm: TTS_GPUS, SIGTERM is forwarded once.
  expect_workers=1 TTS_GPUS="1" TTS_COORDINATOR=tcp://127.0.0.1:1 run_case term-local TERM
  if [ "$case_rc" -eq 0 ] && [ "$(records | grep -c '^TERM')" -eq 1 ] && has "^ARGS join tcp://127.0.0.1:1 --gpu 1 --name $host-gpu1 "; then
    ok "$f" "run: outside Slurm, TTS_GPUS=1, SIGTERM forwarded once, drained"
  else
    fail "$f" "SIGTERM outside Slurm: exit $case_rc; workers: $(records | tr '\n' '|'); script: $(tr '\n' '|' < "$FAKE_DIR/out.txt")"
  fi

  # 4. Refusals: no coordinator; GPU UUIDs; no GPUs at all. Exit 2 with the reason, no worker started.
  local ok4=1 why=""
  expect_workers=1 SLURM_JOB_ID=1 CUDA_VISIBLE_DEVICES=0 TTS_COORDINATOR="" run_case no-coord
  { [ "$case_rc" -eq 2 ] && grep -q 'set TTS_COORDINATOR' "$FAKE_DIR/out.txt" && [ -z "$(records)" ]; } || { ok4=0; why+="no coordinator: exit $case_rc; "; }
  expect_workers=1 SLURM_JOB_ID=1 CUDA_VISIBLE_DEVICES=GPU-3f1c2a9e TTS_COORDINATOR=tcp://127.0.0.1:1 run_case uuid
  { [ "$case_rc" -eq 2 ] && grep -q 'not a list of GPU indices' "$FAKE_DIR/out.txt" && [ -z "$(records)" ]; } || { ok4=0; why+="UUIDs: exit $case_rc; "; }
  expect_workers=1 SLURM_JOB_ID=1 TTS_COORDINATOR=tcp://127.0.0.1:1 run_case no-gpu
  { [ "$case_rc" -eq 2 ] && grep -q 'no GPUs in this allocation' "$FAKE_DIR/out.txt" && [ -z "$(records)" ]; } || { ok4=0; why+="no GPUs: exit $case_rc; "; }
  if [ "$ok4" = 1 ]; then ok "$f" "run: refuses (exit 2, reason given) without TTS_COORDINATOR, with GPU UUIDs, without GPUs"; else fail "$f" "refusals: $why"; fi

  # 5. Settings file: read, but the job's environment wins (TTS_COORDINATOR from the job,
  #    TTS_WORKER_ARGS from the file).
  printf 'TTS_COORDINATOR=tcp://from-file:1\nTTS_WORKER_ARGS="--tls-ca /etc/tts-cluster/ca.pem"\n' > "$t/site.env"
  env_file="$t/site.env" expect_workers=1 TTS_GPUS=0 TTS_COORDINATOR=tcp://from-job:2 run_case env-file TERM
  if [ "$case_rc" -eq 0 ] && has "^ARGS join tcp://from-job:2 --gpu 0 --name $host-gpu0 --state-dir [^ ]* --tls-ca /etc/tts-cluster/ca.pem\$"; then
    ok "$f" "run: settings file read (TTS_WORKER_ARGS), the job's TTS_COORDINATOR wins over it"
  else
    fail "$f" "settings file: exit $case_rc; workers: $(records | tr '\n' '|'); script: $(tr '\n' '|' < "$FAKE_DIR/out.txt")"
  fi
  unset FAKE_DIR expect_workers
}

# ---------------------------------------------------------------------------------------------
# Containerfile.
check_container() {
  local f="$deploy/container/Containerfile" ign="$deploy/container/Containerfile.dockerignore"
  "$py" - "$f" "$ign" "$root/scripts/setup.sh" <<'PY'
import os, re, shlex, subprocess, sys
f, ign, setup = sys.argv[1:4]
passed = failed = 0
def ok(m):
    global passed; passed += 1; print(f"ok   {f}: {m}")
def fail(m, where=f):
    global failed; failed += 1; print(f"FAIL {where}: {m}")

text = open(f).read()
# Instructions, with continuation lines joined (comments dropped).
instrs, cur = [], ""
for line in text.splitlines():
    s = line.strip()
    if not cur and (not s or s.startswith("#")):
        continue
    if cur and s.startswith("#"):
        continue
    cur += " " + s[:-1] if s.endswith("\\") else " " + s
    if not s.endswith("\\"):
        instrs.append(cur.strip()); cur = ""
args = {}
for i in instrs:
    m = re.match(r"ARG\s+([A-Za-z_]+)=(\S+)", i)
    if m: args.setdefault(m.group(1), m.group(2))
def expand(s): return re.sub(r"\$\{?([A-Za-z_]+)\}?", lambda m: args.get(m.group(1), m.group(0)), s)

stages, images = [], []
for i in instrs:
    m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", i, re.I)
    if m:
        images.append(expand(m.group(1))); stages.append(m.group(2))
if len(images) >= 2:
    ok(f"{len(images)} FROM lines: {', '.join(images)}")
else:
    fail(f"expected a multi-stage build, FROM lines: {images}")
untagged = [i for i in images if ":" not in i.split("/")[-1] and "@" not in i and i not in stages]
if untagged: fail(f"FROM without a tag (implicit latest): {untagged}")
else: ok("every FROM image is tagged")
if images and re.match(r"swift:6\.", images[0]): ok(f"build stage from {images[0]}")
else: fail(f"the build stage should start FROM swift:6.x, got {images[:1]}")
if images and images[-1].startswith("debian:bookworm"): ok(f"runtime stage from {images[-1]}")
else: fail(f"the runtime stage should be debian:bookworm-slim, got {images[-1:]}")
refs = re.findall(r"COPY\s+--from=(\S+)", text)
bad = [r for r in refs if r not in stages]
if bad: fail(f"COPY --from= names no stage: {bad}")
else: ok(f"COPY --from= stages exist ({', '.join(refs)})")

# Instructions of the final stage.
last = max(idx for idx, i in enumerate(instrs) if i.upper().startswith("FROM "))
final = instrs[last:]
users = [i.split(None, 1)[1] for i in final if i.upper().startswith("USER ")]
if users and users[-1].split(":")[0] not in ("0", "root"): ok(f"runs as a non-root user ({users[-1]})")
else: fail(f"the final stage must end with a non-root USER, got {users}")
for kw in ("ENTRYPOINT", "CMD"):
    v = [i.split(None, 1)[1] for i in final if i.upper().startswith(kw + " ")]
    if v and v[-1].startswith("["): ok(f"{kw} in exec form: {v[-1]}")
    else: fail(f"{kw} missing or not in exec (JSON) form: {v}")
cmd = [i for i in final if i.upper().startswith("CMD ")]
if cmd and "tts-coordinator" in cmd[-1] and re.search(r"install\b.*\/usr\/local\/bin\/tts-worker", text):
    ok("CMD runs tts-coordinator; tts-worker is installed for the worker variant")
else:
    fail("CMD should run tts-coordinator and the image should install tts-worker")

# Packages: the build stage installs the -dev packages of scripts/setup.sh; every name is known to apt.
m = re.search(r"packages=\(([^)]*)\)", open(setup).read())
setup_pkgs = set(m.group(1).split()) if m else set()
dev = {p for p in setup_pkgs if p.endswith("-dev")} | {"pkg-config"}
build = instrs[:last]
build_words = set(re.findall(r"[A-Za-z0-9][A-Za-z0-9+.-]*", " ".join(build)))
missing = sorted(p for p in dev if p not in build_words)
if missing: fail(f"build stage lacks packages of scripts/setup.sh: {missing}")
else: ok(f"build stage installs the libraries of scripts/setup.sh ({', '.join(sorted(dev))})")
shim = [p for p in ("cmake", "g++", "libtorch-dev") if p not in build_words]
if shim: fail(f"build stage lacks {shim} (the torch shim, scripts/torch/build-shim.sh)")
else: ok("build stage installs cmake, g++, libtorch-dev for the torch shim (scripts/torch/build-shim.sh)")
names = set()
for i in instrs:
    for chunk in re.findall(r"apt-get install ([^&;]*)", i):
        names |= {w for w in chunk.split() if not w.startswith("-") and re.match(r"^[a-z0-9][a-z0-9+.-]+$", w)}
lists = os.path.isdir("/var/lib/apt/lists") and any("_Packages" in n for n in os.listdir("/var/lib/apt/lists"))
if lists:
    pol = subprocess.run(["apt-cache", "policy", *sorted(names)], capture_output=True, text=True).stdout
    cand = dict(re.findall(r"^(\S+):\n\s+Installed: .*\n\s+Candidate: (\S+)", pol, re.M))
    unknown = [n for n in sorted(names) if cand.get(n, "(none)") == "(none)"]
    if unknown: fail(f"packages apt cannot install (on this Debian): {unknown}")
    else: ok(f"all {len(names)} apt packages exist in this machine's Debian lists")
else:
    print(f"note {f}: no apt lists here (apt-get update): package names not looked up")

# Secrets: no secret-looking ENV/ARG values, nothing secret copied in.
secretish = re.compile(r"(TOKEN|API_KEY|SECRET|PASSWORD|WEBHOOK)", re.I)
leaks = []
for i in instrs:
    kw = i.split(None, 1)[0].upper()
    if kw in ("ENV", "ARG"):
        for k, v in re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=(\S+)", i):
            if secretish.search(k) and not v.startswith("/"):
                leaks.append(f"{k}={v}")
    if kw in ("COPY", "ADD") and re.search(r"(token|\.pem|\.key|\.env)\b", i, re.I):
        leaks.append(i)
if leaks: fail(f"secrets in the image: {leaks}")
else: ok("no secret values in ENV/ARG, no token/key/env files copied")

# Ignore file.
if os.path.exists(ign):
    pats = {l.strip() for l in open(ign) if l.strip() and not l.startswith("#")}
    need = {".build", ".git", "token"}
    if need <= pats: ok(f"{os.path.basename(ign)} excludes {', '.join(sorted(need))}")
    else: fail(f"does not exclude {sorted(need - pats)}", ign)
else:
    fail("missing", ign)
print(f"RESULT {passed} {failed}")
PY
}

# ---------------------------------------------------------------------------------------------
# Secrets anywhere under deploy/.
check_secrets() {
  local hits
  hits="$(grep -rnIE 'hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+|BEGIN [A-Z ]*PRIVATE KEY|\b[0-9a-f]{40}\b|\b[0-9a-f]{64}\b|xox[abp]-[0-9A-Za-z-]+' "$deploy" || true)"
  if [ -n "$hits" ]; then fail "$deploy" "looks like a real secret: $hits"; else ok "$deploy" "no token, API key, private key or webhook URL"; fi
}

# Python checks print ok/FAIL lines, counted here, and a last "RESULT ..." line when they ran to
# the end.
run_py() {
  local out line
  out="$("$@" 2>&1)" || true
  while IFS= read -r line; do
    case "$line" in
      "RESULT "*) ;;
      "ok   "*) passed=$((passed + 1)); echo "$line" ;;
      "FAIL "*) failed=$((failed + 1)); echo "$line" ;;
      *) echo "$line" ;;
    esac
  done <<< "$out"
  grep -q '^RESULT ' <<< "$out" || fail "$2" "the check itself failed: $(tail -3 <<< "$out" | tr '\n' ' ')"
}

start=$(date +%s)
check_systemd
check_flags
run_py check_kubernetes "$deploy/kubernetes"
if command -v kubectl >/dev/null 2>&1; then
  if out="$(kubectl kustomize "$deploy/kubernetes" 2>&1)"; then
    ok "$deploy/kubernetes/kustomization.yaml" "kubectl kustomize renders $(grep -c '^kind:' <<< "$out") objects"
  else
    fail "$deploy/kubernetes/kustomization.yaml" "kubectl kustomize: $out"
  fi
else
  note "$deploy/kubernetes/kustomization.yaml" "kubectl not installed: kustomize rendering not checked"
fi
check_slurm
run_py check_container "$deploy/container/Containerfile"
check_secrets
echo "check-deploy: took $(( $(date +%s) - start )) s"
echo "check-deploy: $passed passed, $failed failed"
if [ "$failed" -ne 0 ]; then exit 1; fi
