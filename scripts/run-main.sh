#!/usr/bin/env bash
# The main job: installs the packages, builds memward and the gateway, and
# runs memward-gateway under LD_PRELOAD=libmemward_preload.so in front of
# memward-mock-upstream, while memward-trace-replay replays about a minute of
# the Azure LLM conversation trace against it. Prints requests by status,
# latency percentiles, the gateway's average and peak resident memory, the
# top tenants by peak, leak suspects and the memwardctl commands to look
# further, then stops both servers with SIGTERM (scripts/main-job/main_job.py).
#
# Made for a fresh Debian 12 machine, run as root. Everything listens on
# 127.0.0.1. Exits 0 only if every check of the job passes.
set -euo pipefail

usage() {
  cat <<'EOF_USAGE'
usage: run-main.sh [options] [-- BUILD_OPTIONS...]

Builds memward and the gateway, then replays a slice of the Azure LLM
conversation trace through memward-gateway (with memward preloaded) to
memward-mock-upstream, and prints a summary.

options:
  --trace-seconds N     length of the trace slice in trace seconds (default 600)
  --time-compression X  trace seconds replayed per second (default 10, so about a minute)
  --hold-s N            keep the gateway running N seconds after the replay, to try
                        the memwardctl commands it prints (default 0)
  --skip-install        do not run scripts/install-deps.sh
  --skip-build          do not run scripts/build.sh; use the existing build
  -h, --help            show this help

BUILD_OPTIONS go to scripts/build.sh, which hands them to cmake.
BUILD_DIR selects the build folder (default: build/ in the repository).
The job's files stay in a new /tmp/memward-main.* folder, named at the end.
EOF_USAGE
}

fail_usage() {
  echo "run-main.sh: $1" >&2
  echo "Run 'run-main.sh --help' for the options." >&2
  exit 2
}

job_options=()
run_install=1
run_build=1
build_options=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --trace-seconds | --time-compression | --hold-s)
      [[ $# -ge 2 ]] || fail_usage "$1 needs a value"
      job_options+=("$1" "$2")
      shift 2
      ;;
    --skip-install) run_install=0; shift ;;
    --skip-build) run_build=0; shift ;;
    -h | --help) usage; exit 0 ;;
    --) shift; build_options=("$@"); break ;;
    *) fail_usage "unknown option '$1'" ;;
  esac
done

root=$(cd "$(dirname "$0")/.." && pwd)
# Resolved against the caller's folder, as build.sh resolves it.
build_dir=$(realpath -m -- "${BUILD_DIR:-$root/build}")
export BUILD_DIR=$build_dir

if ((run_install)); then
  printf '\n== Installing packages (scripts/install-deps.sh) ==\n'
  "$root/scripts/install-deps.sh"
fi
if ((run_build)); then
  printf '\n== Building memward and the gateway in %s (scripts/build.sh) ==\n' "$build_dir"
  build_start=$SECONDS
  BUILD_TARGETS="memward_preload memward-settings memward-gateway memward-mock-upstream memward-trace-replay" \
    "$root/scripts/build.sh" "${build_options[@]}"
  echo "build took $((SECONDS - build_start)) s"
fi

# Debian's python3; the job uses only its standard library.
exec /usr/bin/python3 "$root/scripts/main-job/main_job.py" --build-dir "$build_dir" "${job_options[@]}"
