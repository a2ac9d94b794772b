#!/usr/bin/env python3
"""Runs pressure_bench in each configuration and prints a Markdown table.

Usage: run_pressure_bench.py [--build-dir build] [--quick]

Each run creates a child of this process's memory cgroup (root needed).
A run that the kernel's OOM killer ends leaves its cgroup directory
behind; the script removes such directories after each run.
"""
import argparse
import glob
import json
import os
import subprocess
import sys

TIMER_ONLY = "pressure_wake_bytes=0,pressure_forecast=false"
WAKE_ONLY = "pressure_forecast=false"
NO_LEAD = "pressure_lead=0"

# (name, mode, limit MiB, rate MiB/s, seconds, MEMWARD_CONF). The cycles
# rows run without the lead: with it, the reclaimers are mostly asked
# before the crossing, and there is no reaction to time.
CONFIGURATIONS = [
    ("timer only, 250 ms", "cycles", 256, 100, 30, TIMER_ONLY),
    ("timer + allocator wake-up", "cycles", 256, 100, 60, WAKE_ONLY),
    ("timer + wake-up + forecast reads", "cycles", 256, 100, 60, NO_LEAD),
    ("timer + wake-up + forecast reads", "cycles", 64, 100, 60, NO_LEAD),
    ("timer only, 250 ms", "steady", 256, 100, 10, TIMER_ONLY),
    ("timer + allocator wake-up", "steady", 256, 100, 10, WAKE_ONLY),
    ("timer + wake-up + forecast reads", "steady", 256, 100, 10, NO_LEAD),
    ("defaults (forecast, 100 ms lead)", "steady", 256, 100, 10, ""),
    ("timer + wake-up + forecast reads", "steady", 64, 100, 10, NO_LEAD),
    ("defaults (forecast, 100 ms lead)", "steady", 64, 100, 10, ""),
]


def own_memory_cgroup():
    with open("/proc/self/cgroup") as lines:
        for line in lines:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if "memory" in controllers.split(","):
                return "/sys/fs/cgroup/memory" + path
    return None


def remove_leftovers():
    parent = own_memory_cgroup()
    if parent is None:
        return
    for directory in glob.glob(os.path.join(parent, "memward-pressure-bench-*")):
        try:
            os.rmdir(directory)
        except OSError as error:
            print(f"warning: could not remove {directory}: {error}", file=sys.stderr)


def run(binary, mode, limit, rate, seconds, conf):
    environment = dict(os.environ)
    environment["MEMWARD_CONF"] = conf
    result = subprocess.run([binary, mode, str(limit), str(rate), str(seconds)],
                            env=environment, capture_output=True, text=True,
                            timeout=seconds * 3 + 30)
    remove_leftovers()
    if result.returncode < 0:
        return {"killed_by_signal": -result.returncode}
    if result.returncode != 0:
        raise RuntimeError(f"pressure_bench failed ({result.returncode}): {result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", default="build")
    parser.add_argument("--quick", action="store_true", help="run each configuration for 5 s")
    arguments = parser.parse_args()
    binary = os.path.join(arguments.build_dir, "bin", "pressure_bench")
    print(f"load average before the runs: {os.getloadavg()[0]:.2f}")
    print()
    print("| mode | wake-up sources | limit | crossings | latency p50 / p99 / max (ms) "
          "| peak | over soft (80 %) | over limit | warden CPU |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, mode, limit, rate, seconds, conf in CONFIGURATIONS:
        if arguments.quick:
            seconds = 5
        row = run(binary, mode, limit, rate, seconds, conf)
        if "killed_by_signal" in row:
            print(f"| {mode} | {name} | {limit} MiB | | | killed by signal "
                  f"{row['killed_by_signal']} (OOM) | | | |")
            continue
        latency = (f"{row['latency_ms_p50']:.1f} / {row['latency_ms_p99']:.1f} / "
                   f"{row['latency_ms_max']:.1f}") if mode == "cycles" else "n/a"
        print(f"| {mode} | {name} | {limit} MiB | {row['crossings']} | {latency} "
              f"| {row['peak_mib']:.1f} MiB | {row['overshoot_over_soft_mib']:.1f} MiB "
              f"| {row['overshoot_over_limit_mib']:.1f} MiB "
              f"| {row['warden_cpu_percent']:.1f} % |")
        sys.stdout.flush()
    print()
    print(f"load average after the runs: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
