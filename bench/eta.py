"""How true is the ETA? A real build, its ETA at every progress report against the time it then took.

    python bench/eta.py [--layers block1_conv1,block3_conv1,block5_conv3] [--filters 0:12]
                        [--size 128] [--steps 128] [--scales 0.5,1] [--executor local]

The default is the build a new user tried: VGG16-HED (from ../shared), three layers, 12
filters each, into a fresh cache, at what was then the CPU default (128 steps, half at
half size). The coarse-to-fine schedule stays the default here because it is the harder
case: its coarse steps cost a quarter of its fine ones, and the ETA must know. Every time the build reports
progress, the bench records the work done (in FLOPs) and the ETA; when the build ends it
knows the time that was really left at each of those moments. Target: from 25% of the
work on, every ETA within ±25% of the time actually left.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from common import SHARED, machine  # first: it puts the repository on the path

from gallery.orchestrate import estimate as estimate_module, pipeline, progress as progress_module  # noqa: E402
from gallery.config import BuildConfig, RenderSettings, parse_filter_slice  # noqa: E402

TARGET = 0.25


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(SHARED / "models" / "vgg16_hed_notop.keras"))
    parser.add_argument("--layers", default="block1_conv1,block3_conv1,block5_conv3")
    parser.add_argument("--filters", default="0:12")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=128)
    parser.add_argument("--scales", default="0.5,1")
    parser.add_argument("--executor", default="local")
    parser.add_argument("--all", action="store_true", help="print every ETA, not a few")
    args = parser.parse_args()
    if not Path(args.model).is_file():
        sys.exit(f"bench/eta.py needs {args.model} (the offline fixtures in ../shared)")
    print(f"machine: {machine()}; {Path(args.model).name}, layers {args.layers}, "
          f"filters {args.filters}, {args.size} px, {args.steps} steps, scales {args.scales}, executor {args.executor}")

    trace = []  # (time, work done, ETA)
    draw = progress_module.Progress.draw

    def recording(self, force=False):
        trace.append((time.monotonic(), self.work_done(), self.remaining()))
        return draw(self, force)

    progress_module.Progress.draw = recording
    planned = []  # the plan's estimate, and when the run it estimates began
    calibrate = estimate_module.calibrate

    def remembered(*a, **k):
        planned.append(calibrate(*a, **k))
        planned.append(time.monotonic())
        return planned[0]

    estimate_module.calibrate = remembered
    work = Path(tempfile.mkdtemp(prefix="eta-bench-"))
    config = BuildConfig(model=args.model, preprocess="caffe", layers=tuple(args.layers.split(",")),
                         filters=parse_filter_slice(args.filters), images=(SHARED / "samples",),
                         render=RenderSettings(size=args.size, steps=args.steps, scales=tuple(map(float, args.scales.split(",")))), out=work / "site",
                         cache=work / "cache", executor=args.executor)
    pipeline.build(config)
    end = time.monotonic()
    rows = [(done, eta, end - t) for t, done, eta in trace if eta is not None and end - t > 1.0]
    if planned and planned[0].seconds is not None:
        print(f"plan: {planned[0].seconds:.0f} s estimated before the run, {end - planned[1]:.0f} s taken "
              f"({planned[0].seconds / (end - planned[1]) - 1:+.0%})")
    start = trace[0][0] if trace else end
    if rows:
        first = next((t, done) for t, done, eta in trace if eta is not None)
        print(f"first ETA at {first[1]:.1%} of the work, {first[0] - start:.0f} s into the run "
              f"(before it: 'estimating…'); {len(rows)} ETAs in all")
    print(f"{'work done':>10} {'ETA (s)':>9} {'really left (s)':>16} {'error':>7}")
    worst = 0.0
    marks = [r[0] for r in rows] if args.all else (0.10, 0.25, 0.40, 0.50, 0.60, 0.75, 0.90)
    for mark in marks:
        row = next((r for r in rows if r[0] >= mark), None)
        if row:
            print(f"{row[0]:>10.1%} {row[1]:>9.0f} {row[2]:>16.0f} {row[1] / row[2] - 1:>+7.0%}")
    for done, eta, left in rows:
        if done >= TARGET:
            worst = max(worst, abs(eta / left - 1))
    checked = sum(done >= TARGET for done, _, _ in rows)
    print(f"from {TARGET:.0%} of the work on: {checked} ETAs, the worst {worst:.0%} off the time really left "
          f"(target ±{TARGET:.0%}): {'met' if worst <= TARGET else 'NOT met'}")


if __name__ == "__main__":
    main()
