#!/usr/bin/env bash
# Create the pipelines' Kubernetes secrets from the templates in secrets/,
# filling placeholders from environment variables. Values never reach a command
# line, a log line or stdout: they go through 0600 files in a private temp dir.
#
#   PGSQL_URL=... GCS_BUCKET=... GCS_SERVICE_ACCOUNT_FILE=key.json ./create_secret.sh
#   ./create_secret.sh --local lens-postgres      # into pachlocal instead of pachctl
#   ./create_secret.sh --dry-run                  # print the plan (names and keys only)
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: create_secret.sh [--local] [--dry-run] [SECRET ...]
  Creates each SECRET (default: every template in secrets/) from secrets/SECRET.json.
  --local    use pachlocal (./.venv/bin/pachlocal or PACHLOCAL) instead of pachctl
  --dry-run  print which secrets and keys would be created, create nothing
USAGE
}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
python=${PYTHON:-python3}
[[ -x "$here/.venv/bin/python" ]] && python=${PYTHON:-$here/.venv/bin/python}
local_mode=0
dry_run=0
names=()
while (($#)); do
  case "$1" in
    --local) local_mode=1 ;;
    --dry-run) dry_run=1 ;;
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
else
  client=pachctl
fi

work=$(mktemp -d)
chmod 700 "$work"
trap 'rm -rf "$work"' EXIT
umask 077

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

# Build a Secret JSON from a directory of key files, without kubectl.
secret_json() {
  "$python" - "$1" "$2" <<'PY'
import base64, json, os, sys
name, folder = sys.argv[1], sys.argv[2]
data = {}
for key in sorted(os.listdir(folder)):
    with open(os.path.join(folder, key), "rb") as f:
        data[key] = base64.b64encode(f.read()).decode()
json.dump({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name}, "type": "Opaque", "data": data}, sys.stdout)
PY
}

for name in "${names[@]}"; do
  template="$here/secrets/$name.json"
  [[ -f "$template" ]] || { echo "create_secret.sh: no template secrets/$name.json" >&2; exit 1; }
  keys_file="$work/$name.keys"
  template_keys "$template" >"$keys_file"
  mkdir -p "$work/$name"
  keys=()
  from_files=()
  while IFS=$'\t' read -r key kind var; do
    value=${!var-}
    if [[ -z "$value" && "$kind" != optional ]]; then
      echo "create_secret.sh: $name.$key needs environment variable $var" >&2
      exit 1
    fi
    if [[ "$kind" == file ]]; then
      [[ -r "$value" ]] || { echo "create_secret.sh: $name.$key: cannot read the file named by $var" >&2; exit 1; }
      cp "$value" "$work/$name/$key"
    else
      printf '%s' "$value" >"$work/$name/$key"
    fi
    keys+=("$key")
    from_files+=("--from-file=$key=$work/$name/$key")
  done <"$keys_file"

  if ((dry_run)); then
    echo "would create secret $name with keys: ${keys[*]} (via $(basename "$client"))"
    continue
  fi
  if command -v kubectl >/dev/null 2>&1; then
    kubectl create secret generic "$name" "${from_files[@]}" --dry-run=client -o json >"$work/$name.json"
  else
    secret_json "$name" "$work/$name" >"$work/$name.json"
  fi
  "$client" delete secret "$name" >/dev/null 2>&1 || true
  "$client" create secret -f "$work/$name.json"
  echo "created secret $name (keys: ${keys[*]})"
done
