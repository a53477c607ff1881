#!/usr/bin/env bash
# Create or replace the pipelines' Kubernetes secrets from the templates in secrets/,
# filling placeholders from environment variables. Values never reach a command
# line, a log line or stdout: they go through 0600 files in a private temp dir,
# removed on exit.
#
# A secret on a cluster is replaced in one step, never deleted first: with kubectl
# on PATH the Secret manifest goes to `kubectl replace -f` (`kubectl create -f` when
# the secret is new), which swaps the whole object or fails leaving the old one.
# pachctl has no replace, so without kubectl a secret is only created: an existing
# one is kept and the run fails. pachlocal (--local) has no replace either; its
# state is local, so there an existing secret is deleted and created again.
#
#   PGSQL_URL=... GCS_BUCKET=... GCS_SERVICE_ACCOUNT_FILE=key.json ./create_secret.sh
#   ./create_secret.sh --namespace pachyderm      # pachd's namespace, for kubectl
#   ./create_secret.sh --local lens-postgres      # into pachlocal instead of the cluster
#   ./create_secret.sh --dry-run                  # print the plan (names and keys only)
set -euo pipefail
umask 077

usage() {
  cat <<'USAGE'
usage: create_secret.sh [--local] [--dry-run] [--namespace NS] [SECRET ...]
  Creates or replaces each SECRET (default: every template in secrets/) from secrets/SECRET.json.
  Uses kubectl when it is on PATH (atomic replace), else pachctl (create only).
  --local         use pachlocal (./.venv/bin/pachlocal or PACHLOCAL) instead
  --namespace NS  kubectl's namespace: pachd's (default: kubectl's current one)
  --dry-run       print which secrets and keys would be created, create nothing
USAGE
}

die() {
  echo "create_secret.sh: $*" >&2
  exit 1
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python=${PYTHON:-python3}
[[ -x "$here/.venv/bin/python" ]] && python=${PYTHON:-$here/.venv/bin/python}
local_mode=0
dry_run=0
namespace=
names=()
while (($#)); do
  case "$1" in
    --local) local_mode=1 ;;
    --dry-run) dry_run=1 ;;
    --namespace)
      (($# > 1)) || { echo "create_secret.sh: --namespace needs a value" >&2; usage >&2; exit 2; }
      namespace=$2
      shift
      ;;
    --namespace=*) namespace=${1#--namespace=} ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "create_secret.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) names+=("$1") ;;
  esac
  shift
done
if ((${#names[@]} == 0)); then
  for template in "$here"/secrets/*.json; do
    names+=("$(basename "$template" .json)")
  done
fi

if ((local_mode)); then
  client=${PACHLOCAL:-$here/.venv/bin/pachlocal}
  [[ -x "$client" ]] || client=pachlocal
  put=pachlocal_put
elif command -v kubectl >/dev/null 2>&1; then
  client=kubectl
  put=kubectl_put
else
  client=pachctl
  put=pachctl_put
fi
via=$(basename "$client")
if [[ -n "$namespace" && "$put" != kubectl_put ]]; then
  echo "create_secret.sh: --namespace is for kubectl, which is not in use (via $via)" >&2
  exit 2
fi
kube=(kubectl)
[[ -n "$namespace" ]] && kube+=(--namespace "$namespace")

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Print "KEY<TAB>KIND<TAB>VAR" for each key of a template (KIND: required, optional, file).
template_keys() {
  "$python" - "$1" <<'PY'
import json, re, sys
doc = json.load(open(sys.argv[1]))
pattern = re.compile(r"^(@?)\$\{([A-Z_][A-Z0-9_]*)(:-)?\}$")
for key, value in sorted(doc.get("stringData", {}).items()):
    m = pattern.match(value)
    if not m:
        sys.exit(f"{sys.argv[1]}: stringData.{key}: expected a placeholder like ${{VAR}}")
    kind = "file" if m.group(1) else "optional" if m.group(3) else "required"
    print(f"{key}\t{kind}\t{m.group(2)}")
PY
}

# Build a Secret manifest (JSON) from a directory of key files. The labels are the
# ones pachd puts on `pachctl create secret`, so pachctl lists a secret written by
# kubectl too.
secret_json() {
  "$python" - "$1" "$2" <<'PY'
import base64, json, os, sys
name, folder = sys.argv[1], sys.argv[2]
data = {}
for key in sorted(os.listdir(folder)):
    with open(os.path.join(folder, key), "rb") as f:
        data[key] = base64.b64encode(f.read()).decode()
labels = {"suite": "pachyderm", "secret-source": "pachyderm-user"}
meta = {"name": name, "labels": labels}
json.dump({"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque", "data": data}, sys.stdout)
PY
}

# Each *_put NAME MANIFEST writes one secret and sets `outcome` to what it did.

# kubectl: replace the secret (one update of the whole object: if it fails, the
# previous secret stays as it was), or create it when it does not exist.
kubectl_put() {
  local name=$1 manifest=$2 existing
  existing=$("${kube[@]}" get secret "$name" --ignore-not-found -o name) ||
    die "cannot read secret $name with kubectl; nothing was changed"
  if [[ -n "$existing" ]]; then
    "${kube[@]}" replace -f "$manifest" >/dev/null ||
      die "replacing secret $name failed; a failed replace leaves the previous secret in place"
    outcome=replaced
  else
    "${kube[@]}" create -f "$manifest" >/dev/null || die "creating secret $name failed"
    outcome=created
  fi
}

# pachctl cannot replace a secret in one step: create only, an existing one is kept.
pachctl_put() {
  local name=$1 manifest=$2
  "$client" create secret -f "$manifest" >/dev/null ||
    die "pachctl could not create secret $name; if it exists it was kept (pachctl cannot" \
      "replace a secret in one step): put kubectl on PATH to replace it atomically"
  outcome=created
}

# pachlocal cannot replace one either; its state is local, so delete and create again.
pachlocal_put() {
  local name=$1 manifest=$2
  if "$client" create secret -f "$manifest" >/dev/null 2>"$work/create.err"; then
    outcome=created
    return
  fi
  if ! grep -q "already exists" "$work/create.err"; then
    cat "$work/create.err" >&2
    die "pachlocal could not create secret $name"
  fi
  "$client" delete secret "$name" >/dev/null || die "pachlocal could not delete secret $name"
  "$client" create secret -f "$manifest" >/dev/null || die "pachlocal could not create secret $name"
  outcome=replaced
}

for name in "${names[@]}"; do
  template="$here/secrets/$name.json"
  [[ -f "$template" ]] || die "no template secrets/$name.json"
  keys_file="$work/$name.keys"
  template_keys "$template" >"$keys_file"
  mkdir -p "$work/$name"
  keys=()
  while IFS=$'\t' read -r key kind var; do
    value=${!var-}
    if [[ -z "$value" && "$kind" != optional ]]; then
      die "$name.$key needs environment variable $var"
    fi
    if [[ "$kind" == file ]]; then
      [[ -r "$value" ]] || die "$name.$key: cannot read the file named by $var"
      cp "$value" "$work/$name/$key"
    else
      printf '%s' "$value" >"$work/$name/$key"
    fi
    keys+=("$key")
  done <"$keys_file"

  if ((dry_run)); then
    echo "would create secret $name with keys: ${keys[*]} (via $via)"
    continue
  fi
  manifest="$work/$name.json"
  secret_json "$name" "$work/$name" >"$manifest"
  "$put" "$name" "$manifest"
  echo "$outcome secret $name (keys: ${keys[*]})"
done
