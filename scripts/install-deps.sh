#!/usr/bin/env bash
# Installs the Debian 12 packages that memward builds, tests and benchmarks
# against. Run as root (or through sudo); safe to run again.
set -euo pipefail

packages=(
  # build
  build-essential cmake ninja-build pkg-config binutils
  # engine and libraries
  libjemalloc-dev libjemalloc2 libunwind-dev libabsl-dev zlib1g-dev
  libboost1.81-dev libseccomp-dev
  # symbolization of heap profiles (libdw.so.1 is loaded with dlopen; the
  # headers are needed to build)
  libdw-dev
  # tests and benchmarks
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  # `go tool pprof` reads the exported heap profiles in the tests
  golang-go
  # clang's libFuzzer runs the admin request parser's fuzz target in the tests
  clang libclang-rt-14-dev
  # peers measured in the benchmarks
  libgoogle-perftools-dev libmimalloc-dev
  # the gateway footprint benchmark's chart (bench/gateway/footprint.py)
  python3-matplotlib
  # real programs run under LD_PRELOAD in the integration tests
  nginx-light redis-server redis-tools wrk python3 coreutils time procps curl man-db openssl
)

if [[ $(id -u) -ne 0 ]]; then
  exec sudo "$0" "$@"
fi

export DEBIAN_FRONTEND=noninteractive
missing=()
for package in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
    missing+=("$package")
done
if [[ ${#missing[@]} -gt 0 ]]; then
  echo "installing ${#missing[@]} of ${#packages[@]} packages: ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "all ${#packages[@]} packages are installed"
fi
# The Debian packages enable and start system services; the tests start their
# own instances on loopback ports, so the system ones are stopped if running.
for service in nginx redis-server; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$service" 2>/dev/null; then
    systemctl stop "$service" || true
  fi
done
