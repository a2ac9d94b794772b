"""Describe the machine and render the benchmark results as docs/benchmarks.md.

Used by run_benchmarks.py; standard library only.
"""

import datetime
import os
import platform
import re
import statistics
import subprocess
from pathlib import Path

PEERS = ["glibc", "jemalloc", "tcmalloc", "mimalloc"]

# memward's targets. The fast path may take 10 % longer than jemalloc's. On
# each workload, memward may take 10 % longer than the peers' median time and
# may not exceed their median peak RSS. Its resident overhead stays under 1 MiB.
FAST_PATH_MAX_RATIO = 1.10
# memward with sampling off, run in the micro benchmarks only. The fast-path
# target is judged on it: at the default interval of 512 KiB, one 16 KiB
# allocation in 32 is sampled and carries a stack capture, which is the
# sampler's cost (docs/sampling-benchmarks.md), not the allocator's path.
UNSAMPLED = "memward, sampling off"
WORKLOAD_MAX_TIME_RATIO = 1.10
WORKLOAD_MAX_RSS_RATIO = 1.00
OVERHEAD_MAX_KIB = 1024

# jemalloc 5.3's default opt.tcache_max (printed by MALLOC_CONF=stats_print:true
# with Debian's libjemalloc2 5.3.0-1): larger sizes bypass the thread cache,
# so only sizes up to it measure the fast path.
FAST_PATH_MAX_SIZE = 32768

MICRO_TITLES = {
    "BM_MallocFreePair": "malloc then free, one pair at a time",
    "BM_MallocFreeBatch": "100 mallocs, then the 100 frees in the same order",
    "BM_NewDelete": "operator new, then unsized operator delete",
    "BM_NewDeleteSized": "operator new, then sized operator delete",
}

WORKLOAD_DESCRIPTIONS = {
    "server": "Threads allocate requests of mixed sizes (16 B to 64 KiB, most under 1 KiB) and "
              "hand them to other threads, which verify and free them and send back responses "
              "that the first thread frees: nearly every free is a cross-thread free.",
    "producer_consumer": "Producers allocate messages of 32 B to 16 KiB into one bounded queue; "
                         "consumers verify and free them.",
    "thread_churn": "Short-lived threads, a few alive at a time, each allocate, verify and free "
                    "32 objects of 16 B to 8 KiB and hand one object to the main thread, which "
                    "frees it after the thread has exited.",
    "fragmentation": "Interleaved short- and long-lived objects whose size distribution changes "
                     "every phase; half the short-lived objects are freed at each phase change.",
    "large_blocks": "A loop that allocates blocks of 5 to 25 MiB, writes one word to each page, "
                    "verifies and frees them, two blocks alive at a time.",
}


def _command_output(argv, cwd=None):
    try:
        return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=True,
                              timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def describe_machine(build_dir: Path, repo_root: Path):
    """Collect the facts about the machine and the build that the report prints."""
    machine = {}
    lscpu = _command_output(["lscpu"])
    match = re.search(r"^Model name:\s*(.+)$", lscpu, re.MULTILINE)
    machine["cpu_model"] = match.group(1).strip() if match else platform.processor() or "unknown"
    machine["cpus"] = os.cpu_count()
    machine["cpus_usable"] = len(os.sched_getaffinity(0))
    machine["kernel"] = platform.release()
    try:
        meminfo = Path("/proc/meminfo").read_text()
        kib = int(re.search(r"^MemTotal:\s+(\d+) kB", meminfo, re.MULTILINE).group(1))
        machine["memory"] = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, AttributeError):
        machine["memory"] = "unknown"
    try:
        os_release = Path("/etc/os-release").read_text()
        match = re.search(r'^PRETTY_NAME="?([^"\n]+)"?', os_release, re.MULTILINE)
        machine["os"] = match.group(1) if match else "unknown"
    except OSError:
        machine["os"] = "unknown"

    packages = {}
    for package in ["libc6", "libjemalloc2", "libtcmalloc-minimal4", "libgoogle-perftools4",
                    "libmimalloc2.0", "libbenchmark1debian"]:
        version = _command_output(["dpkg-query", "-W", "-f=${Version}", package])
        if version:
            packages[package] = version
    machine["packages"] = packages

    cache = build_dir / "CMakeCache.txt"
    build = {}
    if cache.exists():
        for line in cache.read_text().splitlines():
            for key in ["CMAKE_BUILD_TYPE", "CMAKE_CXX_COMPILER", "CMAKE_HOME_DIRECTORY"]:
                if line.startswith(key + ":"):
                    build[key] = line.split("=", 1)[1]
    compiler = build.get("CMAKE_CXX_COMPILER")
    if compiler:
        build["compiler_version"] = _command_output([compiler, "--version"]).splitlines()[0:1]
    machine["build"] = build

    # The commit of the sources the measured build was configured from, which
    # may be another checkout than the one this script runs from.
    source_dir = Path(build.get("CMAKE_HOME_DIRECTORY", repo_root))
    commit = _command_output(["git", "rev-parse", "--short", "HEAD"], cwd=source_dir)
    dirty = _command_output(["git", "status", "--porcelain", "--untracked-files=no"],
                            cwd=source_dir)
    machine["commit"] = (commit + (" with uncommitted changes" if dirty else "")) or "unknown"
    machine["date"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return machine


def _median(values):
    return statistics.median(values) if values else None


def _ratio(value, reference):
    if value is None or reference in (None, 0):
        return None
    return value / reference


def _format_ratio(ratio):
    return "—" if ratio is None else f"{ratio:.2f}×"


def _verdict(passed):
    if passed is None:
        return "information"
    return "pass" if passed else "**MISS**"


def _within(ratio, limit):
    """Compare a ratio as the report prints it (two decimals), so 1.104 reads 1.10× and passes."""
    return round(ratio, 2) <= limit


def _parse_micro_name(name):
    """Split "BM_X/64/real_time/threads:2" into ("BM_X", 64, 2)."""
    parts = name.split("/")
    threads = 1
    for part in parts:
        if part.startswith("threads:"):
            threads = int(part.split(":", 1)[1])
    return parts[0], int(parts[1]), threads


def _format_size(size):
    if size >= 1024 and size % 1024 == 0:
        return f"{size // 1024} KiB"
    return f"{size} B"


class Report:
    """Builds the Markdown text section by section."""

    def __init__(self, settings, machine, allocators, results):
        self.settings = settings
        self.machine = machine
        self.allocators = allocators
        self.names = [a.name for a in allocators]
        # The allocators of the workloads and the resident overhead.
        self.whole_run_names = [name for name in self.names if name != UNSAMPLED]
        self.has_memward = "memward" in self.names
        # Whose micro benchmark times the fast-path target is judged on.
        self.fast_path_name = UNSAMPLED if UNSAMPLED in self.names else "memward"
        self.results = results
        self.lines = []
        self.targets = []  # (target, measured, passed or None)

    def add(self, *lines):
        self.lines.extend(lines)

    def table(self, header, rows, numeric=True):
        """Add a Markdown table; with `numeric`, all but the first column align right."""
        alignment = ["---"] + [("---:" if numeric else "---")] * (len(header) - 1)
        self.add("| " + " | ".join(header) + " |", "| " + " | ".join(alignment) + " |")
        for row in rows:
            self.add("| " + " | ".join(row) + " |")
        self.add("")

    # Micro benchmarks.

    def micro_section(self):
        micro = self.results["micro"]
        medians = {a: {name: _median(values) for name, values in micro[a].items()}
                   for a in self.names}
        groups = {}
        for allocator in self.names:
            for name in medians[allocator]:
                family, size, threads = _parse_micro_name(name)
                groups.setdefault((family, threads), {}).setdefault(size, name)
        if not groups:
            return

        self.add("## Micro benchmarks", "",
                 "CPU nanoseconds per item, one item being an allocation and its free (the "
                 "median over the repetitions), and in brackets the ratio to jemalloc. The time "
                 "is the threads' CPU time, not wall time, so that time a thread spends "
                 "preempted by other programs on the machine does not count; contention that "
                 "spins still does, a thread that sleeps on a lock does not. With two threads "
                 "both run the same loop and their CPU time is summed. "
                 f"The fast-path target, memward at most {FAST_PATH_MAX_RATIO:.2f}× jemalloc, "
                 f"applies to sizes up to {_format_size(FAST_PATH_MAX_SIZE)}, jemalloc 5.3's "
                 "default thread-cache limit (opt.tcache_max); larger sizes take the arena path "
                 f"and are shown for information. It is judged on “{UNSAMPLED}”, the same "
                 "library with `MEMWARD_CONF=sample_interval=0`. The “memward” column has "
                 "sampling at its default interval of 512 KiB, so about one allocation of s bytes "
                 "in 512 KiB / s takes a stack; docs/sampling-benchmarks.md measures that cost.",
                 "")
        failures = [f"- the run under {allocator} failed in {message}"
                    for allocator in self.names
                    for message in self.results["micro_failures"][allocator]]
        if failures:
            self.add("Failed micro benchmark runs:", "", *failures, "")

        family_order = list(MICRO_TITLES)
        fast_path_ratios = []
        sampled_ratios = []  # memward with sampling at the default interval
        for family, threads in sorted(groups, key=lambda k: (family_order.index(k[0])
                                                             if k[0] in family_order else 99, k[1])):
            title = MICRO_TITLES.get(family, family)
            thread_text = "1 thread" if threads == 1 else f"{threads} threads"
            self.add(f"### {title}, {thread_text}", "", f"`{family}`, CPU ns per item:", "")
            header = ["size"] + self.names
            if self.has_memward:
                header.append(f"{self.fast_path_name} ≤ {FAST_PATH_MAX_RATIO:.2f}× jemalloc")
            rows = []
            for size, name in sorted(groups[(family, threads)].items()):
                reference = medians.get("jemalloc", {}).get(name)
                row = [_format_size(size)]
                for allocator in self.names:
                    value = medians[allocator].get(name)
                    if value is None:
                        row.append("—")
                    elif allocator == "jemalloc":
                        row.append(f"{value:.1f}")
                    else:
                        row.append(f"{value:.1f} ({_format_ratio(_ratio(value, reference))})")
                if self.has_memward:
                    ratio = _ratio(medians[self.fast_path_name].get(name), reference)
                    if ratio is None:
                        row.append("—")
                    elif size > FAST_PATH_MAX_SIZE:
                        row.append("not a target")
                    else:
                        row.append(_verdict(_within(ratio, FAST_PATH_MAX_RATIO)))
                        label = f"{family}/{_format_size(size)}, {thread_text}"
                        fast_path_ratios.append((ratio, label))
                        sampled = _ratio(medians["memward"].get(name), reference)
                        if sampled is not None:
                            sampled_ratios.append((sampled, label))
                rows.append(row)
            self.table(header, rows)

        if self.has_memward and fast_path_ratios:
            within = sum(1 for ratio, _ in fast_path_ratios
                         if _within(ratio, FAST_PATH_MAX_RATIO))
            worst_ratio, worst_name = max(fast_path_ratios)
            self.targets.append((
                f"fast path ({self.fast_path_name}): ≤ {FAST_PATH_MAX_RATIO:.2f}× jemalloc on "
                f"every micro benchmark up to {_format_size(FAST_PATH_MAX_SIZE)}",
                f"{within} of {len(fast_path_ratios)} within; worst {worst_ratio:.2f}× "
                f"({worst_name}); median {statistics.median(r for r, _ in fast_path_ratios):.2f}×",
                within == len(fast_path_ratios)))
        if self.has_memward and fast_path_ratios:
            self.fastest_repetition_target(micro, fast_path_ratios)
        if self.fast_path_name != "memward" and sampled_ratios:
            self.information_target("the same with sampling at the default interval",
                                    sampled_ratios)

    def information_target(self, title, ratios):
        """Add a row of (ratio, label) pairs, judged against the fast-path limit, for information."""
        within = sum(1 for ratio, _ in ratios if _within(ratio, FAST_PATH_MAX_RATIO))
        worst_ratio, worst_name = max(ratios)
        self.targets.append((
            title,
            f"{within} of {len(ratios)} within {FAST_PATH_MAX_RATIO:.2f}×; worst "
            f"{worst_ratio:.2f}× ({worst_name}); median "
            f"{statistics.median(r for r, _ in ratios):.2f}×",
            None))

    def fastest_repetition_target(self, micro, fast_path_ratios):
        """Add the fast-path target judged on each program's fastest repetition.

        On a shared virtual machine a repetition runs up to about 1.8 times
        slower when other guests load the host, for every allocator alike, and
        the median of a few repetitions can land on either side. The fastest
        repetition is the run least disturbed. Shown for information; the
        target itself is judged on the medians.
        """
        labels = {label for _, label in fast_path_ratios}
        ratios = []
        for name, values in micro.get(self.fast_path_name, {}).items():
            family, size, threads = _parse_micro_name(name)
            thread_text = "1 thread" if threads == 1 else f"{threads} threads"
            label = f"{family}/{_format_size(size)}, {thread_text}"
            reference = micro.get("jemalloc", {}).get(name)
            if label not in labels or not values or not reference:
                continue
            ratios.append((_ratio(min(values), min(reference)), label))
        if ratios:
            self.information_target("the same on each program's fastest repetition", ratios)

    def tenant_micro_section(self):
        tenant = self.results.get("tenant_micro", {})
        failures = self.results.get("tenant_micro_failures", [])
        if not tenant and not failures:
            return
        jemalloc = {name: _median(values)
                    for name, values in self.results["micro"].get("jemalloc", {}).items()}
        self.add("### memward's tenant features, linked", "",
                 "`tenant_micro` links libmemward.so and registers tenants, so every free "
                 "reads the owner map. Pairs run untagged, in a tenant scope with a dedicated "
                 "or a shared arena, and in a request; the other rows are a scope's entry and "
                 "exit and a request's begin and end around N 256-byte objects. CPU ns per "
                 "item (one pair, one scope, or one request), and for pairs the ratio to "
                 "jemalloc's `BM_MallocFreePair` of the same size, one thread. Targets: a "
                 "tenant-scoped pair at most 1.3× jemalloc's pair, scope entry and exit "
                 "under 20 ns, a request's begin and end (with its purge) under 5 µs.", "")
        rows = []
        family_order = ["BM_UntaggedPair", "BM_DedicatedTenantPair", "BM_SharedTenantPair",
                        "BM_RequestPair", "BM_ScopeEnterExit", "BM_RequestBeginEnd"]

        def order(name):
            parts = name.split("/")
            family = family_order.index(parts[0]) if parts[0] in family_order else 99
            argument = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            return family, parts[0], argument

        for name in sorted(tenant, key=order):
            value = _median(tenant[name])
            parts = name.split("/")
            reference = None
            if parts[0].endswith("Pair") and len(parts) > 1:
                reference = jemalloc.get(f"BM_MallocFreePair/{parts[1]}/real_time/threads:1")
            rows.append([f"`{name}`", f"{value:.1f}", _format_ratio(_ratio(value, reference))])
        if rows:
            self.table(["benchmark", "CPU ns per item", "× jemalloc pair"], rows)
        self.tenant_targets(tenant, jemalloc)
        if failures:
            self.add("Failed tenant_micro runs:", "", *[f"- {message}" for message in failures],
                     "")

    def tenant_targets(self, tenant, jemalloc):
        scoped = []
        for name, values in tenant.items():
            parts = name.split("/")
            if parts[0] not in ("BM_DedicatedTenantPair", "BM_SharedTenantPair") or len(parts) < 2:
                continue
            ratio = _ratio(_median(values),
                           jemalloc.get(f"BM_MallocFreePair/{parts[1]}/real_time/threads:1"))
            if ratio is not None:
                scoped.append((ratio, name))
        if scoped:
            worst, worst_name = max(scoped)
            within = sum(1 for ratio, _ in scoped if _within(ratio, 1.3))
            self.targets.append((
                "tenant-scoped malloc/free pair ≤ 1.3× jemalloc",
                f"{within} of {len(scoped)} within; worst {worst:.2f}× ({worst_name}); median "
                f"{statistics.median(r for r, _ in scoped):.2f}×",
                within == len(scoped)))
        if "BM_ScopeEnterExit" in tenant:
            value = _median(tenant["BM_ScopeEnterExit"])
            self.targets.append(("scope entry and exit < 20 ns", f"{value:.1f} ns", value < 20))
        begin_end = {name: _median(values) for name, values in tenant.items()
                     if name.startswith("BM_RequestBeginEnd/")}
        if begin_end:
            detail = ", ".join(f"{value / 1000:.2f} µs with {name.split('/')[1]} objects"
                               for name, value in sorted(begin_end.items(),
                                                         key=lambda item: int(item[0].split('/')[1])))
            small = [value for name, value in begin_end.items()
                     if int(name.split("/")[1]) <= 16]
            self.targets.append(("request begin + end, with the purge of its arena, < 5 µs "
                                 "(up to 16 objects)", detail, all(v < 5000 for v in small)))

    # Workloads.

    def workload_section(self):
        workloads = self.results["workloads"]
        if not workloads:
            return
        self.add("## Workloads", "",
                 "Wall time of the whole process, its CPU time (user + system, all threads) and "
                 "its peak RSS (ru_maxrss), medians over the repetitions. \"Spread\" is "
                 "(max − min) / median of the wall times; CPU time is less disturbed by other "
                 "programs on the machine than wall time. \"Peer median\" is "
                 "the median of glibc, jemalloc, tcmalloc and mimalloc; with four values, the "
                 "mean of the middle two. The target for memward on each workload: at most "
                 f"{WORKLOAD_MAX_TIME_RATIO:.2f}× the peer median time and no more than the peer "
                 "median peak RSS.", "")
        for workload, per_allocator in workloads.items():
            self.one_workload(workload, per_allocator)

    def one_workload(self, workload, per_allocator):
        arguments = " ".join(self.settings["workload_arguments"][workload])
        self.add(f"### {workload}", "", WORKLOAD_DESCRIPTIONS.get(workload, ""), "",
                 f"`workload_{workload} {arguments}`", "")

        summary = {}
        failures = []
        for allocator in self.whole_run_names:
            runs = per_allocator[allocator]
            good = [run for run in runs if "failure" not in run]
            for run in runs:
                if "failure" in run:
                    failures.append(f"- {allocator}: {run['failure']}")
            if good:
                times = [run["wall_seconds"] for run in good]
                summary[allocator] = {
                    "time": _median(times),
                    "spread": (max(times) - min(times)) / _median(times) if _median(times) else 0,
                    "cpu": _median([run["cpu_seconds"] for run in good]),
                    "rss": _median([run["maxrss_kib"] for run in good]) / 1024,
                    "runs": len(good),
                    "total": len(runs),
                }

        peer_time = _median([summary[p]["time"] for p in PEERS if p in summary])
        peer_rss = _median([summary[p]["rss"] for p in PEERS if p in summary])
        peer_cpu = _median([summary[p]["cpu"] for p in PEERS if p in summary])
        jemalloc = summary.get("jemalloc", {})
        header = ["allocator", "time (s)", "spread", "× jemalloc", "× peer median",
                  "CPU time (s)", "peak RSS (MiB)", "× jemalloc", "× peer median"]
        rows = []
        for allocator in self.whole_run_names:
            if allocator not in summary:
                rows.append([allocator, "failed"] + ["—"] * 7)
                continue
            entry = summary[allocator]
            time_text = f"{entry['time']:.3f}"
            if entry["runs"] < entry["total"]:
                time_text += f" ({entry['runs']} of {entry['total']} runs)"
            rows.append([
                f"**{allocator}**" if allocator == "memward" else allocator,
                time_text,
                f"{entry['spread'] * 100:.0f} %",
                _format_ratio(_ratio(entry["time"], jemalloc.get("time"))),
                _format_ratio(_ratio(entry["time"], peer_time)),
                f"{entry['cpu']:.3f}",
                f"{entry['rss']:.1f}",
                _format_ratio(_ratio(entry["rss"], jemalloc.get("rss"))),
                _format_ratio(_ratio(entry["rss"], peer_rss)),
            ])
        rows.append(["peer median", f"{peer_time:.3f}" if peer_time else "—", "", "", "",
                     f"{peer_cpu:.3f}" if peer_cpu else "—",
                     f"{peer_rss:.1f}" if peer_rss else "—", "", ""])
        self.table(header, rows)

        output = self.results["workload_output"].get(workload, {})
        sample = output.get("glibc") or next(iter(output.values()), None)
        if sample:
            self.add(f"Program output (one run): `{sample}`", "")
        if failures:
            self.add("Failed runs:", "", *failures, "")

        if not self.has_memward:
            return
        memward = summary.get("memward")
        if memward is None:
            self.targets.append((f"{workload}: memward completes", "every run failed", False))
            return
        time_ratio = _ratio(memward["time"], peer_time)
        cpu_ratio = _ratio(memward["cpu"], peer_cpu)
        rss_ratio = _ratio(memward["rss"], peer_rss)
        if time_ratio is not None:
            self.targets.append((
                f"{workload}: time ≤ {WORKLOAD_MAX_TIME_RATIO:.2f}× peer median",
                f"{time_ratio:.2f}× ({memward['time']:.3f} s vs {peer_time:.3f} s); "
                f"CPU time {_format_ratio(cpu_ratio)}",
                _within(time_ratio, WORKLOAD_MAX_TIME_RATIO)))
        if rss_ratio is not None:
            self.targets.append((
                f"{workload}: peak RSS ≤ peer median",
                f"{rss_ratio:.2f}× ({memward['rss']:.1f} MiB vs {peer_rss:.1f} MiB)",
                _within(rss_ratio, WORKLOAD_MAX_RSS_RATIO)))
        if memward["runs"] < memward["total"]:
            self.targets.append((f"{workload}: every memward run succeeds",
                                 f"{memward['total'] - memward['runs']} of {memward['total']} "
                                 "failed", False))

    # Resident overhead.

    def overhead_section(self):
        probe = self.results["probe"]
        medians = {}
        for allocator in self.whole_run_names:
            runs = probe[allocator]
            if runs:
                medians[allocator] = {key: _median([run[key] for run in runs])
                                      for key in ["vmrss_kib", "vmhwm_kib", "maxrss_kib"]}
        if not medians:
            return
        self.add("## Resident overhead", "",
                 "`rss_probe` makes one 64-byte allocation, waits "
                 f"{self.settings['probe_wait_ms']} ms so that lazily started threads exist, "
                 "and prints its VmRSS and VmHWM from /proc/self/status; ru_maxrss comes from "
                 "the launcher's wait4. Medians in KiB; the difference is to jemalloc, the engine "
                 "memward embeds.", "")
        reference = medians.get("jemalloc")
        rows = []
        for allocator in self.whole_run_names:
            if allocator not in medians:
                rows.append([allocator, "failed", "—", "—", "—"])
                continue
            entry = medians[allocator]
            difference = (f"{entry['vmrss_kib'] - reference['vmrss_kib']:+.0f}"
                          if reference else "—")
            rows.append([allocator, f"{entry['vmrss_kib']:.0f}", f"{entry['vmhwm_kib']:.0f}",
                         f"{entry['maxrss_kib']:.0f}", difference])
        self.table(["allocator", "VmRSS", "VmHWM", "ru_maxrss", "VmRSS − jemalloc"], rows)

        if self.has_memward and reference and "memward" in medians:
            rss_overhead = medians["memward"]["vmrss_kib"] - reference["vmrss_kib"]
            hwm_overhead = medians["memward"]["vmhwm_kib"] - reference["vmhwm_kib"]
            self.targets.append((
                "resident overhead over jemalloc < 1 MiB",
                f"VmRSS {rss_overhead:+.0f} KiB, VmHWM {hwm_overhead:+.0f} KiB",
                max(rss_overhead, hwm_overhead) < OVERHEAD_MAX_KIB))

    # Whole document.

    def render(self):
        body = Report(self.settings, self.machine, self.allocators, self.results)
        body.micro_section()
        body.tenant_micro_section()
        body.workload_section()
        body.overhead_section()
        self.targets = body.targets

        settings = self.settings
        machine = self.machine
        if settings.get("smoke"):
            mode = ("smoke test (--smoke): small presets and a single repetition, to check the "
                    "runner; these numbers say nothing about the allocators")
        elif settings["quick"]:
            mode = ("quick mode (--quick): fewer repetitions, shorter micro benchmarks and "
                    "smaller workloads than the full run")
        else:
            mode = "full run"
        self.add("# Benchmarks", "",
                 "Generated by `bench/run_benchmarks.py`; rerun it rather than editing this "
                 "page. Every number below was measured in the one run described here.", "",
                 f"- command: `{settings['command']}`",
                 f"- mode: {mode}; repetitions: {settings['repetitions']}; micro benchmark "
                 f"minimum time {settings['micro_min_time']} s each",
                 f"- date: {machine['date']}; memward commit {machine['commit']}",
                 f"- run time: {machine['duration_seconds'] / 60:.1f} min; load average "
                 f"{machine['load_before'][0]:.2f} before, {machine['load_after'][0]:.2f} after",
                 "")
        if settings.get("memward_conf") is not None:
            self.add(f"- memward runs with `MEMWARD_CONF={settings['memward_conf']}`", "")
        if not self.has_memward:
            self.add("**memward was not measured in this run (--peers-only)**; the tables "
                     "compare the four peers only.", "")
        # The run itself keeps up to two CPUs busy, which the load after it includes.
        before, after = machine["load_before"][0], machine["load_after"][0]
        if before > machine["cpus"] / 2 or after > machine["cpus"] + 1:
            self.add(f"**The machine was busy during this run**: load average {before:.1f} "
                     f"before it and {after:.1f} after it, on {machine['cpus']} CPUs. Wall "
                     "times and their ratios are disturbed by other programs, as the spread "
                     "column shows. CPU times, and so the micro benchmarks, are affected less.",
                     "")

        self.add("## Targets", "")
        if self.targets:
            self.table(["target", "measured", "result"],
                       [[target, measured, _verdict(passed)]
                        for target, measured, passed in self.targets], numeric=False)
        else:
            self.add("No memward results, so no target was checked.", "")

        self.add("## Machine and build", "",
                 f"- CPU: {machine['cpu_model']}, {machine['cpus']} CPUs "
                 f"({machine['cpus_usable']} usable by this process)",
                 f"- memory: {machine['memory']}; kernel {machine['kernel']}; {machine['os']}")
        build = machine.get("build", {})
        if build:
            compiler = " ".join(build.get("compiler_version", [])) or build.get(
                "CMAKE_CXX_COMPILER", "unknown")
            self.add(f"- build: {build.get('CMAKE_BUILD_TYPE', 'unknown')}, {compiler}")
        if machine["packages"]:
            self.add("- packages: " + ", ".join(f"{name} {version}"
                                                for name, version in machine["packages"].items()))
        self.add("- allocators: " + ", ".join(
            f"{a.name} ({a.library if a.library else 'no preload'})" for a in self.allocators),
            "")

        self.add("## Method", "",
                 "Each program runs once per allocator in every repetition; the allocators take "
                 "turns and their order rotates by one each repetition. Programs start through "
                 "`bench/tools/run_measured.c`, which forks the program and takes wall time and "
                 "ru_maxrss from wait4: a process started straight from Python inherits the "
                 "runner's larger high-water mark at exec. The micro benchmarks are Google "
                 "Benchmark 1.7 (`bench/micro/malloc_micro.cc`). Debian's package of it warns "
                 "that the library was built as DEBUG; its timing loop is the same under "
                 "every allocator. Other programs may have run on the "
                 "machine at the same time (see the load average); the spread column shows how "
                 "much the repetitions varied.", "")
        self.lines.extend(body.lines)
        notes = self.settings.get("notes")
        if notes:
            self.add("", notes.strip())
        return "\n".join(self.lines).rstrip() + "\n"


def render(settings, machine, allocators, results):
    """Return the Markdown report for one run."""
    return Report(settings, machine, allocators, results).render()
