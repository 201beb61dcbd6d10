#!/usr/bin/env bash
# Build the RPM from this source tree: the wheel, then rpmbuild -bb packaging/rpm/puli.spec.
#
#   packaging/rpm/build.sh [OUTDIR]      (default: dist/)
#
# PULI_PYTHON names the interpreter the venv links to (default: python3.11 where it exists,
# else python3 — on a Debian build host this only proves the spec builds).
# PYTHON_BUILD names an interpreter that has `build` (default python3).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="$(mkdir -p "${1:-$root/dist}" && cd "${1:-$root/dist}" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
python="${PULI_PYTHON:-$(command -v /usr/bin/python3.11 || command -v /usr/bin/python3)}"

"${PYTHON_BUILD:-python3}" -m build --wheel --outdir "$work/dist" "$root" >"$work/build.log" 2>&1 ||
    { cat "$work/build.log" >&2; exit 1; }
wheel="$(ls "$work"/dist/puli-*.whl)"
version="$(basename "$wheel" | cut -d- -f2)"
# RPM orders 2.0.0~dev0 before 2.0.0.
rpmversion="$(echo "$version" | sed -E 's/\.?(dev|a|b|rc)([0-9]*)$/~\1\2/')"
rpmbuild --quiet --define "_topdir $work/rpmbuild" --define "_unitdir /usr/lib/systemd/system" \
    --define "puli_version $rpmversion" --define "puli_wheel $wheel" --define "puli_source $root" \
    --define "puli_python $python" -bb "$root/packaging/rpm/puli.spec" 2> >(grep -v 'is ignored' >&2)
find "$work/rpmbuild/RPMS" -name '*.rpm' -exec cp -t "$out" {} +
find "$out" -name "puli-$rpmversion-*.rpm" -newer "$wheel"
