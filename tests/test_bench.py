"""`make bench` end to end at a small size: every case runs and its receipt's counts are right
(the figures themselves are the bench's business, not the tests')."""
from pipelines import bench


def test_every_bench_case_runs_with_right_counts(warehouse, capsys):
    results = bench.run(300)
    assert [r["case"] for r in results] == [
        "floor", "first_load", "unchanged", "weekly", "dkkd_floor", "dkkd_first_load",
        "land_floor", "land_first_load", "land_geojson"]
    assert [r["case"] for r in results if not r["counts_ok"]] == []
    printed = capsys.readouterr().out.splitlines()
    assert [line.split('"')[3] for line in printed] == [
        "generate", "floor", "first_load", "unchanged", "weekly", "dkkd_generate", "dkkd_floor",
        "dkkd_first_load", "land_generate", "land_floor", "land_first_load", "land_geojson"]
