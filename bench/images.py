"""Image benchmark: the offline renderer's time per image (goal: at most 100 ms), per
image type, and the fit step that turns a provider's image into our stored WebP.

    python -m bench.images [--runs N]

Each image type is rendered `runs` times with a different prompt each time (so colours,
shapes and layouts vary as they do in use) and a realistic headline. Both wall time and
the process's CPU time are reported: on a shared machine the wall time includes waiting
for a core, the CPU time does not.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from libs.common.testing.fake_http import solid_image
from services.writer.imaging import IMAGE_SIZES, fit_image, render_image

HEADLINES = (
    "How to choose running shoes for flat feet",
    "Cushioning versus stability: what the research says about overpronation and injury",
    "Best budget espresso machines",
    "Fit and sizing",
)
RESULTS = Path(__file__).parent / "results" / "images.json"


def _measure(run: Callable[[int], bytes], runs: int) -> dict[str, float]:
    run(-1)  # warm: fonts loaded, caches filled
    wall: list[float] = []
    cpu: list[float] = []
    sizes: list[int] = []
    for n in range(runs):
        w0, c0 = time.perf_counter(), time.process_time()
        sizes.append(len(run(n)))
        wall.append((time.perf_counter() - w0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)

    def p95(values: list[float]) -> float:
        return sorted(values)[max(0, round(0.95 * len(values)) - 1)]

    return {
        "wall_p50_ms": round(statistics.median(wall), 1),
        "wall_p95_ms": round(p95(wall), 1),
        "cpu_p50_ms": round(statistics.median(cpu), 1),
        "cpu_p95_ms": round(p95(cpu), 1),
        "kib_mean": round(statistics.mean(sizes) / 1024, 1),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=60)
    args = parser.parse_args(argv)
    results: dict[str, dict[str, float]] = {}
    for image_type, (width, height) in IMAGE_SIZES.items():
        results[f"render {image_type} {width}x{height}"] = _measure(
            lambda n, w=width, h=height, t=image_type: render_image(
                f"{t} prompt {n}", headline=HEADLINES[n % len(HEADLINES)], label="Guide",
                width=w, height=h),
            args.runs,
        )
    provider_png = solid_image(1536, 1024, "PNG", "provider")
    results["fit 1536x1024 PNG -> 1200x630 WebP"] = _measure(
        lambda n: fit_image(provider_png, 1200, 630), max(10, args.runs // 3))

    print(f"{'case':<40} {'wall p50':>9} {'wall p95':>9} {'cpu p50':>8} {'cpu p95':>8} "
          f"{'KiB':>6}")
    for case, r in results.items():
        print(f"{case:<40} {r['wall_p50_ms']:>9} {r['wall_p95_ms']:>9} {r['cpu_p50_ms']:>8} "
              f"{r['cpu_p95_ms']:>8} {r['kib_mean']:>6}")
    worst = max(r["wall_p95_ms"] for case, r in results.items() if case.startswith("render"))
    print(f"goal: render p95 <= 100 ms -> worst type {worst} ms "
          f"({'met' if worst <= 100 else 'NOT met'})")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
