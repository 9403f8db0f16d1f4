"""Chaos: commits in bursts to many apps while service processes are SIGKILLed; what broke.

    python bench/chaos.py [--apps 20] [--commits 100] [--kill-every 2]
        [--replicas 2] [--nats-cluster 3] [--no-kill-postgres] [--seed N]

The run of tests/chaos/test_chaos.py (its harness, tests/chaos/harness.py) at
the size you ask for: a real Wake (every service its own process, embedded
NATS and PostgreSQL, a sandbox cluster), N apps in one repository, C commits
each changing a random subset of them, a random service killed every K
seconds, one NATS node of the cluster and PostgreSQL killed once where this
Wake restarts them. Prints the machine, the figures (apps at their latest
commit, regressions, duplicate and overlapping applies, sequence gaps, `wake
replay --verify`), every finding, and the duration. Exits 1 when anything broke.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
from pathlib import Path

# The harness is the chaos suite's (tests/ is not an installed package): one
# run, two sizes, the same checks.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.chaos.harness import ChaosConfig, run_chaos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--apps", type=int, default=20)
    parser.add_argument("--commits", type=int, default=100)
    parser.add_argument("--kill-every", type=float, default=2.0, help="seconds between SIGKILLs")
    parser.add_argument("--replicas", type=int, default=2, help="replicas of every service")
    parser.add_argument("--nats-cluster", type=int, default=3, help="NATS nodes")
    parser.add_argument("--no-kill-postgres", action="store_true", help="leave PostgreSQL alive")
    parser.add_argument("--no-kill-nats", action="store_true", help="leave every NATS node alive")
    parser.add_argument("--commit-every", type=float, default=0.5, help="mean seconds per commit")
    parser.add_argument("--latency-ms", type=float, default=5.0, help="sandbox latency")
    parser.add_argument("--converge-timeout", type=float, default=300.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--keep", type=Path, help="run here and keep the data dir and logs")
    args = parser.parse_args()
    config = ChaosConfig(
        apps=args.apps,
        commits=args.commits,
        kill_every=args.kill_every,
        replicas=args.replicas,
        nats_cluster=args.nats_cluster,
        kill_nats_node=not args.no_kill_nats,
        kill_postgres=not args.no_kill_postgres,
        seed=args.seed if args.seed is not None else random.randrange(2**32),
        commit_every=args.commit_every,
        latency_ms=args.latency_ms,
        converge_timeout=args.converge_timeout,
    )
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
        run = asyncio.run(run_chaos(args.keep, config))
    else:
        with tempfile.TemporaryDirectory(prefix="wake-chaos-") as tmp:
            run = asyncio.run(run_chaos(Path(tmp), config))
    print(run.report())
    problems = run.problems()
    for problem in problems:
        print(f"  {problem}")
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
