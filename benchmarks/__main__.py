"""`make bench`: every benchmark, each reporting ratios against baselines from the same run."""

from pathlib import Path

from benchmarks import segments_bench

if __name__ == "__main__":
    segments_bench.main(10_000_000, Path(".careloop/bench"))
