#!/usr/bin/env bash
# Runs one of the bundled example missions, offline: builds flightdeck, copies examples/NAME
# into a fresh git repository, runs its mission (the one template in .flightdeck/missions/),
# approves as the code owner whenever the policy parks it for an approval, resumes it, and
# prints where the branch, the PR description and the timeline are.
#
#   examples/run.sh NAME [-p KEY=VALUE]...      e.g. examples/run.sh add-tests
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"

usage() {
  echo "usage: examples/run.sh NAME [-p KEY=VALUE]..." >&2
  echo "examples:" >&2
  for dir in "$here"/*/; do
    if compgen -G "$dir.flightdeck/missions/*.toml" >/dev/null; then
      echo "  $(basename "$dir")" >&2
    fi
  done
  exit 2
}

[ $# -ge 1 ] || usage
name="$1"
shift
source="$here/$name"
[ -n "$name" ] && [ -d "$source" ] || { echo "no example named '$name'" >&2; usage; }
templates=("$source"/.flightdeck/missions/*.toml)
if [ "${#templates[@]}" != 1 ] || [ ! -f "${templates[0]}" ]; then
  echo "examples/$name must have exactly one template in .flightdeck/missions/" >&2
  exit 2
fi
template="$(basename "${templates[0]}" .toml)"

if ! command -v bwrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing bubblewrap (the sandbox missions run in)..."
    apt-get update -qq >/dev/null && apt-get install -y -qq bubblewrap >/dev/null
  else
    echo "flightdeck runs commands in a bubblewrap sandbox: install it first (apt-get install bubblewrap)" >&2
    exit 1
  fi
fi

echo "building flightdeck..."
cargo build --quiet --manifest-path "$root/Cargo.toml" -p flightdeck
flightdeck="${CARGO_TARGET_DIR:-$root/target}/debug/flightdeck"

work="$(mktemp -d "${TMPDIR:-/tmp}/flightdeck-$name.XXXXXX")"
repo="$work/$name"
export FLIGHTDECK_DATA_DIR="$work/data"
requester="examples@example.com"
cp -R "$source" "$repo"
rm -rf "$repo/target"
git -C "$repo" init --quiet --initial-branch=main
git -C "$repo" add --all
git -C "$repo" -c user.name=examples -c user.email="$requester" commit --quiet -m "$name: initial import"

echo
echo "running mission $template on $repo (requested by $requester)"
status=0
"$flightdeck" --as "$requester" run "$template" --repo "$repo" "$@" || status=$?
id="$("$flightdeck" missions --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')"

# Parked for approval (exit 3): each pending gate is approved by the first person it names
# (a code owner from .github/CODEOWNERS under the built-in policy), then the mission goes on.
while [ "$status" = 3 ]; do
  pending="$("$flightdeck" approvals --pending --json | python3 -c '
import json, sys
for a in json.load(sys.stdin):
    if a.get("mission") not in (None, sys.argv[1]):
        continue
    people = [e for e in a["eligible"] if (e.startswith("@") and "/" not in e) or "@" in e[1:]]
    who = people[0] if people else "reviewer@example.com"
    print(a["id"], a["gate"], who, ", ".join(a["eligible"]), sep="\t")
' "$id")"
  [ -n "$pending" ] || break
  while IFS=$'\t' read -r approval gate who eligible; do
    echo
    echo "the mission waits for approval $approval ($gate gate; eligible: $eligible)."
    echo "the requester may not approve it:"
    "$flightdeck" --as "$requester" approve "$approval" || true
    echo "$who approves:"
    "$flightdeck" --as "$who" approve "$approval" --comment "approved by examples/run.sh"
  done <<<"$pending"
  echo
  status=0
  "$flightdeck" --as "$requester" resume "$id" || status=$?
done

if [ "$status" != 0 ]; then
  echo "the mission did not succeed (exit $status); see: FLIGHTDECK_DATA_DIR=$FLIGHTDECK_DATA_DIR $flightdeck timeline $id" >&2
  exit "$status"
fi

publish="$("$flightdeck" timeline "$id" --json | python3 -c '
import json, sys
events = [json.loads(line) for line in sys.stdin]
decided = [e["data"] for e in events if e["type"] == "policy.decided" and e["data"]["subject"] == "publish"]
approved = [e["data"]["by"] for e in events if e["type"] == "approval.decided" and e["data"]["decision"] == "approve"]
print(decided[-1]["explanation"] if decided else "no decision recorded")
print("  approved by " + ", ".join(approved) if approved else "  published without waiting for an approval")
')"
pr="$("$flightdeck" show "$id" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["artifacts"]["pr_description"])')"
echo
echo "publishing: $publish"
echo
echo "the change:"
git -C "$repo" diff --stat "main...flightdeck/$id" | sed 's/^/  /'
echo
echo "the diff:            git -C $repo show flightdeck/$id"
echo "the PR description:  FLIGHTDECK_DATA_DIR=$FLIGHTDECK_DATA_DIR $flightdeck artifact $pr"
echo "the timeline:        FLIGHTDECK_DATA_DIR=$FLIGHTDECK_DATA_DIR $flightdeck timeline $id"
echo "the audit:           FLIGHTDECK_DATA_DIR=$FLIGHTDECK_DATA_DIR $flightdeck audit verify $id"
