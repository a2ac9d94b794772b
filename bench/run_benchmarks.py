#!/usr/bin/python3
"""Run the micro benchmarks and workloads under each allocator and write the report.

Every program is started once per allocator and repetition: glibc's malloc with
no preload, then jemalloc, tcmalloc, mimalloc and memward through LD_PRELOAD.
The allocators take turns inside each repetition, and the order rotates from
one repetition to the next, so a slow phase of the machine hits all of them.
Each number in the report is the median over the repetitions.

Example, after building with BUILD_DIR=build scripts/build.sh:

    /usr/bin/python3 bench/run_benchmarks.py --build-dir build

writes docs/benchmarks.md. --quick runs fewer repetitions with smaller inputs.
Uses only the Python standard library.
"""

import argparse
import json
import os
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import benchmark_report  # noqa: E402  (lives next to this script)

REPO_ROOT = Path(__file__).resolve().parent.parent
SYSTEM_LIB = Path("/usr/lib/x86_64-linux-gnu")

# The first file found is used. tcmalloc_minimal is gperftools' tcmalloc
# without the heap profiler and heap checker, so no profiling hook adds cost.
PEER_LIBRARIES = {
    "jemalloc": ["libjemalloc.so.2"],
    "tcmalloc": ["libtcmalloc_minimal.so.4", "libtcmalloc.so.4"],
    "mimalloc": ["libmimalloc.so.2"],
}

# Workload arguments for the report and for --quick. The large preset is sized
# so that each run took 0.1 to 3.5 s on an idle 2-CPU AMD EPYC virtual machine.
WORKLOADS = {
    "server": (["--preset=large"], ["--preset=large", "--requests=60000"]),
    "producer_consumer": (["--preset=large"], ["--preset=large", "--messages=200000"]),
    "thread_churn": (["--preset=large"], ["--preset=large", "--threads=2000"]),
    "fragmentation": (["--preset=large"], ["--preset=large", "--rounds=500000", "--slots=20000"]),
    "large_blocks": (["--preset=large"], ["--preset=large", "--iterations=50"]),
}

# How long the RSS probe waits before reading its RSS, so that a background
# thread an allocator starts lazily is counted (--smoke: 10 ms).
PROBE_WAIT_MS = 200
SMOKE_PROBE_WAIT_MS = 10

# A run that takes longer than this is killed and reported as failed.
RUN_TIMEOUT_SECONDS = 300

# memward with sampling off, measured in the micro benchmarks only.
UNSAMPLED = benchmark_report.UNSAMPLED


@dataclass
class Allocator:
    """An allocator under test: its report name and the library to preload."""

    name: str
    library: Path | None  # None: glibc's malloc, no preload
    extra_env: dict = field(default_factory=dict)

    def assignments(self):
        """Return the NAME=VALUE environment settings for the measured program."""
        settings = dict(self.extra_env)
        if self.library is not None:
            settings["LD_PRELOAD"] = str(self.library)
        return settings


@dataclass
class RunResult:
    """One measured run of one program under one allocator."""

    wall_seconds: float
    cpu_seconds: float  # user + system, of the program and the threads it ran
    maxrss_kib: int
    exit_status: int
    term_signal: int
    stdout: str
    stderr: str

    @property
    def failed(self):
        return self.exit_status != 0 or self.term_signal != 0

    def failure_summary(self):
        """Describe how the run failed, with the last lines of its stderr."""
        if self.term_signal:
            how = f"killed by signal {self.term_signal}"
        else:
            how = f"exit status {self.exit_status}"
        tail = " | ".join(self.stderr.strip().splitlines()[-3:])
        return f"{how}: {tail}" if tail else how


class Runner:
    """Starts programs through the run_measured launcher and collects results."""

    def __init__(self, launcher: Path, verbose: bool):
        self.launcher = launcher
        self.verbose = verbose

    def run(self, allocator: Allocator, argv):
        with tempfile.TemporaryDirectory(prefix="memward-bench-") as scratch:
            report_path = Path(scratch) / "report"
            command = [str(self.launcher), str(report_path)]
            for name, value in allocator.assignments().items():
                command += ["-e", f"{name}={value}"]
            command += ["--"] + [str(part) for part in argv]
            if self.verbose:
                print("   ", allocator.name, shlex.join(command), file=sys.stderr)

            with open(Path(scratch) / "stdout", "w+") as out, open(Path(scratch) / "stderr", "w+") as err:
                # A session of its own, so that a timeout can end the launcher
                # and the program it started together.
                process = subprocess.Popen(command, stdout=out, stderr=err, start_new_session=True)
                timed_out = threading.Event()
                timer = threading.Timer(RUN_TIMEOUT_SECONDS, _kill_group,
                                        [process.pid, timed_out])
                timer.start()
                try:
                    _, status, _ = os.wait4(process.pid, 0)
                finally:
                    timer.cancel()
                process.returncode = os.waitstatus_to_exitcode(status)
                out.seek(0)
                err.seek(0)
                stdout, stderr = out.read(), err.read()

            fields = _parse_fields(report_path.read_text()) if report_path.exists() else {}
            if timed_out.is_set():
                return RunResult(0.0, 0.0, 0, 1, 0, stdout,
                                 stderr + f"\ntimed out after {RUN_TIMEOUT_SECONDS} s and was killed")
            if not fields:
                return RunResult(0.0, 0.0, 0, process.returncode or 1, 0, stdout,
                                 stderr + "\nrun_measured wrote no report")
            result = RunResult(
                wall_seconds=float(fields["wall_seconds"]),
                cpu_seconds=float(fields["user_seconds"]) + float(fields["system_seconds"]),
                maxrss_kib=int(fields["maxrss_kib"]),
                exit_status=int(fields["exit_status"]),
                term_signal=int(fields["term_signal"]),
                stdout=stdout,
                stderr=stderr,
            )
            # ld.so only warns when a preload cannot be loaded and then runs the
            # program with glibc's malloc: count that as a failure.
            if "cannot be preloaded" in stderr and not result.failed:
                result.exit_status = 1
            return result


def _kill_group(pid, timed_out):
    """Kill the launcher's process group, which it shares with the program it started."""
    timed_out.set()
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _parse_fields(text):
    """Parse "key=value" words from text into a dict of strings."""
    fields = {}
    for word in text.split():
        if "=" in word:
            key, value = word.split("=", 1)
            fields[key] = value
    return fields


def find_peer(name):
    for candidate in PEER_LIBRARIES[name]:
        path = SYSTEM_LIB / candidate
        if path.exists():
            return path
    names = ", ".join(PEER_LIBRARIES[name])
    raise SystemExit(f"error: {name} not found ({names} in {SYSTEM_LIB}); "
                     "run scripts/install-deps.sh")


def parse_arguments():
    parser = argparse.ArgumentParser(
        description="Run memward's micro benchmarks and workloads under glibc, jemalloc, "
                    "tcmalloc, mimalloc and memward, and write docs/benchmarks.md.")
    parser.add_argument("--build-dir", type=Path, default=REPO_ROOT / "build",
                        help="CMake build directory with bin/ and lib/ (default: build)")
    parser.add_argument("--bin-dir", type=Path,
                        help="directory with the bench programs (default: BUILD_DIR/bin)")
    parser.add_argument("--memward", type=Path,
                        help="libmemward_preload.so to measure "
                             "(default: BUILD_DIR/lib/libmemward_preload.so)")
    parser.add_argument("--memward-conf", default=None,
                        help="MEMWARD_CONF value for the memward runs (default: unset)")
    parser.add_argument("--peers-only", action="store_true",
                        help="measure the four peers only, for when memward is not built")
    parser.add_argument("--quick", action="store_true",
                        help="3 repetitions, shorter micro benchmarks and smaller workloads")
    parser.add_argument("--smoke", action="store_true",
                        help="check that the runner works: one repetition, small presets, two "
                             "micro benchmarks; the numbers mean nothing")
    parser.add_argument("--repetitions", type=int,
                        help="runs of each program per allocator (default: 5, --quick: 3)")
    parser.add_argument("--micro-min-time", type=float,
                        help="seconds Google Benchmark spends on each micro benchmark "
                             "(default: 0.05, --quick: 0.02)")
    parser.add_argument("--micro-filter", default=None,
                        help="regular expression passed to --benchmark_filter")
    parser.add_argument("--skip-micro", action="store_true", help="do not run the micro benchmarks")
    parser.add_argument("--workloads", default=",".join(WORKLOADS),
                        help="comma-separated workloads to run, or 'none' "
                             f"(default: {','.join(WORKLOADS)})")
    parser.add_argument("--output", type=Path, default=REPO_ROOT / "docs" / "benchmarks.md",
                        help="Markdown report to write (default: docs/benchmarks.md)")
    parser.add_argument("--notes", type=Path,
                        default=Path(__file__).resolve().parent / "report_notes.md",
                        help="Markdown appended to the report, such as the analysis of targets "
                             "missed (default: bench/report_notes.md; 'none' for no notes)")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write every measured value to this JSON file")
    parser.add_argument("--from-json", type=Path, default=None,
                        help="run nothing: write the report again from a file that --json "
                             "wrote, with the current notes")
    parser.add_argument("--verbose", action="store_true", help="print each command as it starts")
    arguments = parser.parse_args()

    if arguments.smoke:
        arguments.quick = True
        arguments.repetitions = arguments.repetitions or 1
        arguments.micro_min_time = arguments.micro_min_time or 0.01
        arguments.micro_filter = arguments.micro_filter or "BM_MallocFreePair/(16|65536)/.*threads:1"
    arguments.probe_wait_ms = SMOKE_PROBE_WAIT_MS if arguments.smoke else PROBE_WAIT_MS
    if arguments.repetitions is None:
        arguments.repetitions = 3 if arguments.quick else 5
    if arguments.micro_min_time is None:
        arguments.micro_min_time = 0.02 if arguments.quick else 0.05
    if arguments.repetitions < 1:
        parser.error(f"--repetitions must be at least 1, got {arguments.repetitions}")
    if arguments.micro_min_time <= 0:
        parser.error(f"--micro-min-time must be positive, got {arguments.micro_min_time}")
    if arguments.workloads == "none":
        arguments.workloads = []
    else:
        arguments.workloads = [name for name in arguments.workloads.split(",") if name]
        unknown = [name for name in arguments.workloads if name not in WORKLOADS]
        if unknown:
            parser.error(f"unknown workload(s) {', '.join(unknown)}; "
                         f"expected some of {', '.join(WORKLOADS)}")
    arguments.build_dir = arguments.build_dir.resolve()
    if arguments.bin_dir is None:
        arguments.bin_dir = arguments.build_dir / "bin"
    if arguments.memward is None:
        arguments.memward = arguments.build_dir / "lib" / "libmemward_preload.so"
    return arguments


def build_allocators(arguments):
    allocators = [Allocator("glibc", None)]
    for name in PEER_LIBRARIES:
        allocators.append(Allocator(name, find_peer(name)))
    if arguments.peers_only:
        return allocators
    if not arguments.memward.exists():
        raise SystemExit(f"error: {arguments.memward} not found; build memward "
                         "(scripts/build.sh), pass --memward PATH, or use --peers-only")
    extra = {"MEMWARD_EXPECT_LOADED": "1"}
    if arguments.memward_conf is not None:
        extra["MEMWARD_CONF"] = arguments.memward_conf
    allocators.append(Allocator("memward", arguments.memward.resolve(), extra))
    # The same library with sampling off, for the micro benchmarks only: the
    # fast-path target measures the allocator's path, and docs/
    # sampling-benchmarks.md measures what sampling adds.
    unsampled = dict(extra)
    unsampled["MEMWARD_CONF"] = ",".join(
        part for part in (arguments.memward_conf, "sample_interval=0") if part)
    allocators.append(Allocator(UNSAMPLED, arguments.memward.resolve(), unsampled))
    return allocators


def whole_run_allocators(allocators):
    """Return the allocators that run every program, not only the micro benchmarks."""
    return [a for a in allocators if a.name != UNSAMPLED]


def require_binary(path):
    if not path.exists():
        raise SystemExit(f"error: {path} not found; build the bench targets first "
                         "(scripts/build.sh, or cmake --build BUILD_DIR)")
    return path


def workload_arguments(arguments, workload):
    """Return the command-line arguments of one workload for this run's mode."""
    if arguments.smoke:
        return ["--preset=small"]
    report_arguments, quick_arguments = WORKLOADS[workload]
    return quick_arguments if arguments.quick else report_arguments


TIME_UNIT_NANOSECONDS = {"ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9}


def micro_nanoseconds(json_text, allocator):
    """Return {benchmark name: CPU ns per item} from Google Benchmark's JSON output.

    cpu_time is the threads' CPU time summed, per iteration, so time a thread
    spent preempted by other programs does not count. An iteration of the batch
    benchmarks makes 100 items. items_per_second is items over wall time for
    benchmarks registered with UseRealTime (their names contain "/real_time")
    and over CPU time for the others, so multiplying it by that time per
    iteration gives the items per iteration.
    """
    document = json.loads(json_text)
    if (allocator is not None and allocator.name.startswith("memward")
            and "memward_version" not in document.get("context", {})):
        raise ValueError("memward_version is missing from the benchmark context: "
                         "the preload did not take effect")
    values = {}
    for entry in document.get("benchmarks", []):
        if entry.get("run_type", "iteration") != "iteration" or entry.get("error_occurred"):
            continue
        rate = entry.get("items_per_second")
        unit = TIME_UNIT_NANOSECONDS.get(entry.get("time_unit"))
        if not rate or unit is None:
            continue
        basis = entry["real_time"] if "/real_time" in entry["name"] else entry["cpu_time"]
        items_per_iteration = rate * basis * unit * 1e-9
        values[entry["name"]] = entry["cpu_time"] * unit / items_per_iteration
    return values


def run_all(arguments, allocators, runner):
    """Run everything; return a nested dict of raw per-repetition results."""
    bin_dir = arguments.bin_dir
    micro_binary = None if arguments.skip_micro else require_binary(bin_dir / "malloc_micro")
    # tenant_micro links libmemward.so itself and runs without a preload. It is
    # built only when the memward library target exists.
    tenant_binary = bin_dir / "tenant_micro"
    if arguments.skip_micro or arguments.peers_only or not tenant_binary.exists():
        tenant_binary = None
    probe = require_binary(bin_dir / "rss_probe")
    workload_binaries = {name: require_binary(bin_dir / f"workload_{name}")
                         for name in arguments.workloads}

    results = {
        "micro": {a.name: {} for a in allocators},  # name -> benchmark -> [ns]
        "micro_failures": {a.name: [] for a in allocators},
        "tenant_micro": {},  # benchmark -> [ns]
        "tenant_micro_failures": [],
        "workloads": {w: {a.name: [] for a in whole_run_allocators(allocators)}
                      for w in arguments.workloads},
        "workload_output": {w: {} for w in arguments.workloads},
        "probe": {a.name: [] for a in whole_run_allocators(allocators)},
    }
    micro_arguments = [f"--benchmark_min_time={arguments.micro_min_time}", "--benchmark_format=json"]
    if arguments.micro_filter:
        micro_arguments.append(f"--benchmark_filter={arguments.micro_filter}")

    for repetition in range(arguments.repetitions):
        shift = repetition % len(allocators)
        order = allocators[shift:] + allocators[:shift]
        started = time.monotonic()
        print(f"repetition {repetition + 1}/{arguments.repetitions}: "
              f"{', '.join(a.name for a in order)}", file=sys.stderr)

        for allocator in whole_run_allocators(order):
            result = runner.run(allocator, [probe, arguments.probe_wait_ms])
            if result.failed:
                print(f"  rss_probe under {allocator.name} failed: {result.failure_summary()}",
                      file=sys.stderr)
                continue
            fields = _parse_fields(result.stdout)
            results["probe"][allocator.name].append(
                {"vmrss_kib": int(fields["vmrss_kib"]), "vmhwm_kib": int(fields["vmhwm_kib"]),
                 "maxrss_kib": result.maxrss_kib})

        if micro_binary is not None:
            for allocator in order:
                print(f"  micro under {allocator.name}", file=sys.stderr)
                result = runner.run(allocator, [micro_binary] + micro_arguments)
                try:
                    if result.failed:
                        raise ValueError(result.failure_summary())
                    values = micro_nanoseconds(result.stdout, allocator)
                except (ValueError, json.JSONDecodeError) as error:
                    message = f"repetition {repetition + 1}: {error}"
                    print(f"  micro under {allocator.name} failed: {message}", file=sys.stderr)
                    results["micro_failures"][allocator.name].append(message)
                    continue
                for name, nanoseconds in values.items():
                    results["micro"][allocator.name].setdefault(name, []).append(nanoseconds)

        if tenant_binary is not None:
            print("  tenant_micro (linked with libmemward.so)", file=sys.stderr)
            # --micro-filter names malloc_micro's benchmarks, so it is not passed here.
            tenant_arguments = [f"--benchmark_min_time={arguments.micro_min_time}",
                                "--benchmark_format=json"]
            result = runner.run(Allocator("glibc", None), [tenant_binary] + tenant_arguments)
            try:
                if result.failed:
                    raise ValueError(result.failure_summary())
                values = micro_nanoseconds(result.stdout, None)
            except (ValueError, json.JSONDecodeError) as error:
                message = f"repetition {repetition + 1}: {error}"
                print(f"  tenant_micro failed: {message}", file=sys.stderr)
                results["tenant_micro_failures"].append(message)
            else:
                for name, nanoseconds in values.items():
                    results["tenant_micro"].setdefault(name, []).append(nanoseconds)

        for workload, binary in workload_binaries.items():
            for allocator in whole_run_allocators(order):
                result = runner.run(allocator, [binary] + workload_arguments(arguments, workload))
                entry = {"wall_seconds": result.wall_seconds, "cpu_seconds": result.cpu_seconds,
                         "maxrss_kib": result.maxrss_kib}
                if result.failed:
                    entry["failure"] = result.failure_summary()
                    print(f"  {workload} under {allocator.name} failed: {entry['failure']}",
                          file=sys.stderr)
                else:
                    ok_lines = [line for line in result.stdout.splitlines() if ": ok " in line]
                    if ok_lines:
                        results["workload_output"][workload][allocator.name] = ok_lines[-1]
                    print(f"  {workload} under {allocator.name}: {result.wall_seconds:.3f} s, "
                          f"{result.maxrss_kib / 1024:.1f} MiB", file=sys.stderr)
                results["workloads"][workload][allocator.name].append(entry)
        print(f"  repetition took {time.monotonic() - started:.0f} s", file=sys.stderr)
    return results


def read_notes(arguments):
    if arguments.smoke or str(arguments.notes) == "none" or not arguments.notes.exists():
        return None
    return arguments.notes.read_text()


def render_again(arguments):
    """Write the report from a saved --json file, replacing only the notes."""
    saved = json.loads(arguments.from_json.read_text())
    settings = saved["settings"]
    settings["notes"] = read_notes(arguments)
    allocators = [Allocator(name, Path(library) if library else None)
                  for name, library in saved["allocators"].items()]
    text = benchmark_report.render(settings, saved["machine"], allocators, saved["results"])
    arguments.output.write_text(text)
    print(f"wrote {arguments.output} from {arguments.from_json}", file=sys.stderr)


def main():
    arguments = parse_arguments()
    if arguments.from_json:
        render_again(arguments)
        return
    allocators = build_allocators(arguments)
    launcher = require_binary(arguments.bin_dir / "run_measured")
    runner = Runner(launcher, arguments.verbose)

    machine = benchmark_report.describe_machine(arguments.build_dir, REPO_ROOT)
    machine["load_before"] = os.getloadavg()
    started = time.monotonic()
    results = run_all(arguments, allocators, runner)
    machine["load_after"] = os.getloadavg()
    machine["duration_seconds"] = time.monotonic() - started

    command = "/usr/bin/python3 " + shlex.join(
        [os.path.relpath(Path(sys.argv[0]).resolve(), REPO_ROOT)] + sys.argv[1:])
    settings = {
        "command": command,
        "quick": arguments.quick,
        "smoke": arguments.smoke,
        "repetitions": arguments.repetitions,
        "micro_min_time": arguments.micro_min_time,
        "memward_conf": arguments.memward_conf,
        "workload_arguments": {w: workload_arguments(arguments, w) for w in arguments.workloads},
        "probe_wait_ms": arguments.probe_wait_ms,
        "notes": read_notes(arguments),
    }
    text = benchmark_report.render(settings, machine, allocators, results)
    arguments.output.parent.mkdir(parents=True, exist_ok=True)
    arguments.output.write_text(text)
    print(f"wrote {arguments.output}", file=sys.stderr)
    if arguments.json:
        arguments.json.write_text(json.dumps(
            {"settings": settings, "machine": machine, "results": results,
             "allocators": {a.name: str(a.library) if a.library else None for a in allocators}},
            indent=1))
        print(f"wrote {arguments.json}", file=sys.stderr)


if __name__ == "__main__":
    main()
