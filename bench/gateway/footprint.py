#!/usr/bin/python3
"""The gateway's footprint under six allocators, replaying the same trace slice.

Each run starts a fresh memward-mock-upstream and memward-gateway, replays a
slice of the Azure LLM conversation trace with memward-trace-replay (which
samples the gateway's VmRSS every 100 ms), and stops both. The allocators:

  glibc            no preload
  jemalloc         LD_PRELOAD=libjemalloc.so.2
  tcmalloc         LD_PRELOAD=libtcmalloc_minimal.so.4
  mimalloc         LD_PRELOAD=libmimalloc.so.2
  memward-nohooks  LD_PRELOAD=libmemward_preload.so, every gateway hook off
  memward          LD_PRELOAD=libmemward_preload.so, every gateway hook on
  glibc-hooks      no preload, every gateway hook on (only with --allocators)

The peers run with the hooks off as well: without memward the hooks do
nothing except idle_purge, which would call malloc_trim(0), a glibc-only
call that the other peers do not have, and cache_unused_after_ms, which
drops unused cache entries. glibc-hooks measures those two alone.

Writes results.json, rss.png (RSS over time) and footprint.md (a section for
docs/benchmarks.md) to --out, and prints the table. Example:

    /usr/bin/python3 bench/gateway/footprint.py --build-dir build --out /tmp/footprint
"""

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gateway_run as run  # noqa: E402  (lives next to this script)

PEERS = {
    "glibc": None,
    "jemalloc": "libjemalloc.so.2",
    "tcmalloc": "libtcmalloc_minimal.so.4",
    "mimalloc": "libmimalloc.so.2",
}
ALLOCATORS = ["glibc", "jemalloc", "tcmalloc", "mimalloc", "memward-nohooks", "memward"]
# Not run by default: glibc with every hook on. Without memward only
# idle_purge and cache_unused_after_ms act, so this row shows how much of
# memward's result the gateway's cache policy alone gives on glibc.
EXTRA_ALLOCATORS = ["glibc-hooks"]
HOOKED = ("memward", "glibc-hooks")

# Targets for the gateway with memward and its hooks, against glibc and the
# best peer (the lowest mean RSS of jemalloc, tcmalloc and mimalloc).
TARGET_RSS_VS_GLIBC = 0.6
TARGET_RSS_VS_BEST_PEER = 0.8
TARGET_THROUGHPUT_TOLERANCE = 0.05
TARGET_P99_TOLERANCE = 0.05

# Every request arena costs about 130 KiB of jemalloc metadata plus a partly
# used slab for each size class its requests touched. The replay keeps some
# 150 requests open, so the default pool of 64 is always full. It cost 6 to
# 9 MiB more mean RSS than a pool of 16 (docs/gateway-footprint.md).
DEFAULT_MEMWARD_CONF = "request_arenas=16"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build-dir", default=str(run.REPO_ROOT / "build"),
                        help="build folder with bin/ and lib/ (default: build/)")
    parser.add_argument("--out", default="", help="output folder (default: a new temporary one)")
    parser.add_argument("--trace", default=str(run.CONV_TRACE), help="trace CSV")
    parser.add_argument("--trace-start-s", type=float, default=0, help="slice start in trace seconds")
    parser.add_argument("--trace-duration-s", type=float, default=300,
                        help="slice length in trace seconds (default 300)")
    parser.add_argument("--time-compression", type=float, default=10,
                        help="trace seconds per second of replay (default 10)")
    parser.add_argument("--settle-s", type=float, default=3,
                        help="seconds of RSS sampling after the last response (default 3)")
    parser.add_argument("--repeats", type=int, default=1,
                        help="runs per allocator; the order rotates and medians are reported")
    parser.add_argument("--tokens-per-second", type=float, default=50, help="mock upstream pace")
    parser.add_argument("--threads", type=int, default=1, help="gateway I/O threads")
    parser.add_argument("--cache-max", default="64m",
                        help="the gateway's cache.max_bytes (default 64m, the gateway's default)")
    parser.add_argument("--memward-conf", default=DEFAULT_MEMWARD_CONF,
                        help="MEMWARD_CONF of both memward runs (default: %(default)s)")
    parser.add_argument("--cache-unused-after-ms", type=int,
                        default=run.HOOKS_ON["cache_unused_after_ms"],
                        help="hooks.cache_unused_after_ms of the runs with hooks on; "
                             "0 keeps cache entries until their TTL (default: %(default)s)")
    parser.add_argument("--allocators", default=",".join(ALLOCATORS),
                        help="comma-separated subset of " + ",".join(ALLOCATORS + EXTRA_ALLOCATORS))
    args = parser.parse_args()
    args.allocators = [name for name in args.allocators.split(",") if name]
    known = ALLOCATORS + EXTRA_ALLOCATORS
    unknown = [name for name in args.allocators if name not in known]
    if unknown:
        parser.error(f"unknown allocator(s) {', '.join(unknown)}; choose from {', '.join(known)}")
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    return args


def preload_for(name: str, build: run.Build) -> str:
    if name.startswith("memward"):
        return str(build.preload.resolve())
    library = PEERS["glibc" if name == "glibc-hooks" else name]
    if library is None:
        return ""
    path = run.SYSTEM_LIB / library
    if not path.exists():
        raise run.RunError(f"{path} not found; install the peers with scripts/install-deps.sh")
    return str(path)


def run_one(name: str, args, build: run.Build, work_dir: Path) -> dict:
    """Run one allocator once: start the mock and the gateway, replay, stop both."""
    work_dir.mkdir(parents=True, exist_ok=True)
    mock, mock_port = run.start_mock(build, work_dir, tokens_per_second=args.tokens_per_second)
    gateway = None
    try:
        hooks = dict(run.HOOKS_ON if name in HOOKED else run.HOOKS_OFF)
        if name in HOOKED:
            hooks["cache_unused_after_ms"] = args.cache_unused_after_ms
        config = work_dir / "gateway.json"
        run.write_gateway_config(config, run.GatewaySettings(
            upstream_port=mock_port, threads=args.threads, hooks=hooks,
            cache_max_bytes=args.cache_max))
        memward_conf = args.memward_conf if name.startswith("memward") else ""
        gateway, port = run.start_gateway(build, work_dir, config, preload=preload_for(name, build),
                                          memward_conf=memward_conf)
        summary = run.run_replay(
            build, work_dir, port, config, gateway.pid, trace=Path(args.trace),
            start_s=args.trace_start_s, duration_s=args.trace_duration_s,
            compression=args.time_compression, extra=[f"--settle_s={args.settle_s}"])
        metrics = run.parse_metrics(run.http_get(port, "/metrics"))
        summary["gateway_metrics"] = {
            key: value for key, value in metrics.items()
            if key.startswith(("memward_gateway_cache", "memward_gateway_idle",
                               "memward_gateway_escaped", "memward_gateway_measured",
                               "memward_gateway_requests_total"))
        }
    finally:
        status = gateway.stop() if gateway else None
        mock.stop()
    if status not in (0, None):
        raise run.RunError(f"the gateway under {name} exited with status {status}; see {work_dir}")
    return summary


def median_of(runs: list, *keys) -> float:
    values = []
    for summary in runs:
        value = summary
        for key in keys:
            value = value[key]
        values.append(float(value))
    return statistics.median(values)


def aggregate(runs: list) -> dict:
    return {
        "runs": len(runs),
        "rss_mean_mib": median_of(runs, "rss_mean_bytes") / 1048576,
        "rss_p99_mib": median_of(runs, "rss_p99_bytes") / 1048576,
        "rss_peak_mib": median_of(runs, "rss_peak_bytes") / 1048576,
        "ok_per_s": median_of(runs, "ok_per_s"),
        "latency_p50_ms": median_of(runs, "latency_ms", "p50"),
        "latency_p99_ms": median_of(runs, "latency_ms", "p99"),
        "first_event_p99_ms": median_of(runs, "first_byte_ms", "p99"),
        "cache_hits": median_of(runs, "gateway_metrics", "memward_gateway_cache_hits_total"),
        "cache_end_mib": median_of(runs, "gateway_metrics", "memward_gateway_cache_bytes") / 1048576,
        "requests": median_of(runs, "gateway_metrics", "memward_gateway_requests_total"),
        "measured_requests": median_of(runs, "gateway_metrics",
                                       "memward_gateway_measured_requests_total"),
        "statuses": runs[0]["by_status"],
        "incomplete": runs[0]["incomplete"],
        "rss_csv": runs[0]["rss_csv"],
    }


def add_ratios(results: dict) -> None:
    base = results.get("glibc")
    if base is None:
        return
    for result in results.values():
        result["ratio_to_glibc"] = {
            key: (result[key] / base[key] if base[key] else None)
            for key in ("rss_mean_mib", "rss_p99_mib", "ok_per_s", "latency_p50_ms", "latency_p99_ms")
        }


def check_targets(results: dict) -> list:
    """Return (description, passed) rows for the memward-with-hooks targets."""
    if "memward" not in results or "glibc" not in results:
        return []
    memward, glibc = results["memward"], results["glibc"]
    peers = [results[name] for name in ("jemalloc", "tcmalloc", "mimalloc") if name in results]
    rows = [(f"mean RSS <= {TARGET_RSS_VS_GLIBC}x glibc: "
             f"{memward['rss_mean_mib'] / glibc['rss_mean_mib']:.2f}x",
             memward["rss_mean_mib"] <= TARGET_RSS_VS_GLIBC * glibc["rss_mean_mib"])]
    if peers:
        best = min(peers, key=lambda peer: peer["rss_mean_mib"])
        best_name = next(name for name, value in results.items() if value is best)
        rows.append((f"mean RSS <= {TARGET_RSS_VS_BEST_PEER}x the best peer ({best_name}): "
                     f"{memward['rss_mean_mib'] / best['rss_mean_mib']:.2f}x",
                     memward["rss_mean_mib"] <= TARGET_RSS_VS_BEST_PEER * best["rss_mean_mib"]))
    throughput = memward["ok_per_s"] / glibc["ok_per_s"] if glibc["ok_per_s"] else 0
    rows.append((f"throughput within {TARGET_THROUGHPUT_TOLERANCE:.0%} of glibc: {throughput:.3f}x",
                 abs(throughput - 1) <= TARGET_THROUGHPUT_TOLERANCE))
    p99 = memward["latency_p99_ms"] / glibc["latency_p99_ms"] if glibc["latency_p99_ms"] else 0
    rows.append((f"p99 latency within {TARGET_P99_TOLERANCE:.0%} of glibc: {p99:.3f}x",
                 p99 <= 1 + TARGET_P99_TOLERANCE))
    return rows


def write_chart(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 4.8))
    for name, result in results.items():
        times, mebibytes = run.read_rss_csv(result["rss_csv"])
        axes.plot(times, mebibytes, label=name, linewidth=1.4 if name == "memward" else 1.0)
    axes.set_xlabel("seconds since the replay started")
    axes.set_ylabel("gateway VmRSS (MiB)")
    axes.set_title("memward-gateway resident memory, Azure LLM conversation trace slice")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def machine_description() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({model or platform.machine()}), Linux {platform.release()}"


def markdown(results: dict, targets: list, args, chart_name: str) -> str:
    lines = [
        "## The gateway's footprint under six allocators",
        "",
        f"memward-gateway replaying trace seconds {args.trace_start_s:g} to "
        f"{args.trace_start_s + args.trace_duration_s:g} of `{Path(args.trace).name}`, "
        f"{args.time_compression:g}x compressed, 8 Zipf-drawn tenants, 70% streamed, 10% "
        f"repeated prompts, against memward-mock-upstream at {args.tokens_per_second:g} "
        f"tokens/s with a 100 ms first-token delay, response cache of {args.cache_max}. "
        f"VmRSS sampled every 100 ms until "
        f"{args.settle_s:g} s after the last response. {args.repeats} run(s) per allocator "
        f"(medians). Measured by `bench/gateway/footprint.py` on {machine_description()}, "
        "shared with other jobs, so the latency columns carry noise.",
        "",
        "The peers and memward-nohooks run with every gateway hook off. memward runs with "
        f"all of them on and `hooks.cache_unused_after_ms` {args.cache_unused_after_ms}, so "
        "its cache drops entries nobody stored or read for that long, which the columns "
        "cache hits and cache MiB at end show. Both memward runs have "
        f"`MEMWARD_CONF={args.memward_conf}`. glibc-hooks, where present, is glibc with "
        "the same hooks on.",
        "",
        "| allocator | mean RSS MiB | p99 RSS MiB | peak MiB | ok/s | p50 ms | p99 ms | "
        "mean RSS / glibc | p99 RSS / glibc | ok/s / glibc | p99 latency / glibc | cache hits | "
        "cache MiB at end | statuses |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, r in results.items():
        ratio = r.get("ratio_to_glibc", {})

        def show(key):
            value = ratio.get(key)
            return f"{value:.2f}" if value is not None else "-"

        statuses = ", ".join(f"{status}: {count}" for status, count in sorted(r["statuses"].items()))
        lines.append(
            f"| {name} | {r['rss_mean_mib']:.1f} | {r['rss_p99_mib']:.1f} | {r['rss_peak_mib']:.1f} "
            f"| {r['ok_per_s']:.1f} | {r['latency_p50_ms']:.0f} | {r['latency_p99_ms']:.0f} "
            f"| {show('rss_mean_mib')} | {show('rss_p99_mib')} | {show('ok_per_s')} "
            f"| {show('latency_p99_ms')} | {r['cache_hits']:.0f} | {r['cache_end_mib']:.1f} "
            f"| {statuses} |")
    memward = results.get("memward")
    if memward is not None:
        lines += ["", f"memward with hooks: {memward['measured_requests']:.0f} of "
                      f"{memward['requests']:.0f} requests the gateway read had a request arena of "
                      "their own (a per-request summary). The others ran while the pool was in "
                      "use and were counted for their tenant only."]
    if targets:
        lines += ["", "Targets for memward with hooks:", ""]
        lines += [f"- {'met' if passed else 'NOT met'}: {text}" for text, passed in targets]
    lines += ["", f"![gateway RSS over time]({chart_name})", "", run.TRACE_ATTRIBUTION, ""]
    return "\n".join(lines)


def main() -> int:
    args = parse_args()
    build = run.Build(Path(args.build_dir).resolve())
    build.check()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="memward-footprint."))
    out.mkdir(parents=True, exist_ok=True)

    runs = {name: [] for name in args.allocators}
    for repeat in range(args.repeats):
        # Rotate the order so a slow phase of the machine hits every allocator.
        order = args.allocators[repeat % len(args.allocators):] + args.allocators[:repeat % len(args.allocators)]
        for name in order:
            started = time.monotonic()
            summary = run_one(name, args, build, out / f"{name}-{repeat + 1}")
            runs[name].append(summary)
            print(f"{name} run {repeat + 1}: mean RSS {summary['rss_mean_bytes'] / 1048576:.1f} MiB, "
                  f"{summary['ok_per_s']:.1f} ok/s, p99 {summary['latency_ms']['p99']:.0f} ms, "
                  f"cache hits {summary['gateway_metrics']['memward_gateway_cache_hits_total']:.0f}, "
                  f"statuses {summary['by_status']} ({time.monotonic() - started:.0f} s)", flush=True)

    results = {name: aggregate(runs[name]) for name in args.allocators}
    add_ratios(results)
    targets = check_targets(results)
    write_chart(results, out / "rss.png")
    (out / "results.json").write_text(json.dumps(
        {"results": results, "targets": [{"target": t, "met": ok} for t, ok in targets],
         "settings": vars(args), "machine": machine_description(),
         "attribution": run.TRACE_ATTRIBUTION}, indent=2) + "\n")
    text = markdown(results, targets, args, "rss.png")
    (out / "footprint.md").write_text(text)
    print()
    print(text)
    print(f"results: {out}/results.json, chart: {out}/rss.png, markdown: {out}/footprint.md")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except run.RunError as error:
        print(f"footprint.py: error: {error}", file=sys.stderr)
        sys.exit(1)
