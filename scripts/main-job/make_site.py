#!/usr/bin/env python3
"""Generate the main job's response files and replay plan from an LLM trace.

The trace is a CSV file with the columns TIMESTAMP, ContextTokens and
GeneratedTokens (the Azure LLM inference trace 2023). For every distinct
bucket of GeneratedTokens this writes one response file shaped like an
OpenAI chat-completion body, whose message content is about 4 bytes per
token. The replay plan has one line per trace row, in trace order:
`<request path> <context tokens> <generated tokens>`, read by replay.lua.
"""

import argparse
import csv
import json
import sys
from pathlib import Path

# Completion lengths are rounded up to a multiple of this many tokens, so the
# 623 distinct lengths in the conversation trace (7 to 1,000 tokens) need 55
# response files.
BUCKET_TOKENS = 16
BYTES_PER_TOKEN = 4
FILLER_TOKEN = "tok "
PATH_PREFIX = "/v1/chat/completions/"
REQUIRED_COLUMNS = ("ContextTokens", "GeneratedTokens")


def bucket_for(generated_tokens: int) -> int:
    return max(1, -(-generated_tokens // BUCKET_TOKENS)) * BUCKET_TOKENS


def response_name(bucket: int) -> str:
    return f"tokens-{bucket:04d}"


def completion_body(bucket: int) -> bytes:
    assert len(FILLER_TOKEN) == BYTES_PER_TOKEN
    body = {
        "id": f"chatcmpl-replay-{bucket:04d}",
        "object": "chat.completion",
        "created": 1700158546,
        "model": "trace-replay",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": FILLER_TOKEN * bucket},
                "finish_reason": "length",
            }
        ],
        # One file serves every prompt length, so prompt_tokens is not known.
        "usage": {"completion_tokens": bucket},
    }
    return (json.dumps(body, separators=(",", ":")) + "\n").encode()


def read_trace(trace: Path) -> list[tuple[int, int]]:
    rows = []
    with trace.open(newline="") as file:
        reader = csv.DictReader(file)
        missing = [name for name in REQUIRED_COLUMNS if name not in (reader.fieldnames or [])]
        if missing:
            raise SystemExit(f"{trace}: missing column(s) {', '.join(missing)}; "
                             f"expected a header with {', '.join(REQUIRED_COLUMNS)}")
        for line_number, row in enumerate(reader, start=2):
            try:
                context_tokens = int(row["ContextTokens"])
                generated_tokens = int(row["GeneratedTokens"])
            except (TypeError, ValueError):
                raise SystemExit(f"{trace}:{line_number}: invalid token count in {row}; "
                                 "expected whole numbers")
            if context_tokens < 0 or generated_tokens < 0:
                raise SystemExit(f"{trace}:{line_number}: negative token count in {row}")
            rows.append((context_tokens, generated_tokens))
    if not rows:
        raise SystemExit(f"{trace}: no trace rows after the header")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trace", type=Path, required=True, help="trace CSV file")
    parser.add_argument("--site", type=Path, required=True,
                        help="folder for the response files (created)")
    parser.add_argument("--plan", type=Path, required=True, help="replay plan file to write")
    args = parser.parse_args()

    rows = read_trace(args.trace)
    args.site.mkdir(parents=True, exist_ok=True)
    buckets = sorted({bucket_for(generated) for _, generated in rows})
    response_bytes = {}
    for bucket in buckets:
        body = completion_body(bucket)
        (args.site / response_name(bucket)).write_bytes(body)
        response_bytes[bucket] = len(body)

    with args.plan.open("w") as plan:
        for context_tokens, generated_tokens in rows:
            path = PATH_PREFIX + response_name(bucket_for(generated_tokens))
            plan.write(f"{path} {context_tokens} {generated_tokens}\n")

    mean_response = sum(response_bytes[bucket_for(g)] for _, g in rows) / len(rows)
    mean_context = sum(context for context, _ in rows) / len(rows)
    print(f"trace: {len(rows)} requests from {args.trace.name}; "
          f"{len(buckets)} response files of {min(response_bytes.values())} to "
          f"{max(response_bytes.values())} bytes (mean per request {mean_response:.0f}); "
          f"prompt mean {mean_context:.0f} tokens, max {max(c for c, _ in rows)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
