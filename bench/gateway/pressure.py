#!/usr/bin/python3
"""The gateway under a real cgroup v1 memory limit smaller than the trace needs.

Two runs replay the same trace slice with a response cache far larger than
the limit, each with the gateway alone in a new child of this process's
memory cgroup (memory.limit_in_bytes, and memory.memsw.limit_in_bytes where
the kernel has it, so swap cannot hide the overrun):

  ladder      memward preloaded with every gateway hook on and
              MEMWARD_CONF=pressure_monitor=true: memward reads the cgroup,
              asks the cache (a reclaimer) for memory, purges, and makes
              admission answer 503 when the level is high
  no-ladder   the same gateway and config without memward (glibc malloc):
              nothing watches the limit, so the cache grows into it

Expected: the ladder run keeps the gateway alive, under the limit, with
every request answered 200, 429 or 503; the no-ladder run is OOM-killed or
hits the limit. Both are reported with the cgroup's counters (max usage,
failcnt, oom_kill), and the script exits 0 only when both expectations hold.

Needs root, a cgroup v1 memory controller, and a memward build whose
preload library has the pressure ladder and the reclaimer API. The child
cgroups are removed at the end, also on errors.

    /usr/bin/python3 bench/gateway/pressure.py --build-dir build --limit-mib 48
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gateway_run as run  # noqa: E402  (lives next to this script)

CGROUP_V1_MEMORY = Path("/sys/fs/cgroup/memory")
ANSWERED = {"200", "429", "503"}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build-dir", default=str(run.REPO_ROOT / "build"))
    parser.add_argument("--out", default="", help="output folder (default: a new temporary one)")
    parser.add_argument("--limit-mib", type=int, default=48,
                        help="memory limit of the gateway's cgroup in MiB (default 48)")
    parser.add_argument("--cache-max", default="1g",
                        help="the gateway's cache.max_bytes, larger than the limit (default 1g)")
    parser.add_argument("--trace-duration-s", type=float, default=600,
                        help="slice length in trace seconds (default 600)")
    parser.add_argument("--time-compression", type=float, default=10,
                        help="trace seconds per second of replay (default 10)")
    parser.add_argument("--runs", default="ladder,no-ladder",
                        help="comma-separated runs: ladder, no-ladder")
    args = parser.parse_args()
    args.runs = [name for name in args.runs.split(",") if name]
    for name in args.runs:
        if name not in ("ladder", "no-ladder"):
            parser.error(f"unknown run '{name}'; choose ladder or no-ladder")
    if not 8 <= args.limit_mib <= 65536:
        parser.error("--limit-mib must be from 8 to 65536")
    return args


def own_memory_cgroup() -> Path:
    """Return the cgroup v1 memory directory of this process, or raise RunError."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            directory = CGROUP_V1_MEMORY / path.lstrip("/")
            if (directory / "memory.limit_in_bytes").exists():
                return directory
    raise run.RunError("no cgroup v1 memory controller for this process in /proc/self/cgroup "
                       f"mounted under {CGROUP_V1_MEMORY}; this script needs cgroup v1")


class ChildCgroup:
    """A child memory cgroup with a limit; removed by close() once its processes are gone."""

    def __init__(self, parent: Path, name: str, limit_bytes: int):
        self.path = parent / name
        self.path.mkdir()
        (self.path / "memory.limit_in_bytes").write_text(str(limit_bytes))
        memsw = self.path / "memory.memsw.limit_in_bytes"
        # memsw counts memory plus swap; it must be set after the memory limit.
        if memsw.exists():
            memsw.write_text(str(limit_bytes))
        self.limit_bytes = int((self.path / "memory.limit_in_bytes").read_text())

    def read(self, name: str) -> str:
        return (self.path / name).read_text()

    def counters(self) -> dict:
        oom = dict(line.split() for line in self.read("memory.oom_control").splitlines())
        return {
            "limit_bytes": self.limit_bytes,
            "max_usage_bytes": int(self.read("memory.max_usage_in_bytes")),
            "failcnt": int(self.read("memory.failcnt")),
            "oom_kill": int(oom.get("oom_kill", 0)),
        }

    def close(self) -> None:
        deadline = time.monotonic() + 10
        while self.read("cgroup.procs").strip() and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            self.path.rmdir()
        except OSError as error:
            print(f"pressure.py: warning: could not remove {self.path}: {error}", file=sys.stderr)


class UsageSampler(threading.Thread):
    """Reads the cgroup's memory.usage_in_bytes every 100 ms."""

    def __init__(self, cgroup: ChildCgroup):
        super().__init__(daemon=True)
        self.cgroup = cgroup
        self.samples = []
        self.stop_event = threading.Event()

    def run(self):
        start = time.monotonic()
        while not self.stop_event.wait(0.1):
            try:
                usage = int(self.cgroup.read("memory.usage_in_bytes"))
            except OSError:
                break
            self.samples.append((time.monotonic() - start, usage))


def run_one(name: str, args, build: run.Build, parent: Path, out: Path) -> dict:
    work_dir = out / name
    work_dir.mkdir(parents=True, exist_ok=True)
    limit = args.limit_mib * 1048576
    mock, mock_port = run.start_mock(build, work_dir)
    cgroup = ChildCgroup(parent, f"memward-pressure-{os.getpid()}-{name}", limit)
    gateway = None
    sampler = UsageSampler(cgroup)
    try:
        config = work_dir / "gateway.json"
        # Dropping unused entries would keep the cache small in both runs, so
        # the run without memward would never reach the limit. This run
        # measures the ladder's reclaim, so entries live until memward reclaims them.
        hooks = dict(run.HOOKS_ON, cache_unused_after_ms=0)
        run.write_gateway_config(config, run.GatewaySettings(
            upstream_port=mock_port, hooks=hooks, cache_max_bytes=args.cache_max))
        # The shell joins the cgroup and then execs the gateway, so every
        # byte the gateway allocates is charged to the child cgroup.
        wrapper = ["/bin/sh", "-c", 'echo $$ > "$0" && exec "$@"', str(cgroup.path / "cgroup.procs")]
        ladder = name == "ladder"
        gateway, port = run.start_gateway(
            build, work_dir, config, preload=str(build.preload.resolve()) if ladder else "",
            memward_conf="pressure_monitor=true" if ladder else "", wrapper=wrapper)
        member = f"{gateway.pid}" in cgroup.read("cgroup.procs").split()
        if not member:
            raise run.RunError(f"the gateway (pid {gateway.pid}) is not in {cgroup.path}")
        sampler.start()
        summary = run.run_replay(build, work_dir, port, config, gateway.pid,
                                 duration_s=args.trace_duration_s,
                                 compression=args.time_compression,
                                 extra=["--repeat_share=0", "--stream_share=0.5"],
                                 timeout_s=1800)
        alive = gateway.running()
        metrics = {}
        if alive:
            metrics = {key: value for key, value in run.parse_metrics(run.http_get(port, "/metrics")).items()
                       if key.startswith(("memward_gateway_cache", "memward_gateway_rejected"))}
    finally:
        sampler.stop_event.set()
        status = gateway.stop() if gateway else None
        mock.stop()
        counters = cgroup.counters()
        cgroup.close()
    statuses = summary["by_status"]
    return {
        "run": name,
        "alive_after_replay": alive,
        "exit_status": status,
        "cgroup": counters,
        "usage_peak_sampled_bytes": max((usage for _, usage in sampler.samples), default=0),
        "by_status": statuses,
        "transport_errors": summary["transport_errors"],
        "only_answered_statuses": set(statuses) <= ANSWERED,
        "rss_peak_bytes": summary["rss_peak_bytes"],
        "gateway_metrics": metrics,
        "printed": summary["printed"],
    }


def verdict(result: dict) -> tuple:
    """Return (expectation met, explanation) for one run."""
    c = result["cgroup"]
    if result["run"] == "ladder":
        ok = (result["alive_after_replay"] and c["oom_kill"] == 0 and
              result["transport_errors"] == 0 and result["only_answered_statuses"] and
              c["max_usage_bytes"] <= c["limit_bytes"])
        return ok, ("alive, no OOM kill, every request answered 200/429/503"
                    if ok else "the ladder did not keep the gateway under its limit")
    over = c["oom_kill"] > 0 or not result["alive_after_replay"] or c["failcnt"] > 0
    return over, ("went past the limit (OOM kill or allocation failures at the limit)"
                  if over else "stayed under the limit without the ladder: raise the load "
                               "or lower --limit-mib")


def main() -> int:
    args = parse_args()
    if os.geteuid() != 0:
        raise run.RunError("creating cgroups needs root")
    build = run.Build(Path(args.build_dir).resolve())
    build.check()
    parent = own_memory_cgroup()
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="memward-pressure."))
    out.mkdir(parents=True, exist_ok=True)

    results, all_met = [], True
    for name in args.runs:
        result = run_one(name, args, build, parent, out)
        met, explanation = verdict(result)
        result["expectation_met"], result["explanation"] = met, explanation
        all_met &= met
        results.append(result)
        c = result["cgroup"]
        print(f"{name}: limit {c['limit_bytes'] / 1048576:.0f} MiB, max usage "
              f"{c['max_usage_bytes'] / 1048576:.1f} MiB, failcnt {c['failcnt']}, oom_kill "
              f"{c['oom_kill']}, gateway alive after the replay: {result['alive_after_replay']}, "
              f"exit status {result['exit_status']}, statuses {result['by_status']}, "
              f"transport errors {result['transport_errors']}")
        metrics = result["gateway_metrics"]
        if metrics:
            print(f"  cache: {metrics.get('memward_gateway_cache_bytes', 0) / 1048576:.1f} MiB held, "
                  f"{metrics.get('memward_gateway_cache_reclaimed_bytes_total', 0) / 1048576:.1f} MiB "
                  f"given back at memward's request; 503 under pressure: "
                  f"{metrics.get('memward_gateway_rejected_pressure_total', 0):.0f}")
        print(f"  {'expected' if met else 'NOT as expected'}: {explanation}", flush=True)
    (out / "pressure.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {out}/pressure.json")
    print(run.TRACE_ATTRIBUTION)
    return 0 if all_met else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (run.RunError, subprocess.SubprocessError) as error:
        print(f"pressure.py: error: {error}", file=sys.stderr)
        sys.exit(1)
