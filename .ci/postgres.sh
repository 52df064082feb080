# A throw-away PostgreSQL server for the tests that need one: Debian's package, run as its own user in a temporary
# data folder on a loopback port, stopped (and its folder removed) when the sourcing shell exits.
# Sourced by .ci/run; exports SPARSE4D_LAB_TEST_POSTGRES (a server URL without a database: each test makes its own).

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    apt-get install -y -qq postgresql >/dev/null
fi
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
PG_HOME=$(mktemp -d)
PG_PORT=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_postgres() {  # the server refuses to run as root
    if [ "$(id -u)" = 0 ]; then (cd "$PG_HOME" && runuser -u postgres -- "$@"); else "$@"; fi
}
[ "$(id -u)" = 0 ] && chown postgres "$PG_HOME"
stop_postgres() {
    as_postgres "$PG_BIN/pg_ctl" -D "$PG_HOME/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$PG_HOME"
}
trap stop_postgres EXIT
as_postgres "$PG_BIN/initdb" -D "$PG_HOME/data" -U postgres -A trust >/dev/null
as_postgres "$PG_BIN/pg_ctl" -D "$PG_HOME/data" -l "$PG_HOME/server.log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_HOME" start >/dev/null
export SPARSE4D_LAB_TEST_POSTGRES="postgresql+psycopg2://postgres@127.0.0.1:$PG_PORT"
echo "PostgreSQL $("$PG_BIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT"
