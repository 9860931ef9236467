#!/usr/bin/env bash
# Checks every deployment asset under deploy/ (CI runs it from .ci/run):
#
#   1. kustomize renders every overlay in deploy/k8s/overlays, and each of
#      them with every opt-in component of deploy/k8s/components added;
#   2. the Helm chart lints clean (strict) and renders with its default values,
#      every deploy/helm/phoenix/ci/*-values.yaml and three variants that take
#      the other branches, and its values schema refuses a misspelt key
#      (helm-python-sdk: Helm's own Go code, no helm binary);
#   3. every agent config those manifests carry validates with the real
#      `phoenix-agent validate` (built if missing), and every disk queue
#      directory it names is on a writable hostPath mount of the agent;
#   4. every rendered object passes Kubernetes' own schemas, strictly (unknown
#      fields are errors), for each version in KUBE_VERSIONS (kubernetes-validate);
#   5. the Prometheus rules pass `promtool check rules` and their unit tests
#      (`promtool test rules`);
#   6. the Grafana dashboards are well-formed (JSON, unique ids, a query per
#      panel) and every query parses as PromQL (promtool);
#   7. the systemd units pass `systemd-analyze verify` (when it is installed).
#
# That the dashboards and rules use only metrics the binaries expose is
# checked by the Rust test tests/tests/deploy_assets.rs against running
# binaries (`cargo test -p phoenix-tests --test deploy_assets`).
#
# Needs: kubectl (with kustomize), promtool (Debian: prometheus), python3 with
# `pip install helm-python-sdk kubernetes-validate`, cargo.
# Exit status: 0 all passed, 1 a check failed, 2 a tool is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# The oldest Kubernetes the manifests support (securityContext.appArmorProfile
# is GA in 1.30) and the newest kubernetes-validate ships schemas for.
export KUBE_VERSIONS=${KUBE_VERSIONS:-"1.30.0 1.37.0"}
PHOENIX_AGENT=${PHOENIX_AGENT:-target/debug/phoenix-agent}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0

step() { printf '\n== %s\n' "$*"; }
pass() { printf '   ok    %s\n' "$*"; }
fail() {
    printf '   FAIL  %s\n' "$*"
    failures=$((failures + 1))
}
need() {
    if ! command -v "$1" >/dev/null 2>&1; then
        echo "deploy/check.sh: $1 not found ($2)" >&2
        exit 2
    fi
}

need kubectl "kubectl with its built-in kustomize"
need promtool "Debian package prometheus"
need python3 "Python 3"
if ! python3 -c 'import helm_python, kubernetes_validate, yaml' 2>/dev/null; then
    echo "deploy/check.sh: python3 -m pip install helm-python-sdk kubernetes-validate" >&2
    exit 2
fi
if [ ! -x "$PHOENIX_AGENT" ]; then
    echo "building phoenix-agent (for validating agent configs) ..."
    cargo build --quiet -p phoenix-agent --bin phoenix-agent
fi

# -----------------------------------------------------------------------------
step "kustomize: every overlay renders"
for overlay in deploy/k8s/overlays/*/; do
    name=$(basename "$overlay")
    if kubectl kustomize "$overlay" >"$work/kustomize-$name.yaml" 2>"$work/err"; then
        pass "deploy/k8s/overlays/$name ($(grep -c '^kind:' "$work/kustomize-$name.yaml") objects)"
    else
        fail "deploy/k8s/overlays/$name: $(cat "$work/err")"
    fi
    # Each opt-in component on top of the overlay, as a user would add it.
    for component in deploy/k8s/components/*/; do
        [ -e "$component/kustomization.yaml" ] || continue
        cname=$(basename "$component")
        with="$work/with-$name-$cname"
        mkdir -p "$with"
        printf 'resources: [%s]\ncomponents: [%s]\n' \
            "$(realpath --relative-to="$with" "$overlay")" \
            "$(realpath --relative-to="$with" "$component")" >"$with/kustomization.yaml"
        if kubectl kustomize "$with" >"$work/kustomize-$name+$cname.yaml" 2>"$work/err"; then
            pass "deploy/k8s/overlays/$name + components/$cname ($(grep -c '^kind:' "$work/kustomize-$name+$cname.yaml") objects)"
        else
            fail "deploy/k8s/overlays/$name + components/$cname: $(cat "$work/err")"
        fi
    done
done
# The disk-queue component carries a copy of configs/agent.yaml (kustomize
# reads files only below a kustomization): the storage line on, nothing else.
if diff <(sed 's|^      # storage: |      storage: |' configs/agent.yaml) \
    deploy/k8s/components/disk-queue/agent.yaml >"$work/err"; then
    pass "components/disk-queue/agent.yaml is configs/agent.yaml with sending_queue.storage on"
else
    fail "components/disk-queue/agent.yaml drifted from configs/agent.yaml: $(cat "$work/err")"
fi

# -----------------------------------------------------------------------------
step "helm: the chart lints and renders (helm-python-sdk)"
if python3 - "$work" 2>"$work/helm-log" <<'PY'; then :; else fail "helm chart (above)"; fi
import glob, os, sys
import yaml
import helm_python as helm

work = sys.argv[1]
chart = "deploy/helm/phoenix"
kube = os.environ.get("KUBE_VERSIONS", "1.30.0").split()[0]
ok = True
cases = [("default values", "default", None)]
for path in sorted(glob.glob(f"{chart}/ci/*-values.yaml")):
    with open(path) as f:
        cases.append((path, os.path.basename(path)[: -len("-values.yaml")], yaml.safe_load(f)))
# The conditionals the two files above leave untaken.
cases += [
    ("variant: agents alone", "agents-alone",
     {"controller": {"enabled": False}, "agent": {"controller": {"enabled": False}, "stateHostPath": "",
      "restartOnConfigChange": True, "networkPolicy": {"from": []}, "k8sMetadata": {"enabled": True}}}),
    ("variant: an outside controller", "outside-controller",
     {"controller": {"enabled": False, "tokens": {"agentToken": "t0123456789abcdef"}},
      "agent": {"controller": {"url": "https://phoenix.example.com:4320"}, "labels": {"env": "lab"}}}),
    ("variant: TLS with a CA ConfigMap, no persistence", "tls-configmap",
     {"controller": {"tls": {"enabled": True, "secretName": "tls", "caConfigMap": "ca"},
      "persistence": {"enabled": False}, "backup": {"enabled": False}, "templatesConfigMap": "mine",
      "serviceMonitor": {"enabled": True}}}),
    ("variant: disk queue, the shipped config", "disk-queue",
     {"agent": {"diskQueue": {"enabled": True}}}),
]
# The disk queue on a config given as a value (production's), with a named
# exporter (a directory of its own) and one with a storage of its own (kept).
with open(f"{chart}/ci/production-values.yaml") as f:
    production = yaml.safe_load(f)
production["agent"]["diskQueue"] = {"enabled": True, "hostPath": "/mnt/phoenix-queue", "maxMegabytes": 512}
exporters = production["agent"]["config"]["exporters"]
exporters["otlp_http/backup"] = {"endpoint": "https://backup.example.com:4318"}
exporters["otlp_grpc/archive"] = {"endpoint": "https://archive.example.com:4317", "sending_queue":
                                  {"storage": {"directory": "/var/lib/phoenix/queue/kept", "max_megabytes": 64}}}
production["agent"]["config"]["service"]["pipelines"]["metrics/standard"]["exporters"] += [
    "otlp_http/backup", "otlp_grpc/archive"]
cases.append(("variant: production with a disk queue", "production-disk-queue", production))
with helm.Chart.load(chart) as c:
    for label, name, values in cases:
        report = helm.lint(chart, values, strict=True, kube_version=f"v{kube}")
        serious = [m for m in report["messages"] if m["severity"] >= 2]
        for m in report["messages"]:
            if m["severity"] < 2:
                print(f"   info  lint {label}: {m['path']}: {m['error']}")
        if serious or report["errors"]:
            ok = False
            for m in serious:
                print(f"   FAIL  lint {label}: {m['path']}: {m['error'].strip()}")
            for e in report["errors"]:
                print(f"   FAIL  lint {label}: {e.strip()}")
            continue
        try:
            c.validate_schema(values)
            out = c.render(values, name="phoenix", namespace="phoenix", is_install=True)
        except helm.HelmError as e:
            ok = False
            print(f"   FAIL  render {label}: {e}")
            continue
        docs = [text for path, text in sorted(out.items()) if path.endswith(".yaml") and text.strip()]
        with open(f"{work}/helm-{name}.yaml", "w") as f:
            f.write("\n---\n".join(docs))
        kinds = sum(1 for d in docs for o in yaml.safe_load_all(d) if o)
        print(f"   ok    lint + render {label} ({kinds} objects)")
    # The schema is strict: a misspelt key must fail the install, not be ignored.
    try:
        c.validate_schema({"agent": {"resouces": {}}})
        ok = False
        print("   FAIL  values.schema.json accepts the misspelt key agent.resouces")
    except helm.HelmValuesError:
        print("   ok    values.schema.json refuses unknown keys")
sys.exit(0 if ok else 1)
PY
# Helm's Go logger notes the symlinked files/agent.yaml on stderr; keep only
# what is not that.
grep -v 'found symbolic link in path' "$work/helm-log" || true
if cmp -s deploy/helm/phoenix/files/agent.yaml configs/agent.yaml; then
    pass "the chart's default agent config is configs/agent.yaml"
else
    fail "deploy/helm/phoenix/files/agent.yaml differs from configs/agent.yaml (it is meant to be a symlink)"
fi

# -----------------------------------------------------------------------------
step "agent configs in the manifests validate (phoenix-agent validate)"
python3 - "$work" <<'PY'
import glob, sys
import yaml

work = sys.argv[1]
n = 0
for path in sorted(glob.glob(f"{work}/kustomize-*.yaml") + glob.glob(f"{work}/helm-*.yaml")):
    source = path.rsplit("/", 1)[1][: -len(".yaml")]
    with open(path) as f:
        for obj in yaml.safe_load_all(f):
            if obj and obj.get("kind") == "ConfigMap" and "agent.yaml" in obj.get("data", {}):
                n += 1
                with open(f"{work}/config-{source}-{obj['metadata']['name']}.agent", "w") as out:
                    out.write(obj["data"]["agent.yaml"])
if n == 0:
    sys.exit("no agent ConfigMap found in the rendered manifests")
PY
# A disk queue must be on the node (a hostPath the agent may write), or a
# restart loses it as it would the memory queue.
if python3 - "$work" <<'PY'; then :; else fail "disk queue directories (above)"; fi
import glob, posixpath, sys
import yaml

ok = True
for path in sorted(glob.glob(f"{sys.argv[1]}/kustomize-*.yaml") + glob.glob(f"{sys.argv[1]}/helm-*.yaml")):
    source = path.rsplit("/", 1)[1][: -len(".yaml")]
    with open(path) as f:
        objects = [o for o in yaml.safe_load_all(f) if o]
    for cm in objects:
        if cm["kind"] != "ConfigMap" or "agent.yaml" not in cm.get("data", {}):
            continue
        config = yaml.safe_load(cm["data"]["agent.yaml"])
        dirs = {id: e["sending_queue"]["storage"]["directory"]
                for id, e in (config.get("exporters") or {}).items()
                if isinstance(e, dict) and (e.get("sending_queue") or {}).get("storage")}
        if not dirs:
            continue
        # The DaemonSet that mounts this ConfigMap.
        for ds in objects:
            if ds["kind"] != "DaemonSet":
                continue
            spec = ds["spec"]["template"]["spec"]
            volumes = {v["name"]: v for v in spec.get("volumes", [])}
            if not any(v.get("configMap", {}).get("name") == cm["metadata"]["name"] for v in volumes.values()):
                continue
            mounts = [m for m in spec["containers"][0].get("volumeMounts", [])
                      if not m.get("readOnly") and "hostPath" in volumes.get(m["name"], {})]
            for id, d in sorted(dirs.items()):
                under = [m for m in mounts if posixpath.commonpath([d, m["mountPath"]]) == m["mountPath"]]
                if under:
                    node = volumes[under[0]["name"]]["hostPath"]["path"]
                    print(f"   ok    {source}: {id} queues in {d} (the node's {node})")
                else:
                    ok = False
                    print(f"   FAIL  {source}: {id} queues in {d}, on no writable hostPath mount of the agent")
sys.exit(0 if ok else 1)
PY
for config in "$work"/config-*.agent; do
    label=$(basename "$config" .agent)
    label=${label#config-}
    # What the pods set in the environment the configs read.
    if out=$(env NODE_NAME=check-node PHOENIX_ROOT_PATH=/ PHOENIX_TELEMETRY_ADDRESS=0.0.0.0:8888 \
        OTLP_ENDPOINT=http://127.0.0.1:4317 OTLP_TOKEN=check \
        "$PHOENIX_AGENT" validate --config "$config" 2>&1); then
        pass "$label"
    else
        fail "$label: $out"
    fi
done

# -----------------------------------------------------------------------------
step "Kubernetes schemas, strict (kubernetes-validate; $KUBE_VERSIONS)"
if python3 - "$work" "$KUBE_VERSIONS" <<'PY'; then :; else fail "Kubernetes schema validation (above)"; fi
import glob, sys
import yaml
import kubernetes_validate as kv

work, versions = sys.argv[1], sys.argv[2].split()
# Custom resources have no schema in kubernetes-validate: the Prometheus
# operator's PodMonitor and ServiceMonitor (optional in the Helm chart, off by
# default) are skipped by name, any other unknown kind fails.
SKIPPED_GROUPS = {"monitoring.coreos.com"}
ok = True
for path in sorted(glob.glob(f"{work}/kustomize-*.yaml") + glob.glob(f"{work}/helm-*.yaml")):
    source = path.rsplit("/", 1)[1][: -len(".yaml")]
    with open(path) as f:
        objects = [o for o in yaml.safe_load_all(f) if o]
    checked, skipped = 0, set()
    for obj in objects:
        kind = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["apiVersion"].split("/")[0] in SKIPPED_GROUPS:
            skipped.add(obj["kind"])
            continue
        for version in versions:
            try:
                kv.validate(obj, version, strict=True)
            except kv.ValidationError as e:
                ok = False
                where = ".".join(str(p) for p in e.path)
                print(f"   FAIL  {source}: {kind} (Kubernetes {version}): {where}: {e.message}")
            except kv.utils.SchemaNotFoundError as e:
                ok = False
                print(f"   FAIL  {source}: {kind}: {e.message}")
        checked += 1
    note = f"; skipped (custom resources, no schema): {', '.join(sorted(skipped))}" if skipped else ""
    print(f"   ok    {source}: {checked} objects{note}")
sys.exit(0 if ok else 1)
PY

# -----------------------------------------------------------------------------
step "Prometheus rules (promtool)"
for rules in deploy/prometheus/*.yml; do
    if out=$(promtool check rules "$rules" 2>&1); then
        pass "check rules $rules ($(echo "$out" | grep -o '[0-9]* rules found'))"
    else
        fail "check rules $rules: $out"
    fi
done
for tests in deploy/prometheus/tests/*.yml; do
    if out=$(promtool test rules "$tests" 2>&1); then
        pass "test rules $tests"
    else
        fail "test rules $tests: $out"
    fi
done

# -----------------------------------------------------------------------------
step "Grafana dashboards"
if python3 - "$work" <<'PY'; then :; else fail "Grafana dashboards (above)"; fi
import glob, json, re, sys

ok = True
uids = set()
# Every query, with Grafana's variables filled in, as a recording rule: promtool
# then parses each one (a PromQL syntax error fails here, not on a screen).
rules = []
for path in sorted(glob.glob("deploy/grafana/*.json")):
    problems = []
    try:
        with open(path) as f:
            d = json.load(f)
    except ValueError as e:
        print(f"   FAIL  {path}: not JSON: {e}")
        ok = False
        continue
    for key in ("uid", "title", "panels", "templating", "schemaVersion"):
        if key not in d:
            problems.append(f"no {key}")
    if d.get("uid") in uids:
        problems.append(f"uid {d.get('uid')} used twice")
    uids.add(d.get("uid"))
    ids = [p.get("id") for p in d.get("panels", [])]
    if len(ids) != len(set(ids)):
        problems.append("panel ids repeat")
    queries = 0
    for p in d.get("panels", []):
        if p.get("type") == "row":
            continue
        g = p.get("gridPos", {})
        if g.get("x", 0) + g.get("w", 0) > 24:
            problems.append(f"panel {p.get('title')!r} is wider than the grid")
        targets = p.get("targets") or []
        if not p.get("datasource") or not targets or not all(t.get("expr") for t in targets):
            problems.append(f"panel {p.get('title')!r} has no datasource or no query")
        queries += len(targets)
        for t in targets:
            expr = re.sub(r"\$__(rate_)?interval", "5m", t.get("expr", ""))
            expr = re.sub(r"\$\{?[a-z_]+\}?", ".*", expr)
            rules.append({"record": f"grafana:{d.get('uid', 'x').replace('-', '_')}:{len(rules)}", "expr": expr})
    if problems:
        ok = False
        for problem in problems:
            print(f"   FAIL  {path}: {problem}")
    else:
        print(f"   ok    {path} ({len(ids)} panels, {queries} queries)")
with open(f"{sys.argv[1]}/grafana-queries.yml", "w") as f:
    json.dump({"groups": [{"name": "grafana", "rules": rules}]}, f)
sys.exit(0 if ok else 1)
PY
if out=$(promtool check rules "$work/grafana-queries.yml" 2>&1); then
    pass "every dashboard query parses as PromQL ($(echo "$out" | grep -o '[0-9]* rules found' | cut -d' ' -f1) queries)"
else
    fail "dashboard queries: $out"
fi

# -----------------------------------------------------------------------------
step "systemd units (systemd-analyze verify)"
if command -v systemd-analyze >/dev/null 2>&1; then
    # The units start /usr/local/bin/phoenix-*, which need not exist here:
    # verify copies that point at stand-ins.
    mkdir -p "$work/systemd/bin"
    for b in phoenix-agent phoenix-controller; do
        printf '#!/bin/sh\n' >"$work/systemd/bin/$b"
        chmod +x "$work/systemd/bin/$b"
    done
    for unit in deploy/systemd/*.service deploy/systemd/*.timer; do
        sed "s#/usr/local/bin/#$work/systemd/bin/#g" "$unit" >"$work/systemd/$(basename "$unit")"
    done
    # verify exits 0 on unknown keys: any output at all is a failure.
    if out=$(cd "$work/systemd" && systemd-analyze verify ./*.service ./*.timer 2>&1) && [ -z "$out" ]; then
        pass "$(ls deploy/systemd/*.service deploy/systemd/*.timer | tr '\n' ' ')"
    else
        fail "systemd units: $out"
    fi
else
    echo "   skip  systemd-analyze is not installed"
fi

# -----------------------------------------------------------------------------
echo
if [ "$failures" -gt 0 ]; then
    echo "deploy/check.sh: $failures check(s) failed"
    exit 1
fi
echo "deploy/check.sh: all checks passed"
