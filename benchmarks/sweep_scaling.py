"""How a sweep's cost grows with work: 2, 4 and 8 cells, 1 vs 2 concurrent trials, and a 2-node cluster.

The cells are equal: the smoke-sized embedded sweep's `quantity=300` cell of resnet18 (synthnet
-> synthcam, 1 pre-training and 2 fine-tuning epochs), one per seed, each trial with 1 CPU. Every
sweep runs through `run_sweep` on a Ray cluster started beforehand (`ray.cluster_utils.Cluster`,
its start timed apart), in a fresh storage dir, so no pre-trained model is reused:
- a 2-CPU node at 2, 4 and 8 cells (two trials at a time);
- the same node at 2 and 8 cells with one trial at a time (`max_concurrent=1`: the cores, the
  trials' threads and the work are those of a 1-CPU node; one cluster start is saved). The
  headline, parallel efficiency at 2 trials, compares the wall time each added cell costs: (per
  cell, 1 at a time) / (2 x per cell, 2 at a time). The fixed part (validation, Tune, each actor's
  start, imports and FFCV JIT: paid once per trial slot) is printed apart, with the whole sweeps'
  wall-time efficiency. A 1-cell sweep (`--quick`) runs one trial either way, so it is run once;
- two 1-CPU nodes on the same cores at 2 cells, against the 2-CPU node at 2 cells: what running
  over two Ray nodes costs (object transfers, two raylets), reported without a goal.
Each process's fixed costs (actor start, FFCV's JIT of its loaders) are in these wall times: a
trial slot pays them once per sweep. `--quick` runs tiny scratch cells of mobilenet_v3_small (fine-
tuning only, so half the loaders to compile) at 1 and 2 cells: it only checks that the script runs.

    python benchmarks/sweep_scaling.py [--counts 2,4,8] [--quick]
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from common import headline, isolate_ray, stopwatch

GOAL = 0.85
ONE_AT_A_TIME = "1 node x 2 CPUs, 1 trial at a time"


def spec_for(cells: int, quick: bool):
    from engine import SweepSpec
    from engine.cli import SMOKE_RECIPE, SMOKE_SOURCE_OPTIONS, SMOKE_TARGET_OPTIONS

    target = SMOKE_TARGET_OPTIONS["synthcam"]
    if quick:  # tiny scratch cells of the cheapest architecture: no pre-training, half the FFCV loaders to compile
        return SweepSpec(name=f"scaling-{cells}", sources=("synthnet",), archs=("mobilenet_v3_small",),
                         baselines=("scratch",), seeds=cells, recipe=SMOKE_RECIPE,
                         target_options={**target, "train_size": 64, "eval_size": 32, "test_size": 32})
    return SweepSpec(name=f"scaling-{cells}", intervention="quantity", values=(300,),
                     sources=("synthnet",), archs=("resnet18",), baselines=(), seeds=cells, recipe=SMOKE_RECIPE,
                     source_options={"synthnet": SMOKE_SOURCE_OPTIONS["synthnet"]}, target_options=target)


def sweep_seconds(cells: int, address: str, storage: Path, quick: bool, max_concurrent: int | None = None) -> float:
    from engine.runner import RunOptions, run_sweep

    options = RunOptions(address=address, storage_path=str(storage), cpus_per_trial=1, verbose=0,
                         max_concurrent=max_concurrent)
    with stopwatch() as elapsed:
        run_sweep(spec_for(cells, quick), options)
    return elapsed()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--counts", default="2,4,8", help="cell counts on the 2-CPU node (default 2,4,8); the largest "
                   "also runs one trial at a time")
    p.add_argument("--quick", action="store_true", help="tiny scratch cells (fine-tuning only), counts 1,2: checks "
                   "that the benchmark runs")
    args = p.parse_args(argv)
    counts = [1, 2] if args.quick else sorted(int(c) for c in args.counts.split(","))
    first, last = counts[0], counts[-1]
    isolate_ray()

    import engine.trainable  # noqa: F401  (the driver's imports, paid once before anything is timed)
    from ray.cluster_utils import Cluster

    from engine.runner import RunOptions, validate

    # write the data files once, before anything is timed (run_sweep would write missing ones first)
    plan = validate(spec_for(counts[0], args.quick), RunOptions())
    for src in (*plan.targets.values(), *plan.sources.values()):
        for split in src.splits:
            src.beton(split, 32, num_workers=os.cpu_count() or 1)
    print(f"sweep_scaling: equal cells of {spec_for(1, args.quick).archs[0]} (1 CPU per trial) on "
          f"{os.cpu_count()} cores", flush=True)

    walls: dict[tuple[str, int], float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-scaling-") as tmp:
        tmp = Path(tmp)

        def on_cluster(cpus_per_node: list[int], runs: list[tuple[str, int, int | None]]) -> None:
            """Start a cluster of `cpus_per_node`, then run each (label, cells, max_concurrent) sweep on it."""
            with stopwatch() as start_s:
                cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": cpus_per_node[0]})
                for cpus in cpus_per_node[1:]:
                    cluster.add_node(num_cpus=cpus)
                cluster.wait_for_nodes()
            try:
                for label, cells, limit in runs:
                    if (label, cells) not in walls:
                        walls[label, cells] = sweep_seconds(cells, cluster.address, tmp / f"{label}-{cells}", args.quick,
                                                            limit)
                    print(f"  {label}: {cells} cells in {walls[label, cells]:.1f} s "
                          f"({walls[label, cells] / cells:.1f} s per cell)", flush=True)
                    if cells == 1:  # one trial whatever the limit: the same sweep as one at a time
                        walls.setdefault((ONE_AT_A_TIME, 1), walls[label, 1])
            finally:
                cluster.shutdown()
            print(f"  ({' x '.join(map(str, cpus_per_node))}-CPU cluster start {start_s():.1f} s, not in the times above)",
                  flush=True)

        on_cluster([2], [*(("1 node x 2 CPUs", c, None) for c in counts), *((ONE_AT_A_TIME, c, 1) for c in (first, last))])
        on_cluster([1, 1], [("2 nodes x 1 CPU", first, None)])

    def slope(label: str) -> float:
        """Wall seconds per added cell: what the work costs once the fixed part is paid."""
        return (walls[label, last] - walls[label, first]) / (last - first)

    one, two = slope(ONE_AT_A_TIME), slope("1 node x 2 CPUs")
    for label, cluster, per_cell in (("1 trial at a time", ONE_AT_A_TIME, one),
                                     ("2 trials at a time", "1 node x 2 CPUs", two)):
        fixed = walls[cluster, first] - first * per_cell
        print(f"  {label}: {per_cell:.2f} s per added cell, fixed part {fixed:.1f} s (validation, Tune, actor start "
              "and imports, FFCV JIT of each actor's loaders)", flush=True)
    wall_one, wall_two = walls[ONE_AT_A_TIME, last], walls["1 node x 2 CPUs", last]
    print(f"  whole sweeps of {last} cells: 1 trial at a time {wall_one:.1f} s | 2 at a time {wall_two:.1f} s | "
          f"wall-time efficiency {wall_one / (2 * wall_two):.2f} (fixed parts included)", flush=True)
    multi = walls["2 nodes x 1 CPU", first] / walls["1 node x 2 CPUs", first] - 1
    print(f"  multi-node overhead at {first} cells: {multi:+.1%} (2 nodes x 1 CPU vs 1 node x 2 CPUs, same cores; "
          "no goal)", flush=True)
    # the headline: how the work itself scales from 1 to 2 concurrent trials (the fixed parts are above)
    headline("sweep_scaling", one / (2 * two), GOAL)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
