#!/usr/bin/python3
"""Run the main job on a short trace slice and check each line of its summary.

Used by CTest (gateway.main_job_summary). Exits 1 and names the first
missing line, with the job's output, when the summary is incomplete.
"""

import argparse
import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent.parent

# Each pattern must match one line of the output.
EXPECTED_LINES = [
    r"^gateway: http://127\.0\.0\.1:\d+, pid \d+, LD_PRELOAD=.*libmemward_preload\.so$",
    r"^requests by status: 200: \d+",
    r"^latency of 200 responses \(ms\): p50 \d+, p90 \d+, p99 \d+, max \d+$",
    r"^first event of 200 streams \(ms\): p50 \d+, p99 \d+$",
    r"^gateway resident memory \(VmRSS every 100 ms, \d+ samples\): average [0-9.]+ MiB, "
    r"p99 [0-9.]+ MiB, peak [0-9.]+ MiB$",
    r"^top tenants by ",
    r"^  tenant-01 ",
    r"^requests that stored nothing yet left bytes live \(gateway metrics\): 0, 0 bytes$",
    r"^leak suspects from memward's sampler",
    r"^  integrations/memwardctl/memwardctl -p \d+ tenants$",
    r"^ok    every status is 200, 429 or 503",
    r"^ok    the gateway exited with status 0$",
    r"licensed under CC BY 4\.0",
    r"^main job passed$",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--build-dir", required=True)
    args = parser.parse_args()
    completed = subprocess.run(
        ["/usr/bin/python3", str(REPO_ROOT / "scripts" / "main-job" / "main_job.py"),
         "--build-dir", args.build_dir, "--trace-seconds", "30", "--time-compression", "10"],
        capture_output=True, text=True, timeout=110)
    output = completed.stdout + completed.stderr
    if completed.returncode != 0:
        print(f"main_job.py exited with status {completed.returncode}:\n{output}")
        return 1
    for pattern in EXPECTED_LINES:
        if not re.search(pattern, completed.stdout, re.MULTILINE):
            print(f"no line of the main job's output matches {pattern!r}:\n{output}")
            return 1
    print(completed.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
