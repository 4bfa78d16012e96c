"""Summarise a py-spy raw (collapsed stacks) profile: where the time goes.

    py-spy record -f raw -o engine.txt -- .venv/bin/klubpost send ID
    .venv/bin/python bench/stacks.py engine.txt [FUNCTION ...]

Prints the share of samples spent inside (inclusive) a few engine functions, or
the ones named, and the functions most often at the top of a stack (self time).
"""

from __future__ import annotations

import sys
from collections import Counter

WATCH = [
    "claim_batch",
    "record_results",
    "finish_if_done",
    "sending_campaign_ids",
    "envelope_for",
    "personalize",
    "build_message",
    "signature_header",
    "send_many",
    "_reply",
    "_send",
    "progress",
    "_show_progress",
    "sign",
]


def main() -> None:
    """Read the file named on the command line and print the summary."""
    path, *names = sys.argv[1:]
    inclusive: Counter[str] = Counter()
    leaf: Counter[str] = Counter()
    total = 0
    with open(path, encoding="utf-8") as stacks:
        lines = stacks.readlines()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        seen = set()
        for frame in frames:
            name = frame.split(" (")[0].strip()
            if name not in seen:
                inclusive[name] += samples
                seen.add(name)
        leaf[frames[-1].strip()] += samples
    print(f"{total} samples")
    for name in names or WATCH:
        print(f"  {inclusive[name] / total:6.1%}  in {name}")
    print("most often on top of the stack:")
    for frame, samples in leaf.most_common(15):
        print(f"  {samples / total:6.1%}  {frame}")


if __name__ == "__main__":
    main()
