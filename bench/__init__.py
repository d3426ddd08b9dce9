"""The benchmark suite: our code paths measured beside their ceilings in the same run.

Run it with ``make bench`` (or ``python -m bench --quick``); see bench/cli.py for the options
and docs/benchmarks.md for what each benchmark measures."""
