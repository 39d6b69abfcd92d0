#!/usr/bin/env bash
# The main job on a fresh Debian 12 machine (as root): install, build, discover this node,
# benchmark it (quick mode: every device beside its theoretical peak, and the normalised
# capacity), then run the agent against an embedded default broker (a local mosquitto on
# loopback) and show what the brain sees: birth, inventory, the measured capacity, telemetry with
# the capacity that is free, a command and its ack, and the death certificate at shutdown.
# CPN_MAIN_SECONDS sets how long the agent runs (default 12).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh

agent=./build/bin/cpn-agent
echo "== cpn-agent discover"
"$agent" discover

work=$(mktemp -d /tmp/cpn-main.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
node=$(hostname | tr 'A-Z' 'a-z' | tr -c 'a-z0-9._\n-' '-' | cut -c1-64)
cleanup() {
  [ -n "${agent_pid:-}" ] && kill "$agent_pid" 2>/dev/null || true
  [ -n "${sub_pid:-}" ] && kill "$sub_pid" 2>/dev/null || true
  [ -n "${broker_pid:-}" ] && kill "$broker_pid" 2>/dev/null || true
}
trap cleanup EXIT

cat > "$work/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
persistence false
CONF
mosquitto -c "$work/mosquitto.conf" > "$work/mosquitto.log" 2>&1 &
broker_pid=$!
cat > "$work/agent.yaml" <<CONF
node: {id: "$node", site: "demo"}
broker: {uris: ["tcp://127.0.0.1:$port"]}
telemetry: {interval_s: 2}
state_dir: $work/state
CONF
sleep 0.3

echo
echo "== cpn-agent bench --quick (stored in $work/state, published by the agent below)"
"$agent" --config "$work/agent.yaml" bench --quick

echo
echo "== what the brain sees (mosquitto_sub -v -t 'cpn/v1/#' on 127.0.0.1:$port)"
mosquitto_sub -h 127.0.0.1 -p "$port" -v -t 'cpn/v1/#' > "$work/brain.log" &
sub_pid=$!
sleep 0.2
"$agent" --config "$work/agent.yaml" run > "$work/agent.log" 2>&1 &
agent_pid=$!
seconds=${CPN_MAIN_SECONDS:-12}
sleep $((seconds / 2))
mosquitto_pub -h 127.0.0.1 -p "$port" -t "cpn/v1/nodes/$node/cmd" -q 1 \
  -m '{"schema_version":1,"id":"demo-1","command":"set_telemetry_interval","params":{"interval_s":1}}'
sleep $((seconds - seconds / 2))
kill -TERM "$agent_pid"
wait "$agent_pid" || true
agent_pid=
sleep 0.5
kill "$sub_pid" 2>/dev/null || true
sub_pid=
# One line per message, long payloads shortened for the terminal.
cut -c1-300 "$work/brain.log"
echo
echo "== agent log"
cat "$work/agent.log"
echo
echo "(files: $work)"
