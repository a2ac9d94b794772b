#!/usr/bin/python3
"""Measure what allocation sampling costs: memward at the default interval against sampling off.

Runs each workload (bench/workloads) under LD_PRELOAD of libmemward_preload.so,
alternating MEMWARD_CONF=sample_interval=0 and the default interval, and
prints the median of the workload's own time, of its CPU time (user + system,
from wait4) and of its peak RSS, with the ratio on/off. Then replays a slice
of the Azure LLM conversation trace through memward-gateway (bench/gateway)
both ways, where the load is fixed by the trace, so the cost shows up as the
gateway's CPU time per answered request.

    /usr/bin/python3 bench/sampling_overhead.py --build-dir build --repetitions 5

With --instructions it also counts, with callgrind (valgrind), the
instructions each workload's small preset executes both ways: a measure
that a machine shared with other jobs does not disturb.

Uses only the Python standard library. Build the programs first:
BUILD_TARGETS="memward_preload workload_server workload_producer_consumer
workload_thread_churn workload_fragmentation workload_large_blocks
memward-gateway memward-mock-upstream memward-trace-replay" scripts/build.sh
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "gateway"))
import gateway_run as gateway  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent

# Workload arguments: run_benchmarks.py's large presets, each 0.1 to 3.5 s
# on an idle 2-CPU machine.
WORKLOADS = {
    "server": ["--preset=large"],
    "producer_consumer": ["--preset=large"],
    "thread_churn": ["--preset=large"],
    "fragmentation": ["--preset=large"],
    "large_blocks": ["--preset=large"],
}

# MEMWARD_CONF of the two variants; an empty string keeps every default.
VARIANTS = {"off": "sample_interval=0", "on": ""}

RUN_TIMEOUT_SECONDS = 300


def variant_environment(preload: Path, conf: str) -> dict:
    """This process's environment with memward preloaded and MEMWARD_CONF set to `conf`."""
    env = dict(os.environ)
    env["LD_PRELOAD"] = str(preload)
    env.pop("MEMWARD_CONF", None)
    if conf:
        env["MEMWARD_CONF"] = conf
    return env


def run_workload(program: Path, argv: list, preload: Path, conf: str) -> dict:
    """Run one workload; return its own seconds, its CPU seconds and its peak RSS."""
    env = variant_environment(preload, conf)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        process = subprocess.Popen([str(program), *argv], stdout=out, stderr=err, env=env)
        deadline = time.monotonic() + RUN_TIMEOUT_SECONDS
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid != 0:
                break
            if time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"{program.name} {conf!r} timed out after {RUN_TIMEOUT_SECONDS} s")
            time.sleep(0.01)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"{program.name} with MEMWARD_CONF={conf!r} failed with status "
                           f"{process.returncode}: {stderr.strip()[-500:]}")
    match = re.search(r"seconds=([0-9.]+)", stdout)
    if match is None:
        raise RuntimeError(f"{program.name} printed no seconds= field: {stdout.strip()[-300:]}")
    return {
        "seconds": float(match.group(1)),
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "maxrss_mib": usage.ru_maxrss / 1024,
    }


def count_instructions(program: Path, preload: Path, conf: str, scratch: Path) -> int:
    """Run one workload's small preset under callgrind; return the instructions it executed."""
    env = variant_environment(preload, conf)
    argv = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={scratch / 'callgrind.out'}",
            str(program), "--preset=small"]
    completed = subprocess.run(argv, env=env, capture_output=True, text=True,
                               timeout=RUN_TIMEOUT_SECONDS * 4)
    match = re.search(r"I\s+refs:\s+([0-9,]+)", completed.stderr)
    if completed.returncode != 0 or match is None:
        raise RuntimeError(f"callgrind on {program.name} with MEMWARD_CONF={conf!r} failed "
                           f"(status {completed.returncode}): {completed.stderr.strip()[-500:]}")
    return int(match.group(1).replace(",", ""))


def measure_instructions(args, build_dir: Path, preload: Path) -> list:
    rows = []
    with tempfile.TemporaryDirectory(prefix="memward-sampling-") as scratch:
        for name in args.workloads.split(","):
            program = build_dir / "bin" / f"workload_{name}"
            counts = {variant: count_instructions(program, preload, conf, Path(scratch))
                      for variant, conf in VARIANTS.items()}
            rows.append({"name": name, **counts})
            print(f"  {name} under callgrind: done", file=sys.stderr, flush=True)
    return rows


def ratio(on: float, off: float) -> str:
    return f"{on / off:.3f}" if off > 0 else "n/a"


def measure_workloads(args, build_dir: Path, preload: Path) -> list:
    rows = []
    for name in args.workloads.split(","):
        program = build_dir / "bin" / f"workload_{name}"
        if name not in WORKLOADS or not program.exists():
            raise RuntimeError(f"unknown or unbuilt workload {name!r} (looked for {program})")
        runs = {variant: [] for variant in VARIANTS}
        # Alternating the variants spreads slow drifts of the machine over both.
        for repetition in range(args.repetitions):
            order = list(VARIANTS) if repetition % 2 == 0 else list(reversed(VARIANTS))
            for variant in order:
                runs[variant].append(run_workload(program, WORKLOADS[name], preload, VARIANTS[variant]))
        row = {"name": name}
        for variant, results in runs.items():
            for key in ("seconds", "cpu_seconds", "maxrss_mib"):
                row[f"{key}_{variant}"] = statistics.median(result[key] for result in results)
            row[f"seconds_spread_{variant}"] = (min(r["seconds"] for r in results),
                                                max(r["seconds"] for r in results))
        rows.append(row)
        print(f"  {name}: done", file=sys.stderr, flush=True)
    return rows


def read_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process, from /proc/PID/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def replay_once(args, build: gateway.Build, conf: str, work_dir: Path) -> dict:
    work_dir.mkdir(parents=True, exist_ok=True)
    mock, mock_port = gateway.start_mock(build, work_dir)
    program = None
    try:
        config = work_dir / "gateway.json"
        gateway.write_gateway_config(config, gateway.GatewaySettings(upstream_port=mock_port))
        program, port = gateway.start_gateway(build, work_dir, config, preload=str(build.preload),
                                              memward_conf=conf)
        cpu_before = read_cpu_seconds(program.pid)
        summary = gateway.run_replay(build, work_dir, port, config, program.pid,
                                     start_s=args.trace_start_s, duration_s=args.trace_duration_s,
                                     compression=args.time_compression)
        cpu = read_cpu_seconds(program.pid) - cpu_before
    finally:
        if program is not None:
            program.stop()
        mock.stop()
    ok = sum(count for status, count in summary["by_status"].items() if str(status) == "200")
    return {
        "cpu_ms_per_ok": 1000 * cpu / ok if ok else float("nan"),
        "ok_per_s": summary["ok_per_s"],
        "p99_ms": summary["latency_ms"]["p99"],
        "rss_mean_mib": summary["rss_mean_bytes"] / 1048576,
    }


def measure_gateway(args, build_dir: Path) -> dict:
    build = gateway.Build(build_dir)
    build.check()
    runs = {variant: [] for variant in VARIANTS}
    with tempfile.TemporaryDirectory(prefix="memward-sampling-") as scratch:
        for repetition in range(args.gateway_repetitions):
            order = list(VARIANTS) if repetition % 2 == 0 else list(reversed(VARIANTS))
            for variant in order:
                work_dir = Path(scratch) / f"{variant}-{repetition}"
                runs[variant].append(replay_once(args, build, VARIANTS[variant], work_dir))
                print(f"  gateway {variant} run {repetition + 1}: {runs[variant][-1]}",
                      file=sys.stderr, flush=True)
    return {variant: {key: statistics.median(run[key] for run in results) for key in results[0]}
            for variant, results in runs.items()}


def print_instruction_table(rows: list) -> None:
    print("\nInstructions of each workload's small preset, one callgrind run each way\n")
    print("| workload | instructions off | instructions on | on/off |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['name']} | {row['off']:,} | {row['on']:,} | {row['on'] / row['off']:.4f} |")


def print_tables(rows: list, gateway_result: dict, args) -> None:
    print(f"Workloads, median of {args.repetitions} runs each (off: `sample_interval=0`, "
          "on: default `512k`)\n")
    print("| workload | time off (s) | time on (s) | time on/off | CPU off (s) | CPU on (s) "
          "| CPU on/off | peak RSS off/on (MiB) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        print(f"| {row['name']} | {row['seconds_off']:.3f} | {row['seconds_on']:.3f} | "
              f"{ratio(row['seconds_on'], row['seconds_off'])} | {row['cpu_seconds_off']:.3f} | "
              f"{row['cpu_seconds_on']:.3f} | {ratio(row['cpu_seconds_on'], row['cpu_seconds_off'])} | "
              f"{row['maxrss_mib_off']:.1f} / {row['maxrss_mib_on']:.1f} |")
    print("\nRange of the workload's own time over the runs (s):\n")
    print("| workload | off | on |")
    print("| --- | --- | --- |")
    for row in rows:
        off, on = row["seconds_spread_off"], row["seconds_spread_on"]
        print(f"| {row['name']} | {off[0]:.3f} to {off[1]:.3f} | {on[0]:.3f} to {on[1]:.3f} |")
    if not gateway_result:
        return
    off, on = gateway_result["off"], gateway_result["on"]
    print(f"\nGateway, median of {args.gateway_repetitions} replays each of trace seconds "
          f"{args.trace_start_s:g} to {args.trace_start_s + args.trace_duration_s:g}, "
          f"{args.time_compression:g}x compressed\n")
    print("| measure | off | on | on/off |")
    print("| --- | --- | --- | --- |")
    for key, label in (("cpu_ms_per_ok", "gateway CPU per answered request (ms)"),
                       ("ok_per_s", "answered requests per second"),
                       ("p99_ms", "p99 latency (ms)"), ("rss_mean_mib", "mean RSS (MiB)")):
        print(f"| {label} | {off[key]:.3f} | {on[key]:.3f} | {ratio(on[key], off[key])} |")
    print("\n" + gateway.TRACE_ATTRIBUTION)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", type=Path, default=REPO_ROOT / "build",
                        help="the build folder with bin/ and lib/ (default: build)")
    parser.add_argument("--repetitions", type=int, default=5,
                        help="runs of each workload per variant (default: 5)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help="comma-separated workloads (default: all)")
    parser.add_argument("--instructions", action="store_true",
                        help="also count instructions with callgrind (needs valgrind)")
    parser.add_argument("--gateway-repetitions", type=int, default=3,
                        help="replays per variant; 0 skips the gateway (default: 3)")
    parser.add_argument("--trace-start-s", type=float, default=0,
                        help="first trace second replayed (default: 0)")
    parser.add_argument("--trace-duration-s", type=float, default=120,
                        help="trace seconds replayed (default: 120)")
    parser.add_argument("--time-compression", type=float, default=10,
                        help="trace time divided by this (default: 10)")
    args = parser.parse_args()
    if args.repetitions < 1:
        parser.error(f"--repetitions must be at least 1, got {args.repetitions}")
    build_dir = args.build_dir.resolve()
    preload = build_dir / "lib" / "libmemward_preload.so"
    if not preload.exists():
        parser.error(f"{preload} not found; build memward_preload with scripts/build.sh")

    rows = measure_workloads(args, build_dir, preload) if args.workloads else []
    instruction_rows = measure_instructions(args, build_dir, preload) if args.instructions else []
    gateway_result = measure_gateway(args, build_dir) if args.gateway_repetitions > 0 else {}
    print_tables(rows, gateway_result, args)
    if instruction_rows:
        print_instruction_table(instruction_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
