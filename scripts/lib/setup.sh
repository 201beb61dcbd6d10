# Setup steps shared by the README's entry scripts (sourced, not run): system packages, MariaDB,
# and the project's virtual environment. Written for Debian 12; every step is idempotent and
# skipped when already done.

PULI_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PULI_VENV="$PULI_ROOT/.venv"

say() {
    printf '==> %s\n' "$*"
}

die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

# as_root CMD...: run CMD as root, through sudo when needed.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "need root to run: $*"
    fi
}

# ensure_packages PKG...: apt-get install the packages that are not installed yet.
ensure_packages() {
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' ||
            missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return
    say "installing ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# python_packages: the Debian packages the venv and the build of mysqlclient need.
python_packages() {
    echo libmariadb-dev pkg-config
    # Debian's own python3 creates a venv only with python3-venv (it ships ensurepip).
    python3 -c 'import ensurepip, venv' 2>/dev/null || echo python3-venv
}

# ensure_mariadb: a running MariaDB on 127.0.0.1:3306 where root logs in over TCP without password.
ensure_mariadb() {
    if ! mariadb-admin ping >/dev/null 2>&1; then
        say "starting MariaDB"
        as_root mkdir -p /run/mysqld
        as_root chown mysql:mysql /run/mysqld
        # stderr is lost under --background: the error log says why a start failed.
        as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- \
            --user=mysql --log-error=/run/mysqld/mariadbd.err
        local deadline=$((SECONDS + 30))
        until mariadb-admin ping >/dev/null 2>&1; do
            if [ $SECONDS -ge $deadline ]; then
                tail -n 20 /run/mysqld/mariadbd.err >&2 || true
                die "MariaDB did not answer within 30 s"
            fi
            sleep 0.2
        done
    fi
    if ! mariadb --protocol=TCP -h 127.0.0.1 -P 3306 -u root -e 'SELECT 1' >/dev/null 2>&1; then
        say "letting root log in from 127.0.0.1 without password (for the tests)"
        # Through the unix socket as the system's root. Unless the server skips name resolution,
        # a TCP client from 127.0.0.1 is root@localhost, whose Debian default (unix_socket auth
        # only) TCP cannot satisfy, so that account gets a passwordless alternative too.
        as_root mariadb -u root <<'SQL'
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED VIA mysql_native_password USING '';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING '';
SQL
        mariadb --protocol=TCP -h 127.0.0.1 -P 3306 -u root -e 'SELECT 1' >/dev/null ||
            die "root still cannot log in to MariaDB over TCP on 127.0.0.1:3306"
    fi
}

# ensure_venv: .venv with Puli installed in editable mode with its test extras. pip runs again
# only when the packaging metadata changed since the last successful install.
ensure_venv() {
    local stamp="$PULI_VENV/.puli-install-stamp" digest
    if [ ! -x "$PULI_VENV/bin/python" ]; then
        say "creating $PULI_VENV"
        python3 -m venv "$PULI_VENV"
    fi
    digest="$(cat "$PULI_ROOT/setup.cfg" "$PULI_ROOT/pyproject.toml" | sha256sum | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]; then
        say "installing Puli and its dependencies into .venv"
        "$PULI_VENV/bin/python" -m pip install -q -e "$PULI_ROOT[test]"
        echo "$digest" >"$stamp"
    fi
}

# ensure_appliance_tools: what the appliance checks need (systemd-analyze, vagrant, rpmbuild,
# dpkg-deb, nginx — the manager role's TLS front, which the playbook test starts by hand;
# ansible, ansible-lint and build), the Python tools in their own .venv-tools so that the
# project's .venv stays small. PULI_TOOLS_VENV names it.
ensure_appliance_tools() {
    local tools="${PULI_TOOLS_VENV:-$PULI_ROOT/.venv-tools}"
    ensure_packages systemd vagrant rpm dpkg-dev nginx
    if [ ! -x "$tools/bin/ansible-lint" ] || [ ! -x "$tools/bin/pyproject-build" ]; then
        say "installing ansible, ansible-lint and build into $tools"
        [ -x "$tools/bin/python" ] || python3 -m venv "$tools"
        "$tools/bin/python" -m pip install -q ansible ansible-lint build PyMySQL
    fi
}
