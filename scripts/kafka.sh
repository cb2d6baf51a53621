#!/usr/bin/env bash
# Local single-node Apache Kafka (KRaft, broker+controller combined) for tests
# and dev, run straight from Maven Central jars -- no Docker, no tarball.
#
#   scripts/kafka.sh fetch          download the broker jars (once) into .cache/kafka/<version>/libs
#   scripts/kafka.sh up             fetch if needed, format storage if needed, start, wait until it answers
#   scripts/kafka.sh status         exit 0 when the broker answers on $KAFKA_PORT, 1 otherwise
#   scripts/kafka.sh down [--wipe]  stop it (SIGTERM, then SIGKILL); --wipe also deletes the data dir
#
# Environment (all optional):
#   KAFKA_VERSION          Kafka release to fetch/run                (default 4.1.2)
#   KAFKA_PORT             client listener on 127.0.0.1             (default 9092)
#   KAFKA_CONTROLLER_PORT  KRaft controller listener on 127.0.0.1    (default KAFKA_PORT+1, i.e. 9093)
#   KAFKA_DATA_DIR         log/metadata dir                          (default .cache/kafka/data-$KAFKA_PORT)
#   KAFKA_PARTITIONS       num.partitions for auto-created topics    (default 4)
#   KAFKA_HEAP             JVM heap flags                            (default -Xmx512m -Xms256m)
#   KAFKA_START_TIMEOUT    seconds `up` waits for the broker         (default 60)
#
# Files (per port, under .cache/kafka/): server-$PORT.properties, log4j2-$PORT.xml,
# kafka-$PORT.pid, kafka-$PORT.log (broker log, plus JVM stdout/stderr).
#
# The kafka-tools jar is on the classpath too, e.g.:
#   java -cp '.cache/kafka/4.1.2/libs/*' org.apache.kafka.tools.TopicCommand --bootstrap-server 127.0.0.1:9092 --list
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KAFKA_VERSION="${KAFKA_VERSION:-4.1.2}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
KAFKA_PARTITIONS="${KAFKA_PARTITIONS:-4}"
KAFKA_HEAP="${KAFKA_HEAP:--Xmx512m -Xms256m}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-60}"
KAFKA_HOST=127.0.0.1

CACHE="$ROOT/.cache/kafka"
HOME_DIR="$CACHE/$KAFKA_VERSION"
LIBS="$HOME_DIR/libs"
POM="$ROOT/scripts/kafka-pom.xml"
DATA_DIR="${KAFKA_DATA_DIR:-$CACHE/data-$KAFKA_PORT}"
case "$DATA_DIR" in /*) ;; *) DATA_DIR="$ROOT/$DATA_DIR" ;; esac
CONF="$CACHE/server-$KAFKA_PORT.properties"
LOG4J_CONF="$CACHE/log4j2-$KAFKA_PORT.xml"
PIDFILE="$CACHE/kafka-$KAFKA_PORT.pid"
LOGFILE="$CACHE/kafka-$KAFKA_PORT.log"

log() { printf 'kafka.sh: %s\n' "$*"; }
err() { printf 'kafka.sh: ERROR: %s\n' "$*" >&2; }

need() {
  command -v "$1" >/dev/null 2>&1 || { err "'$1' not found on PATH ($2)"; exit 1; }
}

python_bin() {
  local p
  for p in python3 python; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c 'import sys; sys.exit(sys.version_info < (3, 6))' 2>/dev/null; then
      echo "$p"; return 0
    fi
  done
  return 1
}

# Speak the Kafka protocol: send an ApiVersions (v0) request and require an
# error-free answer listing the Produce/Fetch/Metadata APIs. In KRaft the broker
# only enables request processing once it has caught up with the metadata log
# and is unfenced, so an answer means it is ready for clients.
probe() {
  local py
  if ! py="$(python_bin)"; then
    # No Python: a bare TCP connect is the best we can do.
    (exec 3<>"/dev/tcp/$KAFKA_HOST/$KAFKA_PORT") 2>/dev/null
    return $?
  fi
  "$py" - "$KAFKA_HOST" "$KAFKA_PORT" <<'PY'
import socket, struct, sys
host, port = sys.argv[1], int(sys.argv[2])
try:
    with socket.create_connection((host, port), timeout=3) as s:
        s.settimeout(5)
        client = b"kafka.sh-probe"
        # header v1: api_key=18 (ApiVersions), api_version=0, correlation_id, client_id
        req = struct.pack(">hhih", 18, 0, 4242, len(client)) + client
        s.sendall(struct.pack(">i", len(req)) + req)

        def read(n):
            buf = b""
            while len(buf) < n:
                chunk = s.recv(n - len(buf))
                if not chunk:
                    raise ConnectionError("connection closed")
                buf += chunk
            return buf

        (size,) = struct.unpack(">i", read(4))
        body = read(size)
        corr, error_code, n = struct.unpack(">ihi", body[:10])
        keys = {struct.unpack(">h", body[10 + 6 * i: 12 + 6 * i])[0] for i in range(n)}
        ok = corr == 4242 and error_code == 0 and {0, 1, 3} <= keys
        sys.exit(0 if ok else 1)
except Exception:
    sys.exit(1)
PY
}

pid_alive() {
  local pid
  [[ -f "$PIDFILE" ]] || return 1
  pid="$(cat "$PIDFILE" 2>/dev/null || true)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  # Guard against pid reuse: it must be our broker.
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka' || return 1
  echo "$pid"
}

show_log_tail() {
  if [[ -f "$LOGFILE" ]]; then
    err "last 40 lines of $LOGFILE:"
    tail -n 40 "$LOGFILE" >&2 || true
  fi
}

cmd_fetch() {
  if [[ -f "$LIBS/.complete" ]]; then
    log "Kafka $KAFKA_VERSION already fetched ($(find "$LIBS" -name "*.jar" | wc -l) jars in ${LIBS#"$ROOT"/})"
    return 0
  fi
  need mvn "install Maven: apt-get install -y maven"
  need java "install a JDK >= 17: apt-get install -y openjdk-17-jre-headless"
  local tmp="$HOME_DIR/libs.tmp.$$"
  mkdir -p "$HOME_DIR"
  rm -rf "$tmp"
  log "fetching Kafka $KAFKA_VERSION jars from Maven Central ..."
  local start=$SECONDS
  if ! mvn -B -q -f "$POM" \
      -Dkafka.version="$KAFKA_VERSION" \
      dependency:copy-dependencies \
      -DincludeScope=runtime \
      -DoutputDirectory="$tmp" >"$HOME_DIR/fetch.log" 2>&1; then
    err "mvn dependency:copy-dependencies failed; see ${HOME_DIR#"$ROOT"/}/fetch.log:"
    tail -n 30 "$HOME_DIR/fetch.log" >&2 || true
    rm -rf "$tmp"
    exit 1
  fi
  if [[ ! -f "$tmp/kafka_2.13-$KAFKA_VERSION.jar" ]]; then
    err "kafka_2.13-$KAFKA_VERSION.jar missing after fetch"
    rm -rf "$tmp"
    exit 1
  fi
  # slf4j 1.x from Kafka's own poms would shadow slf4j 2 and silence the log.
  rm -f "$tmp"/slf4j-api-1.*.jar
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
  touch "$LIBS/.complete"
  log "fetched $(find "$LIBS" -name "*.jar" | wc -l) jars into ${LIBS#"$ROOT"/} in $((SECONDS - start)) s"
}

write_configs() {
  mkdir -p "$CACHE" "$DATA_DIR"
  cat >"$CONF" <<EOF
# Generated by scripts/kafka.sh -- edits are overwritten on every 'up'.
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT,CONTROLLER://$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$KAFKA_HOST:$KAFKA_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
controller.quorum.bootstrap.servers=$KAFKA_HOST:$KAFKA_CONTROLLER_PORT
log.dirs=$DATA_DIR

auto.create.topics.enable=true
num.partitions=$KAFKA_PARTITIONS
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
log.retention.hours=24
log.segment.bytes=104857600
EOF
  cat >"$LOG4J_CONF" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by scripts/kafka.sh. The JVM's stdout is redirected to kafka-$PORT.log. -->
<Configuration status="WARN">
  <Appenders>
    <Console name="stdout" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Logger name="kafka" level="INFO"/>
    <Logger name="org.apache.kafka" level="INFO"/>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="kafka.log.LogCleaner" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Logger name="org.apache.kafka.storage.internals.log" level="WARN"/>
    <Root level="INFO">
      <AppenderRef ref="stdout"/>
    </Root>
  </Loggers>
</Configuration>
EOF
}

format_storage() {
  if [[ -f "$DATA_DIR/meta.properties" ]]; then
    return 0
  fi
  local py cluster_id
  py="$(python_bin)" || py=""
  if [[ -n "$py" ]]; then
    # Like Kafka's Uuid.randomUuid: an id that starts with "-" reads as an option, so draw again.
    cluster_id="$("$py" -c '
import base64, uuid
while True:
    cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not cid.startswith("-"):
        print(cid)
        break
')"
  else
    cluster_id="$(java -cp "$LIBS/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n 1)"
  fi
  log "formatting ${DATA_DIR#"$ROOT"/} (cluster id $cluster_id)"
  if ! java -Dlog4j2.configurationFile="$LOG4J_CONF" -cp "$LIBS/*" kafka.tools.StorageTool format \
      --cluster-id="$cluster_id" -c "$CONF" --standalone >>"$LOGFILE" 2>&1; then
    err "kafka.tools.StorageTool format failed"
    show_log_tail
    exit 1
  fi
}

cmd_up() {
  local pid
  if pid="$(pid_alive)"; then
    if probe; then
      log "already running (pid $pid) on $KAFKA_HOST:$KAFKA_PORT"
      return 0
    fi
    log "pid $pid is running but not answering yet; waiting"
  elif probe; then
    log "a Kafka broker not started by this script already answers on $KAFKA_HOST:$KAFKA_PORT; using it"
    return 0
  else
    rm -f "$PIDFILE"
    if (exec 3<>"/dev/tcp/$KAFKA_HOST/$KAFKA_PORT") 2>/dev/null; then
      err "port $KAFKA_PORT is taken by something that is not a Kafka broker"
      exit 1
    fi
    need java "install a JDK >= 17: apt-get install -y openjdk-17-jre-headless"
    cmd_fetch
    write_configs
    format_storage
    log "starting Kafka $KAFKA_VERSION on $KAFKA_HOST:$KAFKA_PORT (controller :$KAFKA_CONTROLLER_PORT, data ${DATA_DIR#"$ROOT"/})"
    printf '\n==== %s kafka.sh up (Kafka %s) ====\n' "$(date -Is)" "$KAFKA_VERSION" >>"$LOGFILE"
    # shellcheck disable=SC2086  # KAFKA_HEAP is a list of flags
    setsid nohup java $KAFKA_HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -Djava.awt.headless=true \
      -Dlog4j2.configurationFile="$LOG4J_CONF" \
      -cp "$LIBS/*" kafka.Kafka "$CONF" \
      </dev/null >>"$LOGFILE" 2>&1 &
    pid=$!
    echo "$pid" >"$PIDFILE"
  fi

  local deadline=$((SECONDS + KAFKA_START_TIMEOUT))
  while ((SECONDS < deadline)); do
    if probe; then
      log "up: broker answers on $KAFKA_HOST:$KAFKA_PORT (pid $pid, log ${LOGFILE#"$ROOT"/})"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      err "broker process $pid exited during startup"
      rm -f "$PIDFILE"
      show_log_tail
      exit 1
    fi
    sleep 0.5
  done
  err "broker did not answer on $KAFKA_HOST:$KAFKA_PORT within ${KAFKA_START_TIMEOUT}s (pid $pid still running; 'scripts/kafka.sh down' stops it)"
  show_log_tail
  exit 1
}

cmd_down() {
  local wipe=0 arg pid
  for arg in "$@"; do
    case "$arg" in
      --wipe) wipe=1 ;;
      *) err "unknown option for down: $arg"; exit 2 ;;
    esac
  done
  if pid="$(pid_alive)"; then
    log "stopping pid $pid ..."
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + 30))
    while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
      sleep 0.25
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "still alive after 30 s; sending SIGKILL"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.5
    fi
    log "stopped"
  else
    log "not running (no live broker for port $KAFKA_PORT)"
  fi
  rm -f "$PIDFILE"
  if ((wipe)); then
    case "$DATA_DIR" in
      "" | / | "$ROOT" | "$HOME") err "refusing to wipe '$DATA_DIR'"; exit 1 ;;
    esac
    rm -rf "$DATA_DIR"
    log "wiped ${DATA_DIR#"$ROOT"/}"
  fi
}

cmd_status() {
  local pid=""
  pid="$(pid_alive)" || pid=""
  if probe; then
    if [[ -n "$pid" ]]; then
      log "running (pid $pid), answering on $KAFKA_HOST:$KAFKA_PORT"
    else
      log "a broker not started by this script answers on $KAFKA_HOST:$KAFKA_PORT"
    fi
    return 0
  fi
  if [[ -n "$pid" ]]; then
    log "pid $pid is running but not answering on $KAFKA_HOST:$KAFKA_PORT"
  else
    log "not running on $KAFKA_HOST:$KAFKA_PORT"
  fi
  return 1
}

usage() {
  sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
}

main() {
  local cmd="${1:-}"
  shift || true
  case "$cmd" in
    fetch) cmd_fetch "$@" ;;
    up) cmd_up "$@" ;;
    down) cmd_down "$@" ;;
    status) cmd_status "$@" ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
