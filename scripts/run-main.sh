#!/usr/bin/env bash
# The main job: installs the packages, builds memward, and runs nginx under
# LD_PRELOAD=libmemward_preload.so as a small LLM gateway. wrk replays the
# Azure LLM conversation trace against it on 127.0.0.1 for a bounded time
# while this script samples each nginx process's resident memory. At the end
# nginx is stopped gracefully and the script prints wrk's results, memory per
# process and the allocator statistics that memward printed at exit.
#
# Made for a fresh Debian 12 machine, run as root. Exits 0 only if every
# check passes: memward is mapped in every nginx process, wrk saw no socket
# error, every response was 2xx, no nginx process crashed, and every process
# printed its allocator statistics.
set -euo pipefail
# Fixed number formats for the arithmetic on $EPOCHREALTIME and in awk.
export LC_ALL=C

usage() {
  cat <<'EOF'
usage: run-main.sh [options] [-- BUILD_OPTIONS...]

Builds memward, runs nginx under libmemward_preload.so on 127.0.0.1 and
replays the Azure LLM conversation trace against it with wrk.

options:
  --duration SECONDS   how long wrk sends requests (default 20, at most 600)
  --connections N      wrk's open connections (default 32)
  --threads N          wrk's threads (default 2)
  --skip-install       do not run scripts/install-deps.sh
  --skip-build         do not run scripts/build.sh; use the existing build
  -h, --help           show this help

BUILD_OPTIONS go to scripts/build.sh, which hands them to cmake; cmake keeps
them in the build folder's cache, where scripts/run-tests.sh finds them too.
BUILD_DIR selects the build folder (default: build/ in the repository).
Output and logs stay in a new folder under ${TMPDIR:-/tmp}, named at the end.
EOF
}

fail_usage() {
  echo "run-main.sh: $1" >&2
  echo "Run 'run-main.sh --help' for the options." >&2
  exit 2
}

die() {
  echo "run-main.sh: error: $1" >&2
  exit 1
}

require_whole_number() {
  local option=$1 value=$2 max=$3
  if ! [[ $value =~ ^[1-9][0-9]*$ ]] || ((value < 1 || value > max)); then
    fail_usage "$option must be a whole number from 1 to $max, not '$value'"
  fi
}

duration=20
connections=32
threads=2
run_install=1
run_build=1
build_options=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --duration | --connections | --threads)
      [[ $# -ge 2 ]] || fail_usage "$1 needs a value"
      case $1 in
        --duration) duration=$2 ;;
        --connections) connections=$2 ;;
        --threads) threads=$2 ;;
      esac
      shift 2
      ;;
    --skip-install) run_install=0; shift ;;
    --skip-build) run_build=0; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; build_options=("$@"); break ;;
    *) fail_usage "unknown option '$1'" ;;
  esac
done
require_whole_number --duration "$duration" 600
require_whole_number --connections "$connections" 10000
require_whole_number --threads "$threads" 64
((connections >= threads)) ||
  fail_usage "--connections ($connections) must be at least --threads ($threads)"

root=$(cd "$(dirname "$0")/.." && pwd)
job_files=$root/scripts/main-job
trace=$root/data/azure-llm-inference-2023/AzureLLMInferenceTrace_conv.csv
# Resolved against the caller's folder, as build.sh resolves it.
build_dir=$(realpath -m -- "${BUILD_DIR:-$root/build}")
export BUILD_DIR=$build_dir
preload=$build_dir/lib/libmemward_preload.so
job_start=$SECONDS

section() {
  printf '\n== %s ==\n' "$1"
}

# ---------------------------------------------------------------------------
# Packages and build.

if ((run_install)); then
  section "Installing packages (scripts/install-deps.sh)"
  "$root/scripts/install-deps.sh"
fi
if ((run_build)); then
  section "Building memward in $build_dir (scripts/build.sh)"
  build_start=$SECONDS
  # The job needs only the preload library and the settings tool.
  BUILD_TARGETS="memward_preload memward-settings" "$root/scripts/build.sh" "${build_options[@]}"
  echo "build took $((SECONDS - build_start)) s"
fi
[[ -f $preload ]] || die "$preload not found; build memward first (scripts/build.sh)"
for tool in nginx wrk curl python3 ps; do
  command -v "$tool" >/dev/null ||
    die "'$tool' not found; install the packages with scripts/install-deps.sh"
done
nginx_binary=$(command -v nginx)

# ---------------------------------------------------------------------------
# The job's folder: configuration, generated responses, logs.

work_dir=$(mktemp -d "${TMPDIR:-/tmp}/memward-main.XXXXXX")
# nginx's workers run as nobody when the master runs as root, and they read
# the response files from here.
chmod 755 "$work_dir"
mkdir -p "$work_dir/logs" "$work_dir/temp" "$work_dir/site"
stderr_file=$work_dir/nginx-stderr.log
access_log=$work_dir/logs/gateway-access.log
plan_file=$work_dir/replay-plan.txt
samples_file=$work_dir/rss-samples.txt
wrk_output=$work_dir/wrk-output.txt
wrk_summary=$work_dir/wrk-summary.txt

section "Preparing the replay in $work_dir"
python3 "$job_files/make_site.py" --trace "$trace" --site "$work_dir/site" --plan "$plan_file"

if [[ $(id -u) -eq 0 ]]; then
  user_directive="user nobody nogroup;"
else
  user_directive="# Not root: the workers keep the caller's user."
fi

# Prints two free TCP ports on 127.0.0.1. Another program may take one before
# nginx binds it; start_nginx then tries again with new ports.
pick_ports() {
  python3 - <<'EOF'
import socket
sockets = [socket.socket() for _ in range(2)]
for s in sockets:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in sockets))
EOF
}

# Returns 0 while the process exists and is not a zombie.
process_running() {
  local stat
  read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
  # The state is the first field after the command name, which is in brackets.
  stat=${stat##*) }
  [[ -n $stat && ${stat%% *} != Z ]]
}

nginx_pid=
wrk_pid=
cleanup() {
  if [[ -n $wrk_pid ]] && process_running "$wrk_pid"; then
    kill -INT "$wrk_pid" 2>/dev/null || true
  fi
  if [[ -n $nginx_pid ]] && process_running "$nginx_pid"; then
    kill -QUIT "$nginx_pid" 2>/dev/null || true
    for _ in {1..50}; do
      process_running "$nginx_pid" || break
      sleep 0.2
    done
    if process_running "$nginx_pid"; then
      kill -KILL "$nginx_pid" 2>/dev/null || true
    fi
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Starts nginx under memward and waits until it listens. Returns 1 if a port
# was taken, and stops the script on any other start-up failure.
start_nginx() {
  sed -e "s|@WORK_DIR@|$work_dir|g" \
      -e "s|@GATEWAY_PORT@|$gateway_port|g" \
      -e "s|@MODEL_PORT@|$model_port|g" \
      -e "s|@USER_DIRECTIVE@|$user_directive|g" \
      "$job_files/nginx.conf.in" >"$work_dir/nginx.conf"
  : >"$stderr_file"
  # -e stderr: messages from before the configuration is read also go to
  # stderr, not to the packaged /var/log/nginx.
  LD_PRELOAD=$preload MEMWARD_CONF=stats_at_exit=true \
    "$nginx_binary" -p "$work_dir/" -e stderr -c "$work_dir/nginx.conf" 2>"$stderr_file" &
  nginx_pid=$!

  # The master binds both ports before it starts its workers, so this notice
  # means nginx accepts connections.
  for _ in {1..100}; do
    if grep -q "start worker processes" "$stderr_file"; then
      return 0
    fi
    if ! process_running "$nginx_pid"; then
      local status=0
      wait "$nginx_pid" || status=$?
      nginx_pid=
      if grep -q "Address already in use" "$stderr_file"; then
        return 1
      fi
      cat "$stderr_file" >&2
      die "nginx exited with status $status during start-up; its stderr is above"
    fi
    sleep 0.1
  done
  cat "$stderr_file" >&2
  die "nginx did not start its workers within 10 s; its stderr is above"
}

section "Starting nginx under memward"
started=0
for _ in 1 2 3; do
  read -r gateway_port model_port < <(pick_ports)
  if start_nginx; then
    started=1
    break
  fi
  echo "port $gateway_port or $model_port was taken before nginx bound it; trying new ports"
done
((started)) || die "nginx failed to bind free ports in 3 attempts; see $stderr_file"
echo "nginx $("$nginx_binary" -v 2>&1 | sed 's|.*/||'), master pid $nginx_pid," \
  "gateway http://127.0.0.1:$gateway_port/, model server on port $model_port"
echo "LD_PRELOAD=$preload"
echo "MEMWARD_CONF=stats_at_exit=true"

# ---------------------------------------------------------------------------
# Checks and samples of the nginx processes.

failures=()
check() {
  local passed=$1 message=$2
  if ((passed)); then
    echo "ok    $message"
  else
    echo "FAIL  $message"
    failures+=("$message")
  fi
}

list_workers() {
  ps -o pid= --ppid "$nginx_pid" 2>/dev/null | tr -d ' ' | sort -n || true
}

# Prints the value in kB of a field such as VmRSS: from /proc/PID/status.
# Uses no subprocess, so sampling stays cheap while the load takes the CPUs.
read_status_kilobytes() {
  local pid=$1 field=$2 key value _
  while read -r key value _; do
    if [[ $key == "$field:" ]]; then
      echo "$value"
      return 0
    fi
  done <"/proc/$pid/status"
  return 1
}

declare -A memward_mapped=()
# Records, for each process not seen before, whether it has the preload
# library mapped.
check_mappings() {
  local pid
  for pid in "$@"; do
    [[ -n ${memward_mapped[$pid]:-} ]] && continue
    if grep -qF "$preload" "/proc/$pid/maps" 2>/dev/null; then
      memward_mapped[$pid]=yes
    else
      memward_mapped[$pid]=no
    fi
  done
}

# Appends `second pid role VmRSS_kB` for every nginx process.
sample_rss() {
  local second=$1 pid role kilobytes
  local pids=("$nginx_pid")
  mapfile -t -O 1 pids < <(list_workers)
  check_mappings "${pids[@]}"
  for pid in "${pids[@]}"; do
    kilobytes=$(read_status_kilobytes "$pid" VmRSS 2>/dev/null) || continue
    role=worker
    [[ $pid == "$nginx_pid" ]] && role=master
    echo "$second $pid $role $kilobytes" >>"$samples_file"
  done
  return 0
}

initial_workers=$(list_workers)
[[ -n $initial_workers ]] || die "nginx started no worker processes; see $stderr_file"
# shellcheck disable=SC2086 # one pid per word
check_mappings "$nginx_pid" $initial_workers

# One request before the load, to check the path from gateway to model.
first_path=$(awk 'NR == 1 { print $1 }' "$plan_file")
smoke_status=$(curl --noproxy '*' --silent --show-error --max-time 10 \
  --output "$work_dir/smoke-response.json" --write-out '%{http_code}' \
  --header 'Content-Type: application/json' \
  --data '{"model":"trace-replay","messages":[{"role":"user","content":"tok tok "}]}' \
  "http://127.0.0.1:$gateway_port$first_path") || smoke_status="curl failed"
if [[ $smoke_status != 200 ]] || ! grep -q '"object":"chat.completion"' "$work_dir/smoke-response.json"; then
  die "first request to $first_path returned HTTP $smoke_status, not a 200 chat completion;" \
    "see $work_dir/smoke-response.json and $stderr_file"
fi

# ---------------------------------------------------------------------------
# The load.

section "Replaying the trace with wrk for $duration s ($threads threads, $connections connections)"
: >"$samples_file"
REPLAY_PLAN_FILE=$plan_file REPLAY_THREADS=$threads REPLAY_SUMMARY_FILE=$wrk_summary \
  timeout --signal=INT $((duration + 60)) \
  wrk --threads "$threads" --connections "$connections" --duration "${duration}s" \
  --timeout 10s --latency --script "$job_files/replay.lua" \
  "http://127.0.0.1:$gateway_port/" >"$wrk_output" 2>&1 &
wrk_pid=$!
# Samples on whole-second ticks from the start, however long a sample takes.
load_start=$EPOCHREALTIME
tick=0
while process_running "$wrk_pid"; do
  sample_rss "$tick"
  tick=$((tick + 1))
  delay=$(awk -v start="$load_start" -v tick="$tick" -v now="$EPOCHREALTIME" \
    'BEGIN { delay = start + tick - now; printf "%.3f", (delay > 0 ? delay : 0) }')
  sleep "$delay"
done
wrk_status=0
wait "$wrk_pid" || wrk_status=$?
wrk_pid=

final_workers=$(list_workers)
master_alive_after_load=0
process_running "$nginx_pid" && master_alive_after_load=1

section "Stopping nginx (SIGQUIT, graceful)"
if ((master_alive_after_load)); then
  kill -QUIT "$nginx_pid"
  for _ in {1..300}; do
    process_running "$nginx_pid" || break
    sleep 0.1
  done
  if process_running "$nginx_pid"; then
    echo "nginx did not exit within 30 s of SIGQUIT; sending SIGKILL"
    kill -KILL "$nginx_pid" 2>/dev/null || true
  fi
fi
nginx_status=0
wait "$nginx_pid" || nginx_status=$?
echo "nginx exited with status $nginx_status"
nginx_pid_for_report=$nginx_pid
nginx_pid=

# ---------------------------------------------------------------------------
# Report.

section "wrk output"
cat "$wrk_output"

section "wrk summary (from the replay script)"
declare -A wrk_result=()
if [[ -f $wrk_summary ]]; then
  while IFS='=' read -r key value; do
    wrk_result[$key]=$value
  done <"$wrk_summary"
fi
requests=${wrk_result[requests]:-0}
# Prints a microsecond value from the summary in milliseconds.
milliseconds() {
  awk -v value="${wrk_result[$1]:-0}" 'BEGIN { printf "%.2f", value / 1000 }'
}
socket_errors=0
for kind in connect read write timeout; do
  socket_errors=$((socket_errors + ${wrk_result[errors_$kind]:-0}))
done
if [[ -f $wrk_summary ]]; then
  awk -v requests="$requests" -v us="${wrk_result[duration_us]:-0}" \
    -v bytes="${wrk_result[bytes]:-0}" 'BEGIN {
      seconds = us > 0 ? us / 1e6 : 1
      printf "requests %d in %.1f s: %.0f requests/s, %.2f MiB/s received\n",
             requests, us / 1e6, requests / seconds, bytes / 1048576 / seconds
    }'
  echo "latency (ms): mean $(milliseconds latency_mean_us), p50 $(milliseconds latency_p50_us)," \
    "p90 $(milliseconds latency_p90_us), p99 $(milliseconds latency_p99_us)," \
    "p99.9 $(milliseconds latency_p99_9_us), max $(milliseconds latency_max_us)"
  echo "errors: connect ${wrk_result[errors_connect]}, read ${wrk_result[errors_read]}," \
    "write ${wrk_result[errors_write]}, timeout ${wrk_result[errors_timeout]}," \
    "HTTP status >= 400 ${wrk_result[errors_status]}"
else
  echo "missing: wrk wrote no summary to $wrk_summary"
fi

section "Responses logged by the gateway (status: count)"
awk '{ count[$1]++ } END { for (status in count) print status ": " count[status] }' \
  "$access_log" | sort
logged=$(wc -l <"$access_log")
non_2xx=$(awk '$1 !~ /^2/ && $1 != 499' "$access_log" | wc -l)
# 499: wrk closed the connection while the request was in flight, which
# happens to at most one request per connection when the run ends.
closed_in_flight=$(awk '$1 == 499' "$access_log" | wc -l)
echo "$logged requests logged: wrk's $requests, the first request, and those in flight when wrk stopped"

section "Resident memory of the nginx processes (VmRSS every second during the load)"
python3 "$job_files/report.py" rss "$samples_file" ||
  check 0 "report.py failed to summarize $samples_file"

section "Allocator statistics at exit (MEMWARD_CONF=stats_at_exit=true)"
python3 "$job_files/report.py" allocator-stats "$stderr_file" "$samples_file" ||
  check 0 "report.py failed to summarize the statistics in $stderr_file"
stats_dumps=$(grep -c "^___ Begin jemalloc statistics ___$" "$stderr_file" || true)
stats_totals=$(grep -c "^Allocated: " "$stderr_file" || true)
process_count=${#memward_mapped[@]}
echo "full statistics and nginx's messages: $stderr_file"

section "Checks"
mapped_count=0
for pid in "${!memward_mapped[@]}"; do
  [[ ${memward_mapped[$pid]} == yes ]] && mapped_count=$((mapped_count + 1))
done
check $((process_count > 0 && mapped_count == process_count)) \
  "libmemward_preload.so mapped in $mapped_count of $process_count nginx processes"
check $((wrk_status == 0 && ${wrk_result[requests]:-0} > 0)) \
  "wrk exited with status $wrk_status after $requests requests"
check $((socket_errors == 0)) "wrk socket errors: $socket_errors"
check $((${wrk_result[errors_status]:-1} == 0)) \
  "responses with HTTP status >= 400 seen by wrk: ${wrk_result[errors_status]:-unknown}"
check $((non_2xx == 0)) "non-2xx responses in the gateway's log: $non_2xx"
check $((closed_in_flight <= connections)) \
  "requests closed in flight by wrk at the end (499): $closed_in_flight, at most $connections"
crashes=$(grep -c "exited on signal" "$stderr_file" || true)
check $((crashes == 0)) "nginx worker crashes logged: $crashes"
check $((master_alive_after_load)) "nginx master alive after the load"
same_workers=0
[[ $initial_workers == "$final_workers" ]] && same_workers=1
check "$same_workers" \
  "same worker processes before and after the load (${final_workers//$'\n'/ })"
check $((nginx_status == 0)) "nginx exited with status $nginx_status after SIGQUIT"
alerts=$(grep -cE "\[(alert|crit|emerg)\]" "$stderr_file" || true)
check $((alerts == 0)) "nginx alert, crit or emerg messages: $alerts"
check $((stats_dumps == process_count && stats_totals == process_count)) \
  "allocator statistics printed at exit by $stats_totals of $process_count processes"

section "Data"
cat <<'EOF'
Trace: Azure LLM inference trace 2023, conversation service
(data/azure-llm-inference-2023/AzureLLMInferenceTrace_conv.csv), licensed
under CC BY 4.0. Pratyush Patel, Esha Choukse, Chaojie Zhang, Aashaka Shah,
Íñigo Goiri, Saeed Maleki, Ricardo Bianchini, "Splitwise: Efficient
generative LLM inference using phase splitting", ISCA 2024.
EOF

echo
echo "job folder: $work_dir (nginx master was pid $nginx_pid_for_report)"
echo "job took $((SECONDS - job_start)) s"
if ((${#failures[@]} > 0)); then
  echo "main job FAILED: ${#failures[@]} check(s) failed"
  exit 1
fi
echo "main job passed: all checks ok"
