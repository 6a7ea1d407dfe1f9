"""Whether bf16 can pay on this CPU: its bf16 instructions, and matmuls of the model's shapes in fp32 and bf16.

    python -m benchmarks.bf16            # medians of 5 passes after a warm-up, the threads of `--threads`

bf16 halves the bytes a matmul reads; it runs faster only where the CPU computes in bf16 natively (AVX-512
BF16 or AMX, the `avx512_bf16` and `amx_bf16` flags of /proc/cpuinfo). Elsewhere torch converts to fp32 around
every product and the matmul runs slower than in fp32. The shapes are the HAN's at the IMDB-sized stand-in's
batches: all words of a batch through a projection ((4096 | 8192) x 200 @ 200 x (300 | 600)), a sentence
level's (512 rows), and one recurrent step's (64 rows x 50 @ 50 x 150). One JSON line per shape and dtype,
then the bf16/fp32 ratio of each shape.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch

from benchmarks.common import emit, load_average, timed_passes

SHAPES = [(4096, 200, 300), (8192, 200, 600), (512, 200, 300), (64, 200, 300), (64, 50, 150)]
NATIVE_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags() -> set[str]:
    """The instruction-set flags of the first CPU in /proc/cpuinfo (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    flags = cpu_flags()
    emit(
        {
            "bench": "bf16_cpu",
            "native_bf16_flags": sorted(flags & set(NATIVE_FLAGS)),
            "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "threads": args.threads,
            "load_average": load_average(),
        }
    )
    for rows, inner, columns in SHAPES:
        gflops = {}
        for dtype in (torch.float32, torch.bfloat16):
            left, right = torch.randn(rows, inner).to(dtype), torch.randn(inner, columns).to(dtype)
            repeat = max(1, int(2e9 / (2 * rows * inner * columns)))  # ~2 GFLOP a pass

            def one_pass(left=left, right=right, repeat=repeat) -> None:
                for _ in range(repeat):
                    torch.mm(left, right)

            seconds = statistics.median(timed_passes(one_pass, args.reps))
            gflops[str(dtype).removeprefix("torch.")] = 2 * rows * inner * columns * repeat / seconds / 1e9
        emit(
            {
                "bench": "bf16_matmul",
                "shape": f"{rows}x{inner} @ {inner}x{columns}",
                "gflops": gflops,
                "bf16_over_fp32": gflops["bfloat16"] / gflops["float32"],
            }
        )


if __name__ == "__main__":
    main()
