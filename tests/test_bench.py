"""movenet bench's generation report: every precision the host runs, at every batch size, against its roofline and
against fp32 in the same run (the numbers themselves are the benchmark's business, not a test's)."""

from movenet.bench import benchmark
from tests.test_model import tiny_config


def test_bench_reports_each_precision_against_its_roofline_and_fp32():
    config = tiny_config(features="keypoints", n_labels=0, gate_channels=32)
    r = benchmark(config, seconds=0.05, batch_sizes=(1, 2), reference_seconds=0.05, long_seconds=0)
    precisions = set(r["weight_bytes"])
    assert {"fp32", "bf16"} <= precisions and r["auto_precision"] in precisions
    assert sorted((x["batch"], x["precision"]) for x in r["fast"]) == sorted(
        (B, p) for B in (1, 2) for p in precisions)
    for x in r["fast"]:
        # the best of the rounds, which the median cannot pass
        assert x["samples_per_s"] >= x["median_samples_per_s"] > 0
        assert abs(x["per_stream_samples_per_s"] - x["samples_per_s"] / x["batch"]) <= 1
        assert abs(x["fraction_of_roofline"] - x["samples_per_s"] / x["roofline_samples_per_s"]) < 1e-3
    bound = r["roofline"]["single_stream_bound_samples_per_s"]
    assert set(bound) == precisions and all(v > 0 for v in bound.values())
    for B in (1, 2):
        compact = precisions - {"fp32"}
        assert set(r["over_fp32"][f"batch {B}"]) == set(r["over_fp32_paired_median"][f"batch {B}"]) == compact
        assert all(v > 0 for v in r["over_fp32_paired_median"][f"batch {B}"].values())
    assert r["reference"]["samples_per_s"] > 0 and "long" not in r
