"""`make bench`: every benchmark, each reporting ratios against baselines from the same run."""

from pathlib import Path

from benchmarks import (
    cli_bench,
    load_bench,
    segments_bench,
    send_bench,
    service_bench,
    topology_bench,
    year_bench,
)

if __name__ == "__main__":
    home = Path(".careloop/bench")
    segments_bench.main(10_000_000, home)
    benches = (
        ("send", send_bench),
        ("service", service_bench),
        ("cli", cli_bench),
        ("topology", topology_bench),
        ("load", load_bench),
        ("year", year_bench),
    )
    for name, bench in benches:
        lines = bench.main(home)
        print("\n".join(lines))
        (home / f"{name}-bench.txt").write_text("\n".join(lines) + "\n")
