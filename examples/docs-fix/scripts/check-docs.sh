#!/usr/bin/env bash
# Checks the examples in the docs. In every ```console block of README.md and docs/*.md,
# each `$ greet ...` line is run with the freshly built binary, and what it prints (stdout
# and stderr) must be exactly the lines under it, up to the next `$ ` line or the end of the
# block. Prints each example that does not match, and exits 1 if any does not.
set -euo pipefail
docs=(README.md docs/*.md)
set -f # the arguments of a documented command are words, not globs

cargo build --quiet --offline
bin="$PWD/target/debug/greet"
checked=0
wrong=0

# run_example WHERE COMMAND EXPECTED
run_example() {
  local where=$1 command=$2 expected=$3 actual
  local -a words
  read -ra words <<<"$command"
  checked=$((checked + 1))
  if [ "${words[0]}" != greet ]; then
    echo "$where: \`$command\`: only greet commands can be checked"
    wrong=$((wrong + 1))
    return
  fi
  actual="$("$bin" "${words[@]:1}" 2>&1)" || true
  if [ "$actual" != "$expected" ]; then
    wrong=$((wrong + 1))
    echo "$where: \`$command\` printed:"
    sed 's/^/    /' <<<"$actual"
    echo "  but the docs say it prints:"
    sed 's/^/    /' <<<"$expected"
  fi
}

for doc in "${docs[@]}"; do
  n=0 in_block=0 where="" command="" expected="" lines=0
  while IFS= read -r line || [ -n "$line" ]; do
    n=$((n + 1))
    if [ "$in_block" = 0 ]; then
      if [ "$line" = '```console' ]; then in_block=1; fi
      continue
    fi
    if [ "$line" = '```' ] || [[ $line == '$ '* ]]; then
      if [ -n "$command" ]; then run_example "$where" "$command" "$expected"; fi
      command="" expected="" lines=0
      if [ "$line" = '```' ]; then in_block=0; else command=${line#'$ '} where="$doc:$n"; fi
      continue
    fi
    if [ "$lines" = 0 ]; then expected=$line; else expected+=$'\n'$line; fi
    lines=$((lines + 1))
  done <"$doc"
done

if [ "$wrong" != 0 ]; then
  echo "$wrong of $checked documented example(s) do not print what the docs say"
  exit 1
fi
echo "all $checked documented example(s) print what the docs say"
