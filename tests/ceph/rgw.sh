#!/bin/bash
# A real Ceph RGW on 127.0.0.1 for the tests, serving HTTP and HTTPS (self-signed certificate).
#
#   tests/ceph/rgw.sh start DIR   start it (via ../shared/tools/ceph-rgw), then restart radosgw with an
#                                 extra TLS endpoint; prints shell exports:
#                                 JETSTORE_CEPH_HTTP, JETSTORE_CEPH_HTTPS, JETSTORE_CEPH_CA, JETSTORE_CEPH_DIR
#   tests/ceph/rgw.sh stop DIR
#   tests/ceph/rgw.sh stop-gateway DIR | start-gateway DIR   stop / restart radosgw alone (fault tests)
# Ports: HTTP $CEPH_HTTP_PORT (default 7480), HTTPS $CEPH_HTTPS_PORT (default 7443).
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TOOL=${CEPH_RGW_TOOL:-$HERE/../../../shared/tools/ceph-rgw}
HTTP_PORT=${CEPH_HTTP_PORT:-7480}
HTTPS_PORT=${CEPH_HTTPS_PORT:-7443}
R=${CEPH_RGW_ROOT:-$HOME/.cache/ceph-rgw}/root

run_rgw() {
  local C=$1
  LD_LIBRARY_PATH=$R/usr/lib/x86_64-linux-gnu:$R/usr/lib/x86_64-linux-gnu/ceph:$R/lib/x86_64-linux-gnu:$R/usr/lib \
    nohup "$R/usr/bin/radosgw" -f -c "$C/ceph.conf" -n client.rgw >>"$C/log/rgw-tls.out" 2>&1 &
  echo $! >"$C/rgw.pid"
}

stop_rgw() {
  local C=$1
  kill "$(cat "$C/rgw.pid")" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$(cat "$C/rgw.pid")" 2>/dev/null || break; sleep 0.2; done
}

start() {
  local C=$1
  [ -x "$TOOL" ] || { echo "no ceph-rgw tool at $TOOL" >&2; exit 3; }
  "$TOOL" start "$C" "$HTTP_PORT" >/dev/null
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$C/key.pem" -out "$C/cert.pem" -days 3 \
    -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" 2>/dev/null
  stop_rgw "$C"
  sed -i "s#^rgw_frontends = .*#rgw_frontends = beast endpoint=127.0.0.1:$HTTP_PORT ssl_endpoint=127.0.0.1:$HTTPS_PORT ssl_certificate=$C/cert.pem ssl_private_key=$C/key.pem#" "$C/ceph.conf"
  run_rgw "$C"
  for _ in $(seq 1 60); do
    curl -sf -m 2 -o /dev/null --cacert "$C/cert.pem" "https://127.0.0.1:$HTTPS_PORT/" && break
    sleep 0.5
  done
  curl -sf -m 2 -o /dev/null --cacert "$C/cert.pem" "https://127.0.0.1:$HTTPS_PORT/"
  echo "export JETSTORE_CEPH_HTTP=http://127.0.0.1:$HTTP_PORT JETSTORE_CEPH_HTTPS=https://127.0.0.1:$HTTPS_PORT JETSTORE_CEPH_CA=$C/cert.pem JETSTORE_CEPH_DIR=$C"
}

case "${1:-}" in
  start) start "${2:?DIR}" ;;
  stop-gateway) stop_rgw "${2:?DIR}" ;;     # radosgw only (fault tests); the cluster keeps its data
  start-gateway) run_rgw "${2:?DIR}" ;;
  stop) "$TOOL" stop "${2:?DIR}" ;;
  *) sed -n '2,9p' "$0"; exit 2 ;;
esac
