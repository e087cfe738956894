#!/usr/bin/env bash
# Create (or reuse) the project's virtual environment outside the clone; print its python path.
#
# The venv lives in $MTP_CACHE (default ~/.cache/multitask_pose) under a name keyed by the hash of
# requirements.txt and of these install scripts, so an unchanged set-up is reused in about a second
# and a changed one gets a fresh venv. Set MTP_VENV to use an existing environment instead (for
# example one that already has a detectron2 built with its C++ ops: it is used untouched).
# Everything but the final path goes to stderr.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cache=${MTP_CACHE:-$HOME/.cache/multitask_pose}
key=$(cat "$root/requirements.txt" "$root/tools/install/setup_env.sh" \
          "$root/tools/install/patch_detectron2.py" | sha256sum | cut -c1-12)
venv=${MTP_VENV:-$cache/venv-$key}
py="$venv/bin/python"
log() { echo "[setup_env] $*" >&2; }
mkdir -p "$cache"

exec 9>"$cache/.lock"
flock 9

if [ -n "${MTP_VENV:-}" ] && [ ! -x "$py" ]; then
  log "MTP_VENV=$MTP_VENV has no bin/python"; exit 1
fi

if [ ! -f "$venv/.mtp-complete" ]; then
  if [ -z "${MTP_VENV:-}" ]; then
    log "creating $venv (about 3 minutes the first time)"
    rm -rf "$venv"
    python3 -m venv "$venv"
    # pip 25+ refuses to even download pb1-detectron2's sdist (it declares a URL dependency in an
    # extra we do not use); 24.2 downloads it.
    "$py" -m pip install -q --disable-pip-version-check "pip==24.2" >&2
  fi
  log "installing requirements.txt"
  "$py" -m pip install -q --disable-pip-version-check -r "$root/requirements.txt" >&2

  if "$py" -c "import detectron2" 2>/dev/null; then
    log "using the importable detectron2 untouched: $("$py" -c 'import detectron2; print(detectron2.__file__)')"
  else
    wheel_dir="$cache/wheels-$(sha256sum "$root/tools/install/patch_detectron2.py" | cut -c1-12)"
    wheel="$wheel_dir/pb1_detectron2-0.6-py3-none-any.whl"
    if [ ! -f "$wheel" ]; then
      log "building the pure-Python detectron2 v0.6 wheel"
      tmp=$(mktemp -d)
      "$py" -m pip download -q --disable-pip-version-check --no-deps --no-build-isolation \
          --no-binary :all: pb1-detectron2==0.6 -d "$tmp" >&2
      tar xzf "$tmp"/pb1-detectron2-0.6.tar.gz -C "$tmp"
      "$py" "$root/tools/install/patch_detectron2.py" "$tmp/pb1-detectron2-0.6" >&2
      "$py" -m pip wheel -q --disable-pip-version-check --no-deps --no-build-isolation \
          -w "$tmp/wheel" "$tmp/pb1-detectron2-0.6" >&2
      mkdir -p "$wheel_dir"
      mv "$tmp/wheel/pb1_detectron2-0.6-py3-none-any.whl" "$wheel"
      rm -rf "$tmp"
    fi
    "$py" -m pip install -q --disable-pip-version-check "$wheel" >&2
  fi
  touch "$venv/.mtp-complete"
fi

# Point the venv at this clone (CI clones afresh each run; the editable install is cheap).
"$py" -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e "$root" >&2
echo "$py"
