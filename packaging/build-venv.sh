#!/usr/bin/env bash
# Build Puli's virtualenv for /opt/puli/venv inside a staging root, from a wheel, then make it
# relocatable to its real path: the Debian and RPM packages both ship it this way, so nothing is
# downloaded or compiled on the farm's machines.
#
#   packaging/build-venv.sh STAGING_ROOT WHEEL [PYTHON]
#
# PYTHON (default /usr/bin/python3) is the interpreter the venv links to on the target: build on
# the distribution the package is for (the wheels of mysqlclient and psutil are binary).
# Dependencies come from pip's configured index and its cache (pip wheel can prefill them), at
# the versions requirements.lock pins (scripts/update-lock writes it).
set -euo pipefail
lock="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/requirements.lock"
stage="$1"
wheel="$2"
python="${3:-/usr/bin/python3}"
prefix=/opt/puli/venv
venv="$stage$prefix"

rm -rf "$venv"
mkdir -p "$(dirname "$venv")"
"$python" -m venv --without-pip "$venv"
# pip runs from the build machine's interpreter, into the new venv (no pip shipped in it).
"$python" -m pip --python "$venv/bin/python" install -q --no-compile --no-warn-script-location \
    --constraint "$lock" "$wheel"
# Scripts and activate name the staging path: point them at the real one.
grep -rlIF "$venv" "$venv" | xargs -r sed -i "s#$venv#$prefix#g"
# No pip, no caches in the package: it is upgraded by installing a newer package.
rm -rf "$venv"/lib/python3*/site-packages/pip "$venv"/lib/python3*/site-packages/pip-*.dist-info \
    "$venv"/bin/pip "$venv"/bin/pip3* "$venv"/bin/Activate.ps1
find "$venv" -name __pycache__ -prune -exec rm -rf {} +
if grep -rlF "$stage" "$venv"; then
    echo "build-venv: the staging path is still named in the files above" >&2
    exit 1
fi
# The users' tools on everyone's PATH (/usr/bin), the daemons not: their units name them.
mkdir -p "$stage/usr/bin"
for tool in "$venv"/bin/puli* "$venv"/bin/pul_*; do
    case "$(basename "$tool")" in
        puli-dispatcher | puli-worker | puli-commandwatcher) ;;
        *) ln -sfn "$prefix/bin/$(basename "$tool")" "$stage/usr/bin/$(basename "$tool")" ;;
    esac
done
