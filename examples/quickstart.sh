#!/usr/bin/env bash
# flightdeck's quickstart: build flightdeck, copy the bundled sample repository into a fresh git
# repository, and run its example mission (offline, embedded defaults). It ends by printing
# where the branch, the patch and the timeline are.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"

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

work="$(mktemp -d "${TMPDIR:-/tmp}/flightdeck-quickstart.XXXXXX")"
repo="$work/textstats"
export FLIGHTDECK_DATA_DIR="$work/data"
cp -R "$here/sample-repo" "$repo"
git -C "$repo" init --quiet --initial-branch=main
git -C "$repo" add --all
git -C "$repo" -c user.name=quickstart -c user.email=quickstart@example.com commit --quiet -m "textstats: initial import"

echo
echo "running mission fix-word-count on $repo (requested by quickstart@example.com)"
status=0
"$flightdeck" --as quickstart@example.com run fix-word-count --repo "$repo" || status=$?
id="$("$flightdeck" missions --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')"

if [ "$status" = 3 ]; then
  # The built-in policy lets source changes publish only after a code owner approves, and
  # the sample's CODEOWNERS names @textstats-lead. The lead approves, then the mission goes on.
  approval="$("$flightdeck" approvals --pending --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')"
  echo
  echo "the mission waits for approval $approval; the requester may not approve it:"
  "$flightdeck" --as quickstart@example.com approve "$approval" || true
  echo
  echo "the code owner approves:"
  "$flightdeck" --as @textstats-lead approve "$approval" --comment "looks right"
  echo
  status=0
  "$flightdeck" --as quickstart@example.com resume "$id" || status=$?
fi
if [ "$status" != 0 ]; then
  echo "the mission did not succeed (exit $status); see: FLIGHTDECK_DATA_DIR=$FLIGHTDECK_DATA_DIR $flightdeck timeline $id" >&2
  exit "$status"
fi

echo
echo "the change:    git -C $repo log -p flightdeck/$id -1"
echo "the timeline:  FLIGHTDECK_DATA_DIR=$FLIGHTDECK_DATA_DIR $flightdeck timeline $id"
echo "the audit:     FLIGHTDECK_DATA_DIR=$FLIGHTDECK_DATA_DIR $flightdeck audit verify $id"
