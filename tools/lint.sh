#!/usr/bin/env bash
# Lint (ruff check, configured by ruff.toml) the .py files a change touches; `make lint` runs it and
# so does CI (.ci/run). The existing tree is not clean (lines up to ~120 characters), so files are
# checked when they are touched instead of all at once.
#
#   tools/lint.sh                   the touched files (below)
#   tools/lint.sh FILE...           exactly these files
#   tools/lint.sh --fix [FILE...]   the same, letting ruff fix what it can (import order, ...)
#
# The touched files are the .py files that differ between BASE and the working tree (committed
# since BASE, staged or not) plus untracked .py files git does not ignore; deleted files, files only
# renamed (content unchanged, so a move does not oblige a clean-up) and paths ruff.toml excludes are
# skipped. BASE is:
#   - $LINT_BASE if set (`make lint LINT_BASE=origin/main`, `LINT_BASE=HEAD` for uncommitted work
#     only), else the commit in .ci/lint_base: main just before linting began. So every .py file
#     touched since then must pass, however many commits a push has, in CI (a fresh clone of main,
#     where HEAD is origin/main and no merge-base can tell the change) as on a developer's branch.
#     The marker may be moved forward to narrow the set; it never has to be.
#   - The merge-base of that commit and HEAD when it has one (a LINT_BASE on another branch).
#   - If it cannot be resolved (a shallow clone without that commit, an unknown LINT_BASE): HEAD~1,
#     i.e. the files of the last commit; without HEAD~1 either (a depth-1 clone) only uncommitted
#     changes. Both fallbacks say so on stderr.
# It prints the base and the files before ruff's findings; the exit status is ruff's.
#
# ruff is not in requirements.txt (whose hash keys the torch venv): it lives in its own small venv,
# $MTP_CACHE/lint-<version> (default ~/.cache/multitask_pose), created on first use (a few seconds)
# and reused after.
set -euo pipefail
RUFF_VERSION=0.17.6
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${MTP_CACHE:-$HOME/.cache/multitask_pose}
venv=$cache/lint-$RUFF_VERSION
log() { echo "[lint] $*" >&2; }

fix=()
if [ "${1:-}" = "--fix" ]; then fix=(--fix); shift; fi
files=()
for f in "$@"; do files+=("$(realpath -m -- "$f")"); done   # named from the caller's directory
cd "$root"

if [ ! -f "$venv/.mtp-complete" ]; then
  mkdir -p "$cache"
  exec 9>"$cache/.lint.lock"
  flock 9
  if [ ! -f "$venv/.mtp-complete" ]; then
    log "creating $venv (ruff $RUFF_VERSION)"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check "ruff==$RUFF_VERSION" >&2
    touch "$venv/.mtp-complete"
  fi
  exec 9>&-
fi

if [ ${#files[@]} -gt 0 ]; then
  log "checking ${#files[@]} file(s) named on the command line"
else
  commit() { git rev-parse -q --verify "$1^{commit}" 2>/dev/null; }
  if [ -n "${LINT_BASE:-}" ]; then
    want=$LINT_BASE; from="LINT_BASE"
  else
    want=$(grep -sv '^#' .ci/lint_base | awk 'NF {print $1; exit}' || true); from=".ci/lint_base"
  fi
  if base=$(commit "$want"); then
    base=$(git merge-base "$base" HEAD 2>/dev/null || echo "$base")
    log "base: $(git log -1 --format='%h %cs %s' "$base") ($from: $want)"
  elif base=$(commit HEAD~1); then
    log "cannot resolve ${want:-nothing} ($from; a shallow clone, or an unknown commit):" \
        "falling back to the files of the last commit, base HEAD~1 = $(git log -1 --format=%h "$base")"
  elif [ "$(git rev-parse --is-shallow-repository)" = true ]; then
    base=HEAD
    log "cannot resolve ${want:-nothing} ($from) nor HEAD~1 (a shallow clone):" \
        "checking uncommitted changes only, no commits"
  else
    base=$(git hash-object -t tree /dev/null)   # HEAD is the first commit: all of its files
    log "cannot resolve ${want:-nothing} ($from); HEAD is the first commit: checking all of its files"
  fi
  touched=() moved=()
  while IFS= read -r -d '' status; do
    case $status in R*|C*) IFS= read -r -d '' _ ;; esac   # renames and copies: old path, new path
    IFS= read -r -d '' f
    if [ "$status" = R100 ]; then moved+=("$f"); else touched+=("$f"); fi
  done < <(git diff --name-status -M --diff-filter=d -z "$base" -- '*.py')
  while IFS= read -r -d '' f; do touched+=("$f"); done \
      < <(git ls-files --others --exclude-standard -z -- '*.py')
  if [ ${#touched[@]} -gt 0 ]; then
    while IFS= read -r -d '' f; do [ -f "$f" ] && files+=("$f"); done \
        < <(printf '%s\0' "${touched[@]}" | sort -zu)
  fi
  if [ ${#moved[@]} -gt 0 ]; then
    log "not checked: ${#moved[@]} file(s) only renamed, content unchanged (${moved[*]})"
  fi
  log "${#files[@]} touched .py file(s) since the base, in the working tree:"
fi
for f in "${files[@]}"; do log "  ${f#"$root"/}"; done
if [ ${#files[@]} -eq 0 ]; then log "nothing to check"; exit 0; fi

"$venv/bin/ruff" check --config "$root/ruff.toml" --cache-dir "$venv/cache" \
    --output-format concise "${fix[@]}" -- "${files[@]}"
