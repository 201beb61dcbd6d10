#!/usr/bin/env bash
# Build the Debian package puli_<version>_<arch>.deb: Puli in its own virtualenv under
# /opt/puli/venv (built here from the wheel, so the farm's machines download nothing), the
# default settings in /etc/puli (conffiles), the systemd units and the puli system user.
#
#   packaging/deb/build.sh [OUTDIR]      (default: dist/; PULI_DEB_REVISION=N: revision N, not 1)
#
# Build it on the Debian/Ubuntu release it is for: the venv links to that release's python3,
# and mysqlclient and psutil are compiled for it. Needs dpkg-deb and `python3 -m build`
# (PYTHON_BUILD names another interpreter that has `build`, e.g. .venv-tools/bin/python).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
out="$(mkdir -p "${1:-$root/dist}" && cd "${1:-$root/dist}" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

"${PYTHON_BUILD:-python3}" -m build --wheel --outdir "$work/dist" "$root" >"$work/build.log" 2>&1 ||
    { cat "$work/build.log" >&2; exit 1; }
wheel="$(ls "$work"/dist/puli-*.whl)"
version="$(basename "$wheel" | cut -d- -f2)"
# Debian orders 2.0.0~dev0 before 2.0.0; Python's 2.0.0.dev0 would come after it.
# PULI_DEB_REVISION: the Debian revision (1), e.g. 2 for a rebuild of the same version.
debversion="$(echo "$version" | sed -E 's/\.?(dev|a|b|rc)([0-9]*)$/~\1\2/')-${PULI_DEB_REVISION:-1}"
arch="$(dpkg --print-architecture)"
stage="$work/root"

"$root/packaging/build-venv.sh" "$stage" "$wheel" /usr/bin/python3 2> >(grep -v 'is ignored' >&2)
# 0640, group puli (set by postinst once the group exists): settings hold the database password.
install -D -m 0640 "$root/packaging/common/dispatcher.yml" "$stage/etc/puli/dispatcher.yml"
install -D -m 0640 "$root/packaging/common/worker.yml" "$stage/etc/puli/worker.yml"
install -D -m 0644 -t "$stage/lib/systemd/system" "$root"/systemd/*.service
pyver="$(/usr/bin/python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"

mkdir -p "$stage/DEBIAN"
# libpam-systemd: the worker's commands run under its user's systemd manager (puli-worker.service),
# which starts through PAM and needs pam_systemd for its runtime directory.
cat >"$stage/DEBIAN/control" <<CONTROL
Package: puli
Version: $debversion
Architecture: $arch
Maintainer: Puli developers <puli@localhost>
Depends: python3 (>= $pyver), python3 (<< ${pyver%.*}.$((${pyver#*.} + 1))), libmariadb3, adduser, libpam-systemd
Section: utils
Priority: optional
Installed-Size: $(du -sk "$stage" | cut -f1)
Homepage: https://github.com/mikrosimage/OpenRenderManagement
Description: Puli render farm manager: dispatcher, worker, job-script API and CLIs
 Puli dispatches the commands of render jobs to the render nodes of a farm. This package
 installs it into /opt/puli/venv, with the puli-dispatcher and puli-worker systemd units
 (not enabled: run systemctl enable --now puli-dispatcher or puli-worker) and their
 settings in /etc/puli.
CONTROL
printf '/etc/puli/dispatcher.yml\n/etc/puli/worker.yml\n' >"$stage/DEBIAN/conffiles"
install -m 0755 "$root/packaging/deb/postinst" "$root/packaging/deb/prerm" "$root/packaging/deb/postrm" "$stage/DEBIAN/"

dpkg-deb --root-owner-group -Zxz --build "$stage" "$out/puli_${debversion}_${arch}.deb" >/dev/null
echo "$out/puli_${debversion}_${arch}.deb"
