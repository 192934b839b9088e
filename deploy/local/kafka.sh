#!/usr/bin/env bash
# Single-node Apache Kafka (KRaft, combined broker+controller) for development, tests and CI.
# There is no Docker here, so the broker's jars are resolved from Maven Central with mvn into a
# cache outside the repo, and the broker runs as a plain JVM in the background.
#
# Usage: deploy/local/kafka.sh start|stop|restart|status|topics [TopicCommand args...]
#   start   resolve jars (once), format storage (once), start the broker, wait until it answers;
#           prints the bootstrap address (localhost:PORT) on stdout, progress on stderr.
#           Idempotent: when it is already running it only prints the address.
#   stop    stop the broker (SIGTERM, then SIGKILL after 60 s).
#   status  exit 0 and print the address if the broker answers, exit 3 if not running.
#   topics  run org.apache.kafka.tools.TopicCommand against it, e.g. `topics --list`.
#
# Environment:
#   DOCLOOP_CACHE                 jar cache root         (default ~/.cache/docloop -> kafka-<version>/libs)
#   DOCLOOP_STATE                 state root             (default /tmp/docloop-local -> kafka/)
#   DOCLOOP_KAFKA_PORT            PLAINTEXT port         (default 9092)
#   DOCLOOP_KAFKA_CONTROLLER_PORT KRaft controller port  (default 9093)
#   DOCLOOP_KAFKA_SCRAM_PORT      if set, also a SASL_PLAINTEXT listener there (SCRAM-SHA-512 and PLAIN)
#   DOCLOOP_KAFKA_SASL_USER / DOCLOOP_KAFKA_SASL_PASSWORD  (default docloop / docloop-secret; the SCRAM
#                                 credential is written when storage is formatted, i.e. on a fresh state dir)
#   DOCLOOP_KAFKA_VERSION         versions to try, in order (default "4.1.1 4.4.0")
#   DOCLOOP_KAFKA_HEAP            JVM heap options       (default "-Xmx512m -Xms128m")
#   DOCLOOP_KAFKA_START_TIMEOUT   seconds to wait for the broker (default 90)
set -euo pipefail

CACHE_ROOT=${DOCLOOP_CACHE:-${HOME:-/tmp}/.cache/docloop}
STATE_ROOT=${DOCLOOP_STATE:-/tmp/docloop-local}
PORT=${DOCLOOP_KAFKA_PORT:-9092}
CONTROLLER_PORT=${DOCLOOP_KAFKA_CONTROLLER_PORT:-9093}
SCRAM_PORT=${DOCLOOP_KAFKA_SCRAM_PORT:-}
SASL_USER=${DOCLOOP_KAFKA_SASL_USER:-docloop}
SASL_PASSWORD=${DOCLOOP_KAFKA_SASL_PASSWORD:-docloop-secret}
VERSIONS=${DOCLOOP_KAFKA_VERSION:-4.1.1 4.4.0}
HEAP=${DOCLOOP_KAFKA_HEAP:--Xmx512m -Xms128m}
TIMEOUT=${DOCLOOP_KAFKA_START_TIMEOUT:-90}
JAVA=${JAVA_HOME:+$JAVA_HOME/bin/}java
# The broker binds and advertises the IPv4 loopback only; clients bootstrap with localhost.
HOST=127.0.0.1
ADDRESS=localhost:$PORT

KDIR=$STATE_ROOT/kafka
DATA=$KDIR/data
PIDFILE=$KDIR/kafka.pid
LOG=$KDIR/server.log

log() { echo "kafka: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The pom lists what a broker needs at run time: kafka_2.13 (kafka.Kafka, kafka.tools.StorageTool),
# kafka-tools (TopicCommand) without its Connect/Jetty baggage, and the log4j2 binding for slf4j 1.x
# (kafka_2.13's pom only brings log4j-core, so without it the broker would log nothing).
render_pom() {
  local v=$1
  cat <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.docloop</groupId>
  <artifactId>kafka-libs</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$v</version>
    </dependency>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$v</version>
      <exclusions>
        <exclusion><groupId>org.apache.kafka</groupId><artifactId>connect-runtime</artifactId></exclusion>
      </exclusions>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>2.24.3</version>
    </dependency>
  </dependencies>
  <build>
    <plugins>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId><artifactId>maven-dependency-plugin</artifactId><version>3.8.1</version>
      </plugin>
    </plugins>
  </build>
</project>
EOF
}

# Sets VERSION and LIBS to the first version in $VERSIONS that is cached or resolves.
# A version's cache counts as complete only when its .complete marker matches the pom's hash,
# so editing the pom above triggers a new resolution.
resolve() {
  local v dir pom stamp start
  command -v mvn >/dev/null || die "mvn not found (apt-get install -y maven)"
  for v in $VERSIONS; do
    dir=$CACHE_ROOT/kafka-$v
    pom=$(render_pom "$v")
    stamp=$(printf '%s' "$pom" | sha256sum | cut -c1-16)
    if [[ -f $dir/libs/.complete && $(<"$dir/libs/.complete") == "$stamp" ]]; then
      VERSION=$v LIBS=$dir/libs
      return 0
    fi
    log "resolving Kafka $v and its dependencies with Maven into $dir/libs ..."
    mkdir -p "$dir"
    printf '%s\n' "$pom" >"$dir/pom.xml"
    rm -rf "$dir/libs.tmp"
    start=$SECONDS
    if mvn -B -q -Dstyle.color=never -f "$dir/pom.xml" dependency:copy-dependencies \
         -DincludeScope=runtime -DoutputDirectory="$dir/libs.tmp" >"$dir/mvn.log" 2>&1; then
      echo "$stamp" >"$dir/libs.tmp/.complete"
      rm -rf "$dir/libs"
      mv "$dir/libs.tmp" "$dir/libs"
      local jars=("$dir"/libs/*.jar)
      log "resolved Kafka $v (${#jars[@]} jars) in $((SECONDS - start)) s"
      VERSION=$v LIBS=$dir/libs
      return 0
    fi
    log "Kafka $v did not resolve; last lines of $dir/mvn.log:"
    tail -n 15 "$dir/mvn.log" >&2 || true
  done
  die "no Kafka version out of '$VERSIONS' could be resolved"
}

write_configs() {
  mkdir -p "$KDIR"
  # log4j2 config for the broker (stdout -> server.log) and a quiet one for the command-line tools.
  cat >"$KDIR/log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.reqs.name = kafka.request.logger
logger.reqs.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
EOF
  cat >"$KDIR/log4j2-tools.properties" <<'EOF'
status = warn
appender.err.type = Console
appender.err.name = ERR
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = ERR
EOF

  local listeners="PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT"
  local advertised="PLAINTEXT://$HOST:$PORT"
  if [[ -n $SCRAM_PORT ]]; then
    listeners+=",SASL_PLAINTEXT://$HOST:$SCRAM_PORT"
    advertised+=",SASL_PLAINTEXT://$HOST:$SCRAM_PORT"
  fi
  # Written to a temp file first: start() compares it with the config of a running broker.
  cat >"$KDIR/server.properties.new" <<EOF
# Generated by deploy/local/kafka.sh; rewritten on every start.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CONTROLLER_PORT
controller.listener.names=CONTROLLER
listeners=$listeners
advertised.listeners=$advertised
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT
log.dirs=$DATA
auto.create.topics.enable=true
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
# Consumers in tests join one at a time; don't make each first rebalance wait 3 s.
group.initial.rebalance.delay.ms=0
# Keep the dev broker's disk use small.
log.retention.hours=24
log.segment.bytes=67108864
EOF
  if [[ -n $SCRAM_PORT ]]; then
    cat >>"$KDIR/server.properties.new" <<EOF
# SASL_PLAINTEXT listener for security tests. The SCRAM credential lives in the cluster metadata
# (added by 'StorageTool format --add-scram'); the PLAIN user is declared in the JAAS line below.
sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.sasl_plaintext.sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username="$SASL_USER" password="$SASL_PASSWORD" user_$SASL_USER="$SASL_PASSWORD";
EOF
  fi
}

java_tool() {  # java_tool MAIN_CLASS ARGS... (quiet logging, small heap)
  "$JAVA" -Xmx256m -Dlog4j2.configurationFile="$KDIR/log4j2-tools.properties" -cp "$LIBS/*" "$@"
}

# Formats KRaft storage once per state dir. The SCRAM user is always added (harmless without a
# SASL listener), so DOCLOOP_KAFKA_SCRAM_PORT can be turned on later without reformatting.
format_storage() {
  [[ -f $DATA/meta.properties ]] && return 0
  log "formatting KRaft storage in $DATA"
  local cluster_id
  cluster_id=$(java_tool kafka.tools.StorageTool random-uuid)
  java_tool kafka.tools.StorageTool format --ignore-formatted -t "$cluster_id" -c "$KDIR/server.properties" \
    --add-scram "SCRAM-SHA-512=[name=$SASL_USER,password=$SASL_PASSWORD]" >&2
}

pid_running() {  # true if the pid file names a live broker started by this script for this state dir
  [[ -f $PIDFILE ]] || return 1
  local pid
  pid=$(<"$PIDFILE")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  ps -p "$pid" -o args= 2>/dev/null | grep -qF "kafka.Kafka $KDIR/server.properties"
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

# True if the broker answers a Kafka Metadata (v4) request listing at least one broker.
# A raw-socket probe in Python: ~50 ms, where a JVM tool would take seconds per poll.
answering() {
  port_open "$PORT" || return 1
  command -v python3 >/dev/null || return 0  # port is open; good enough without Python
  python3 - "$HOST" "$PORT" <<'EOF' 2>/dev/null
import socket, struct, sys
host, port = sys.argv[1], int(sys.argv[2])
cid = b"docloop-probe"
# Metadata v4: api_key 3, version 4, correlation id 7, client id, topics=[] , allow_auto_topic_creation=false
req = struct.pack(">hhih", 3, 4, 7, len(cid)) + cid + struct.pack(">ib", 0, 0)
with socket.create_connection((host, port), timeout=3) as s:
    s.sendall(struct.pack(">i", len(req)) + req)
    buf = b""
    while len(buf) < 4 or len(buf) < 4 + struct.unpack(">i", buf[:4])[0]:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit(1)
        buf += chunk
corr, _throttle, nbrokers = struct.unpack(">iii", buf[4:16])
sys.exit(0 if corr == 7 and nbrokers >= 1 else 1)
EOF
}

wait_until_answering() {
  local pid=$1 deadline=$((SECONDS + TIMEOUT))
  until answering; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "broker exited during startup; last lines of $LOG:"
      tail -n 40 "$LOG" >&2 || true
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      log "broker did not answer on $ADDRESS within ${TIMEOUT}s; last lines of $LOG:"
      tail -n 40 "$LOG" >&2 || true
      exit 1
    fi
    sleep 1
  done
}

lock() {  # serialise concurrent start/stop calls on the same state dir
  mkdir -p "$KDIR"
  exec 9>"$KDIR/.lock"
  flock 9
}

cmd_start() {
  lock
  if pid_running; then
    write_configs
    if ! cmp -s "$KDIR/server.properties" "$KDIR/server.properties.new"; then
      log "note: the running broker was started with other settings (ports/SASL); 'stop' then 'start' to apply"
    fi
    rm -f "$KDIR/server.properties.new"
    wait_until_answering "$(<"$PIDFILE")"
    local sasl
    sasl=$(sed -n 's#^advertised.listeners=.*SASL_PLAINTEXT://[^:]*:\([0-9]*\).*#\1#p' "$KDIR/server.properties")
    log "already running (pid $(<"$PIDFILE")) on $ADDRESS${sasl:+, SASL_PLAINTEXT on localhost:$sasl}"
    echo "$ADDRESS"
    return 0
  fi
  rm -f "$PIDFILE"
  if port_open "$PORT"; then
    die "port $PORT is already in use by another process (not started by this script for $KDIR)"
  fi
  resolve
  write_configs
  mv "$KDIR/server.properties.new" "$KDIR/server.properties"
  format_storage
  [[ -f $LOG ]] && mv -f "$LOG" "$LOG.1"
  log "starting Kafka $VERSION on $ADDRESS${SCRAM_PORT:+ (+ SASL_PLAINTEXT on localhost:$SCRAM_PORT)}, log: $LOG"
  local start=$SECONDS
  # nohup+setsid: the broker outlives this shell and its terminal; both exec, so $! is the JVM's pid.
  # 9>&- keeps the lock fd out of the broker, else the lock would be held as long as it runs.
  # shellcheck disable=SC2086  # HEAP holds several JVM options
  (cd "$KDIR" && exec nohup setsid "$JAVA" $HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
      -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
      -Dlog4j2.configurationFile="$KDIR/log4j2.properties" \
      -cp "$LIBS/*" kafka.Kafka "$KDIR/server.properties" >"$LOG" 2>&1 </dev/null 9>&-) &
  echo $! >"$PIDFILE"
  wait_until_answering "$(<"$PIDFILE")"
  log "ready on $ADDRESS after $((SECONDS - start)) s (pid $(<"$PIDFILE"))"
  echo "$ADDRESS"
}

cmd_stop() {
  lock
  if ! pid_running; then
    rm -f "$PIDFILE"
    log "not running"
    return 0
  fi
  local pid i
  pid=$(<"$PIDFILE")
  log "stopping (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 600; i++)); do  # controlled shutdown usually takes a few seconds
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    log "still alive after 60 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$PIDFILE"
  log "stopped"
}

cmd_status() {
  if pid_running && answering; then
    log "running (pid $(<"$PIDFILE")) on $ADDRESS"
    echo "$ADDRESS"
    return 0
  elif pid_running; then
    log "process $(<"$PIDFILE") is alive but not answering on $ADDRESS (starting or unhealthy; see $LOG)"
    return 1
  fi
  log "not running"
  return 3
}

cmd_topics() {
  pid_running || die "not running"
  resolve
  java_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$ADDRESS" "$@"
}

# Kafka's own console clients, for trying the engine by hand (see README: publishing and consuming).
cmd_console() {
  local tool=$1
  shift
  pid_running || die "not running"
  resolve
  java_tool "$tool" --bootstrap-server "$ADDRESS" "$@"
}

case ${1:-} in
  start) cmd_start ;;
  stop) cmd_stop ;;
  restart) cmd_stop && cmd_start ;;
  status) cmd_status ;;
  topics) shift; cmd_topics "$@" ;;
  producer) shift; cmd_console org.apache.kafka.tools.ConsoleProducer "$@" ;;
  consumer) shift; cmd_console org.apache.kafka.tools.consumer.ConsoleConsumer "$@" ;;
  *) echo "usage: $0 start|stop|restart|status|topics|producer|consumer [tool args...]" >&2; exit 2 ;;
esac
