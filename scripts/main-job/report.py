#!/usr/bin/env python3
"""Print the main job's tables: resident memory per nginx process, and the
allocator statistics that memward printed when each process exited."""

import argparse
import re
import sys
from collections import defaultdict
from pathlib import Path

MIB = 1024 * 1024

EXIT_NOTICE = re.compile(r"\[notice\] (\d+)#\d+: exit$")
STATS_BEGIN = "___ Begin jemalloc statistics ___"
STATS_END = "--- End jemalloc statistics ---"
# jemalloc 5.3's stats_print summary line, one per process.
TOTALS_LINE = re.compile(
    r"^Allocated: (\d+), active: (\d+), metadata: (\d+) \(n_thp \d+\), "
    r"resident: (\d+), mapped: (\d+), retained: (\d+)$")
TOTALS_COLUMNS = ("allocated", "active", "metadata", "resident", "mapped", "retained")


def read_samples(path: Path) -> tuple[dict[str, list[int]], dict[str, str]]:
    """Reads `second pid role VmRSS_kB` lines into ({pid: [kB]}, {pid: role})."""
    samples = defaultdict(list)
    roles = {}
    for line in path.read_text().splitlines():
        _, pid, role, kilobytes = line.split()
        samples[pid].append(int(kilobytes))
        roles[pid] = role
    return samples, roles


def print_rss(samples_path: Path) -> int:
    """Prints the average and peak of the sampled VmRSS per process."""
    samples, roles = read_samples(samples_path)
    print(f"{'process':<8} {'pid':>8} {'samples':>8} {'avg VmRSS':>11} {'peak VmRSS':>11}")
    for pid in sorted(roles, key=lambda pid: (roles[pid] != "master", int(pid))):
        values = samples[pid]
        average = f"{sum(values) / len(values) / 1024:.1f} MiB"
        peak = f"{max(values) / 1024:.1f} MiB"
        print(f"{roles[pid]:<8} {pid:>8} {len(values):>8} {average:>11} {peak:>11}")
    return 0


def print_allocator_stats(stderr_path: Path, samples_path: Path) -> int:
    """Prints one row per statistics dump found in nginx's stderr.

    nginx logs "<pid>#<tid>: exit" right before a process calls exit(), and
    jemalloc prints its statistics from an atexit handler, so a dump belongs
    to the process whose exit notice precedes it. When two processes exit at
    the same moment, their order in the file does not tell which is which,
    and the row names both candidates.
    """
    _, roles = read_samples(samples_path)
    pending_exits = []
    dumps = []
    current = None
    for line in stderr_path.read_text(errors="replace").splitlines():
        notice = EXIT_NOTICE.search(line)
        if notice:
            pending_exits.append(notice.group(1))
        elif line == STATS_BEGIN:
            if len(pending_exits) == 1:
                owner = pending_exits.pop()
            elif pending_exits:
                owner = " or ".join(pending_exits)
                pending_exits = pending_exits[1:]
            else:
                owner = "?"
            current = {"pid": owner}
            dumps.append(current)
        elif line == STATS_END:
            current = None
        elif current is not None:
            totals = TOTALS_LINE.match(line)
            if totals:
                current.update(zip(TOTALS_COLUMNS, (int(value) for value in totals.groups())))

    print(f"{'process':<8} {'pid':>8} " + " ".join(f"{name:>10}" for name in TOTALS_COLUMNS)
          + "   (MiB)")
    for dump in dumps:
        role = roles.get(dump["pid"], "?")
        values = " ".join(f"{dump[name] / MIB:>10.2f}" if name in dump else f"{'missing':>10}"
                          for name in TOTALS_COLUMNS)
        print(f"{role:<8} {dump['pid']:>8} {values}")
    complete = sum(1 for dump in dumps if "allocated" in dump)
    print(f"dumps found: {len(dumps)}, with totals: {complete}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    rss = commands.add_parser("rss", help="resident memory table")
    rss.add_argument("samples", type=Path, help="file of `second pid role VmRSS_kB` lines")
    stats = commands.add_parser("allocator-stats", help="allocator statistics table")
    stats.add_argument("stderr", type=Path, help="nginx's stderr with the statistics dumps")
    stats.add_argument("samples", type=Path,
                       help="file of `second pid role VmRSS_kB` lines, for the roles")
    args = parser.parse_args()
    if args.command == "rss":
        return print_rss(args.samples)
    return print_allocator_stats(args.stderr, args.samples)


if __name__ == "__main__":
    sys.exit(main())
