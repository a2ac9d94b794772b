"""Start memward-mock-upstream and memward-gateway, replay a trace, stop them.

Shared by the footprint benchmark (footprint.py), the pressure run
(pressure.py) and the main job (scripts/run-main.sh through main_job.py).
Everything listens on 127.0.0.1 and lives in a work folder that the caller
owns. Uses only the Python standard library.
"""

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent
TRACE_DIR = REPO_ROOT / "data" / "azure-llm-inference-2023"
CONV_TRACE = TRACE_DIR / "AzureLLMInferenceTrace_conv.csv"
CODE_TRACE = TRACE_DIR / "AzureLLMInferenceTrace_code.csv"
SYSTEM_LIB = Path("/usr/lib/x86_64-linux-gnu")

# Printed with every result built on the traces, as their publishers ask.
TRACE_ATTRIBUTION = (
    "Trace: Azure LLM inference trace 2023 (Azure/AzurePublicDataset), licensed under "
    "CC BY 4.0. Pratyush Patel, Esha Choukse, Chaojie Zhang, Aashaka Shah, Íñigo Goiri, "
    "Saeed Maleki, Ricardo Bianchini, \"Splitwise: Efficient generative LLM inference "
    "using phase splitting\", ISCA 2024."
)

HOOKS_ON = {
    "scopes": True,
    "request_memory_resource": True,
    "admission": True,
    "cache_reclaimer": True,
    "cache_unused_after_ms": 5000,
    "idle_purge": True,
    "idle_purge_after_ms": 1000,
}
HOOKS_OFF = {name: False for name, value in HOOKS_ON.items() if isinstance(value, bool)}


class RunError(Exception):
    """A program failed to start or to finish; the message names it and its log files."""


@dataclass
class Build:
    """Paths of the programs in a build folder."""

    root: Path

    @property
    def gateway(self) -> Path:
        return self.root / "bin" / "memward-gateway"

    @property
    def mock_upstream(self) -> Path:
        return self.root / "bin" / "memward-mock-upstream"

    @property
    def replay(self) -> Path:
        return self.root / "bin" / "memward-trace-replay"

    @property
    def preload(self) -> Path:
        return self.root / "lib" / "libmemward_preload.so"

    def check(self, need_preload: bool = True) -> None:
        needed = [self.gateway, self.mock_upstream, self.replay]
        if need_preload:
            needed.append(self.preload)
        missing = [str(path) for path in needed if not path.exists()]
        if missing:
            raise RunError("missing from the build: " + ", ".join(missing) +
                           "; build them with scripts/build.sh")


def tenant_names(count: int) -> list:
    return [f"tenant-{index:02d}" for index in range(1, count + 1)]


def tenant_key(name: str) -> str:
    return "sk-replay-" + name


@dataclass
class GatewaySettings:
    """Fields of the generated gateway config; the others keep the gateway's defaults."""

    upstream_port: int
    tenants: int = 8
    threads: int = 1
    hooks: dict = field(default_factory=lambda: dict(HOOKS_ON))
    cache_max_bytes: str = "64m"
    # Per-tenant soft and hard limits (sizes such as "8m"), or "0" for no limit.
    soft_limit: str = "0"
    hard_limit: str = "0"
    access_log: str = ""
    max_body_bytes: str = "1m"


def write_gateway_config(path: Path, settings: GatewaySettings) -> None:
    config = {
        "listen": "127.0.0.1:0",
        "threads": settings.threads,
        "access_log": settings.access_log,
        "limits": {"max_body_bytes": settings.max_body_bytes},
        "tenants": [
            {
                "name": name,
                "api_keys": [tenant_key(name)],
                "soft_limit": settings.soft_limit,
                "hard_limit": settings.hard_limit,
            }
            for name in tenant_names(settings.tenants)
        ],
        "models": [{"name": "mock-chat", "upstreams": [f"127.0.0.1:{settings.upstream_port}"]}],
        "cache": {"max_bytes": settings.cache_max_bytes},
        "hooks": settings.hooks,
    }
    path.write_text(json.dumps(config, indent=2) + "\n")


class Program:
    """A child process with its stdout and stderr in files of the work folder."""

    def __init__(self, name: str, argv: list, work_dir: Path, env: dict = None):
        self.name = name
        self.stdout_path = work_dir / f"{name}.stdout"
        self.stderr_path = work_dir / f"{name}.stderr"
        child_env = dict(os.environ)
        child_env.pop("LD_PRELOAD", None)
        child_env.update(env or {})
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.process = subprocess.Popen(argv, stdout=out, stderr=err, env=child_env,
                                            stdin=subprocess.DEVNULL)

    @property
    def pid(self) -> int:
        return self.process.pid

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self, timeout_s: float = 30) -> int:
        """Send SIGTERM, wait, then SIGKILL; return the exit status (negative: signal)."""
        if self.running():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def wait_for(condition, timeout_s: float, activity: str, program: Program) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if not program.running():
            raise RunError(f"{program.name} exited with status {program.process.returncode} "
                           f"while {activity}; its stderr ({program.stderr_path}):\n"
                           + program.stderr()[-2000:])
        if time.monotonic() > deadline:
            raise RunError(f"{program.name} timed out after {timeout_s} s while {activity}; "
                           f"see {program.stderr_path}")
        time.sleep(0.02)


def start_mock(build: Build, work_dir: Path, tokens_per_second: float = 50,
               first_token_delay_ms: int = 100, threads: int = 1) -> tuple:
    """Start the mock upstream on a free port; return (Program, port)."""
    port_file = work_dir / "mock.port"
    port_file.unlink(missing_ok=True)
    program = Program("mock-upstream", [
        str(build.mock_upstream), "--port=0", f"--port_file={port_file}",
        f"--tokens_per_second={tokens_per_second}",
        f"--first_token_delay_ms={first_token_delay_ms}", f"--threads={threads}",
        "--models=mock-chat",
    ], work_dir)
    wait_for(port_file.exists, 10, "starting", program)
    return program, int(port_file.read_text())


def start_gateway(build: Build, work_dir: Path, config: Path, preload: str = "",
                  memward_conf: str = "", name: str = "gateway", wrapper: list = ()) -> tuple:
    """Start the gateway with an optional LD_PRELOAD; return (Program, port).

    `wrapper` is prepended to the command line; it must exec its arguments,
    so the Program's pid is the gateway's.
    """
    env = {}
    if preload:
        env["LD_PRELOAD"] = preload
    if memward_conf:
        env["MEMWARD_CONF"] = memward_conf
    program = Program(name, [*wrapper, str(build.gateway), f"--config={config}",
                             "--listen=127.0.0.1:0"], work_dir, env)
    pattern = re.compile(r"listening on 127\.0\.0\.1:(\d+)")
    found = {}

    def listening() -> bool:
        match = pattern.search(program.stderr())
        if match:
            found["port"] = int(match.group(1))
        return bool(match)

    wait_for(listening, 15, "starting", program)
    return program, found["port"]


def http_get(port: int, path: str, timeout_s: float = 5) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(f"http://127.0.0.1:{port}{path}", timeout=timeout_s) as response:
        return response.read().decode(errors="replace")


def run_replay(build: Build, work_dir: Path, gateway_port: int, config: Path, pid: int,
               trace: Path = CONV_TRACE, start_s: float = 0, duration_s: float = 60,
               compression: float = 1, extra: list = (), name: str = "replay",
               timeout_s: float = 1800) -> dict:
    """Run memward-trace-replay to the end; return its summary JSON with the file paths."""
    paths = {kind: work_dir / f"{name}-{kind}" for kind in ("summary.json", "rss.csv", "requests.csv")}
    argv = [
        str(build.replay), f"--trace={trace}", f"--gateway=127.0.0.1:{gateway_port}",
        f"--gateway_config={config}", f"--trace_start_s={start_s}",
        f"--trace_duration_s={duration_s}", f"--time_compression={compression}",
        f"--pid={pid}", f"--summary_json={paths['summary.json']}",
        f"--rss_csv={paths['rss.csv']}", f"--records_csv={paths['requests.csv']}", *extra,
    ]
    with open(work_dir / f"{name}.stdout", "wb") as out, open(work_dir / f"{name}.stderr", "wb") as err:
        completed = subprocess.run(argv, stdout=out, stderr=err, timeout=timeout_s)
    if completed.returncode != 0:
        raise RunError(f"memward-trace-replay exited with status {completed.returncode}; see "
                       f"{work_dir / (name + '.stderr')}")
    summary = json.loads(paths["summary.json"].read_text())
    summary["printed"] = (work_dir / f"{name}.stdout").read_text(errors="replace")
    summary["rss_csv"] = str(paths["rss.csv"])
    summary["requests_csv"] = str(paths["requests.csv"])
    return summary


def read_rss_csv(path: str) -> tuple:
    """Return (times in s, RSS in MiB) from the replayer's --rss_csv file."""
    times, mebibytes = [], []
    with open(path) as lines:
        next(lines)
        for line in lines:
            time_s, rss_bytes = line.strip().split(",")
            times.append(float(time_s))
            mebibytes.append(int(rss_bytes) / 1048576)
    return times, mebibytes


def parse_metrics(text: str) -> dict:
    """Prometheus text to {name{labels}: value}; comment lines are skipped."""
    values = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            values[name] = float(value)
        except ValueError:
            continue
    return values


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
