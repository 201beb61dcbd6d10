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

# ensure_mariadb: a MariaDB for the tests, where root logs in over TCP without password, named
# by PULI_TEST_MARIADB (host:port). Given, it is used as it is. Otherwise the host's own on
# 127.0.0.1:3306 when root logs in there so (started first if it is down), else a private server
# of this script's own — its own datadir and port, stopped by stop_private_mariadb: the tests
# never change the accounts of a server they did not start.
ensure_mariadb() {
    [ -n "${PULI_TEST_MARIADB:-}" ] && return
    if ! mariadb-admin ping >/dev/null 2>&1; then
        say "starting MariaDB"
        as_root mkdir -p /run/mysqld
        as_root chown mysql:mysql /run/mysqld
        # stderr is lost under --background: the error log says why a start failed.
        as_root start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- \
            --user=mysql --log-error=/run/mysqld/mariadbd.err
        wait_for_mariadb 3306 /run/mysqld/mariadbd.err ping
    fi
    if mariadb --protocol=TCP -h 127.0.0.1 -P 3306 -u root -e 'SELECT 1' >/dev/null 2>&1; then
        export PULI_TEST_MARIADB=127.0.0.1:3306
        return
    fi
    start_private_mariadb
}

# wait_for_mariadb PORT ERRLOG [ping]: until root answers on 127.0.0.1:PORT (or the server
# answers a ping), 30 s at most.
wait_for_mariadb() {
    local deadline=$((SECONDS + 30))
    until if [ "${3:-}" = ping ]; then mariadb-admin ping >/dev/null 2>&1
          else mariadb --protocol=TCP -h 127.0.0.1 -P "$1" -u root -e 'SELECT 1' >/dev/null 2>&1; fi; do
        if [ $SECONDS -ge $deadline ]; then
            tail -n 20 "$2" >&2 || true
            die "MariaDB did not answer within 30 s"
        fi
        sleep 0.2
    done
}

PRIVATE_MARIADB_DIR=""

start_private_mariadb() {
    local dir port
    dir="$(mktemp -d /var/tmp/puli-test-mariadb.XXXXXX)"
    chmod 755 "$dir"        # the server runs as mysql
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    say "root cannot log in to the host's MariaDB without password: a private one on port $port"
    as_root chown mysql:mysql "$dir"
    as_root mariadb-install-db --user=mysql --datadir="$dir/data" --skip-test-db \
        --auth-root-authentication-method=normal >/dev/null
    PRIVATE_MARIADB_DIR="$dir"
    # --pidfile: this instance is the one looked for, whatever other mariadbd runs.
    as_root start-stop-daemon --start --background --pidfile "$dir/mysqld.pid" \
        --exec /usr/sbin/mariadbd -- --no-defaults \
        --user=mysql --datadir="$dir/data" --socket="$dir/mysqld.sock" --port="$port" \
        --bind-address=127.0.0.1 --skip-name-resolve --log-error="$dir/error.log" \
        --pid-file="$dir/mysqld.pid"
    wait_for_mariadb "$port" "$dir/error.log"
    export PULI_TEST_MARIADB="127.0.0.1:$port"
}

# stop_private_mariadb: stop and remove the private server, if this script started one.
stop_private_mariadb() {
    [ -n "$PRIVATE_MARIADB_DIR" ] || return 0
    as_root start-stop-daemon --stop --quiet --oknodo --retry 30 \
        --pidfile "$PRIVATE_MARIADB_DIR/mysqld.pid" --exec /usr/sbin/mariadbd
    as_root rm -rf "$PRIVATE_MARIADB_DIR"
    PRIVATE_MARIADB_DIR=""
}

# ensure_venv: .venv with Puli installed in editable mode with its test extras. pip runs again
# only when the packaging metadata changed since the last successful install.
ensure_venv() {
    local stamp="$PULI_VENV/.puli-install-stamp" digest
    if [ ! -x "$PULI_VENV/bin/python" ]; then
        say "creating $PULI_VENV"
        python3 -m venv "$PULI_VENV"
    fi
    digest="$(cat "$PULI_ROOT/setup.cfg" "$PULI_ROOT/pyproject.toml" "$PULI_ROOT/requirements.lock" \
        | sha256sum | cut -d' ' -f1)"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]; then
        say "installing Puli and its dependencies into .venv"
        # The runtime dependencies at the versions the farm runs (requirements.lock).
        "$PULI_VENV/bin/python" -m pip install -q -e "$PULI_ROOT[test]" --constraint "$PULI_ROOT/requirements.lock" ||
            die "could not install Puli into $PULI_VENV"
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
