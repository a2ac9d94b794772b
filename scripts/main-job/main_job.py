#!/usr/bin/python3
"""The main job after the build: the gateway with memward under a replayed trace.

Starts memward-mock-upstream and memward-gateway (LD_PRELOAD=
libmemward_preload.so, every hook on) on 127.0.0.1, replays a slice of the
Azure LLM conversation trace with memward-trace-replay, prints a summary,
and stops both with SIGTERM. scripts/run-main.sh runs it after installing
and building; it can also be run alone on a finished build:

    /usr/bin/python3 scripts/main-job/main_job.py --build-dir build

Exits 0 only if every check in the "Checks" section passes.
"""

import argparse
import http.client
import json
import socket
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO_ROOT / "bench" / "gateway"))
import gateway_run as run  # noqa: E402  (shared with the benchmarks)

ADMIN_SOCKET_DIR = Path("/tmp/memward")
MEMWARDCTL = REPO_ROOT / "integrations" / "memwardctl" / "memwardctl"
ANSWERED = {"200", "429", "503"}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build-dir", default=str(REPO_ROOT / "build"))
    parser.add_argument("--trace-seconds", type=float, default=600,
                        help="length of the conversation-trace slice in trace seconds (default 600)")
    parser.add_argument("--time-compression", type=float, default=10,
                        help="trace seconds replayed per second (default 10: about a minute)")
    parser.add_argument("--hold-s", type=float, default=0,
                        help="keep the gateway running this many seconds after the replay, to "
                             "try the memwardctl commands (default 0)")
    args = parser.parse_args()
    if not 1 <= args.trace_seconds <= 3600:
        parser.error("--trace-seconds must be from 1 to 3600")
    if not 0.1 <= args.time_compression <= 1000:
        parser.error("--time-compression must be from 0.1 to 1000")
    if not 0 <= args.hold_s <= 3600:
        parser.error("--hold-s must be from 0 to 3600")
    return args


def section(title: str) -> None:
    print(f"\n== {title} ==", flush=True)


def admin_get(pid: int, target: str):
    """GET `target` from memward's admin socket of `pid`; None when there is none."""
    path = ADMIN_SOCKET_DIR / f"{pid}.sock"
    if not path.exists():
        return None
    connection = http.client.HTTPConnection("localhost", timeout=5)
    try:
        connection.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.sock.settimeout(5)
        connection.sock.connect(str(path))
        connection.request("GET", target)
        response = connection.getresponse()
        body = response.read()
        return json.loads(body) if response.status == 200 else None
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def access_log_peaks(path: Path) -> dict:
    """Per tenant: requests, the largest request peak and the escaped bytes, from the access log."""
    tenants = defaultdict(lambda: {"requests": 0, "peak_bytes": 0, "escaped_bytes": 0,
                                   "measured": 0})
    if not path.exists():
        return {}
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not entry.get("tenant"):
            continue
        tenant = tenants[entry["tenant"]]
        tenant["requests"] += 1
        if entry.get("memward_request"):
            tenant["measured"] += 1
            tenant["peak_bytes"] = max(tenant["peak_bytes"], entry.get("peak_bytes", 0))
            tenant["escaped_bytes"] += entry.get("escaped_bytes", 0) if entry.get("cache") != "fill" else 0
    return dict(tenants)


def mib(value: float) -> str:
    return f"{value / 1048576:.1f} MiB"


def print_top_tenants(admin_tenants, log_tenants: dict) -> None:
    if admin_tenants:
        print("top tenants by peak live bytes (memward admin socket, GET /tenants; the "
              "memward tenant, memward's own warden, admin server and sampler, is not shown):")
        rows = sorted((t for t in admin_tenants.get("tenants", [])
                       if t.get("name") not in ("memward", "process")),
                      key=lambda t: t.get("peak_bytes", 0), reverse=True)
        for tenant in rows[:5]:
            print(f"  {tenant.get('name', '?'):<12} peak {mib(tenant.get('peak_bytes', 0))}, "
                  f"live {mib(tenant.get('live_bytes', 0))}, admitted {tenant.get('admitted', 0)}, "
                  f"shed {tenant.get('shed', 0)}, rejected {tenant.get('rejected', 0)}")
        return
    print("top tenants by their largest request peak (the gateway's access log; memward's "
          "admin socket is not in this build):")
    rows = sorted(log_tenants.items(), key=lambda item: item[1]["peak_bytes"], reverse=True)
    for name, tenant in rows[:5]:
        print(f"  {name:<12} largest request peak {tenant['peak_bytes'] / 1024:.0f} KiB over "
              f"{tenant['measured']} measured of {tenant['requests']} requests")


def print_leak_suspects(admin_leaks, metrics: dict) -> None:
    escapes = int(metrics.get("memward_gateway_requests_with_escapes_other_total", 0))
    escaped = metrics.get("memward_gateway_escaped_bytes_other_total", 0)
    print(f"requests that stored nothing yet left bytes live (gateway metrics): {escapes}, "
          f"{escaped:.0f} bytes")
    if admin_leaks is None:
        print("leak suspects from memward's sampler: not available (no admin socket, or no "
              "GET /leaks in this build)")
        return
    sites = next((value for value in admin_leaks.values() if isinstance(value, list)), [])
    print(f"leak suspects from memward's sampler (GET /leaks): {len(sites)} (a cache that is "
          "still filling toward its bound is listed too)")
    for site in sites[:5]:
        function = str(site.get("function", "?"))
        if len(function) > 90:
            function = function[:87] + "..."
        print(f"  {site.get('rank', '?')}. {function}: {mib(site.get('live_bytes', 0))} live, "
              f"growing {site.get('growth_bytes_per_second', 0) / 1024:.1f} KiB/s")


def print_hints(pid: int, port: int) -> None:
    """Prints the commands that look into the running gateway."""
    for command in ("stats", "tenants", "top", "requests", "leaks", "cgroup"):
        print(f"  {MEMWARDCTL.relative_to(REPO_ROOT)} -p {pid} {command}")
    print(f"  curl -s --unix-socket /tmp/memward/{pid}.sock http://memward/stats")
    print(f"  curl -s http://127.0.0.1:{port}/metrics")


def print_measured_requests(peaks: dict) -> None:
    """Prints how many requests had a request arena, and so a per-request summary."""
    total = sum(tenant["requests"] for tenant in peaks.values())
    measured = sum(tenant["measured"] for tenant in peaks.values())
    line = f"requests with a request arena (per-request accounting): {measured} of {total}"
    if measured < total:
        line += ("; the others arrived while all request_arenas were in use and were counted "
                 "for their tenant only")
    print(line)


def main() -> int:
    args = parse_args()
    build = run.Build(Path(args.build_dir).resolve())
    build.check()
    work_dir = Path(tempfile.mkdtemp(prefix="memward-main."))
    access_log = work_dir / "access.log"
    checks = []

    section("Starting memward-mock-upstream and memward-gateway on 127.0.0.1")
    mock, mock_port = run.start_mock(build, work_dir)
    gateway = None
    try:
        config = work_dir / "gateway.json"
        run.write_gateway_config(config, run.GatewaySettings(
            upstream_port=mock_port, access_log=str(access_log)))
        gateway, port = run.start_gateway(build, work_dir, config,
                                          preload=str(build.preload.resolve()))
        print(f"mock upstream: http://127.0.0.1:{mock_port} (50 tokens/s, first token after 100 ms)")
        print(f"gateway: http://127.0.0.1:{port}, pid {gateway.pid}, "
              f"LD_PRELOAD={build.preload.resolve()}")
        print(f"config: {config} (8 tenants, every memward hook on)")
        mapped = str(build.preload.resolve()) in Path(f"/proc/{gateway.pid}/maps").read_text()
        checks.append((mapped, "libmemward_preload.so is mapped in the gateway"))

        section(f"Replaying {args.trace_seconds:g} s of the conversation trace, "
                f"{args.time_compression:g}x compressed")
        started = time.monotonic()
        summary = run.run_replay(build, work_dir, port, config, gateway.pid,
                                 duration_s=args.trace_seconds, compression=args.time_compression)
        print(f"replay took {time.monotonic() - started:.0f} s")
        metrics = run.parse_metrics(run.http_get(port, "/metrics"))
        admin_tenants = admin_get(gateway.pid, "/tenants")
        admin_leaks = admin_get(gateway.pid, "/leaks")
        if args.hold_s > 0:
            print(f"holding the gateway (pid {gateway.pid}) for {args.hold_s:g} s; try:")
            print_hints(gateway.pid, port)
            sys.stdout.flush()
            time.sleep(args.hold_s)
        gateway_pid = gateway.pid
        alive = gateway.running()
        checks.append((alive, "the gateway ran through the replay"))

        section("Stopping the gateway and the mock upstream (SIGTERM)")
        gateway_status = gateway.stop()
        mock_status = mock.stop()
        print(f"gateway exited with status {gateway_status}, mock upstream with {mock_status}")
        checks.append((gateway_status == 0, f"the gateway exited with status {gateway_status}"))
        checks.append((mock_status == 0, f"the mock upstream exited with status {mock_status}"))
    finally:
        if gateway is not None:
            gateway.stop()
        mock.stop()

    section("Summary")
    statuses = summary["by_status"]
    print("requests by status: " + ", ".join(
        f"{'no response' if status == '0' else status}: {count}"
        for status, count in sorted(statuses.items())))
    latency, first = summary["latency_ms"], summary["first_byte_ms"]
    print(f"latency of 200 responses (ms): p50 {latency['p50']:.0f}, p90 {latency['p90']:.0f}, "
          f"p99 {latency['p99']:.0f}, max {latency['max']:.0f}")
    print(f"first event of 200 streams (ms): p50 {first['p50']:.0f}, p99 {first['p99']:.0f}")
    print(f"throughput: {summary['ok_per_s']:.1f} responses/s, "
          f"{summary['tokens_per_s']:.0f} completion tokens/s")
    print(f"gateway resident memory (VmRSS every 100 ms, {summary['rss_samples']} samples): "
          f"average {mib(summary['rss_mean_bytes'])}, p99 {mib(summary['rss_p99_bytes'])}, "
          f"peak {mib(summary['rss_peak_bytes'])}")
    hits = int(metrics.get("memward_gateway_cache_hits_total", 0))
    print(f"response cache: {hits} hits, {mib(metrics.get('memward_gateway_cache_bytes', 0))} held")
    peaks = access_log_peaks(access_log)
    print_top_tenants(admin_tenants, peaks)
    print_measured_requests(peaks)
    print_leak_suspects(admin_leaks, metrics)

    section("Look further")
    if args.hold_s > 0:
        print(f"the gateway (pid {gateway_pid}) has stopped after its {args.hold_s:g} s hold; "
              "rerun with a longer --hold-s to try these for longer:")
    else:
        print(f"the gateway (pid {gateway_pid}) has stopped; rerun with --hold-s 300 (or "
              "longer) to keep it up after the replay, and try, while it runs:")
    print_hints(gateway_pid, port)
    print(f"files: {work_dir} (gateway.json, access.log, replay-requests.csv, replay-rss.csv, "
          "replay-summary.json, the programs' stderr)")

    section("Checks")
    checks.append((summary["transport_errors"] == 0,
                   f"requests without a response: {summary['transport_errors']}"))
    checks.append((set(statuses) <= ANSWERED,
                   f"every status is 200, 429 or 503: {sorted(statuses)}"))
    checks.append((summary["incomplete"] == 0, f"200 streams without [DONE]: {summary['incomplete']}"))
    checks.append((summary["rss_samples"] > 0, f"RSS samples taken: {summary['rss_samples']}"))
    for passed, text in checks:
        print(f"{'ok  ' if passed else 'FAIL'}  {text}")

    section("Data")
    print(run.TRACE_ATTRIBUTION)
    failed = [text for passed, text in checks if not passed]
    print(f"\nmain job {'FAILED: ' + str(len(failed)) + ' check(s) failed' if failed else 'passed'}")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except run.RunError as error:
        print(f"main_job.py: error: {error}", file=sys.stderr)
        sys.exit(1)
