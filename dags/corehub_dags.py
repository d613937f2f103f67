"""corehub's Airflow DAGs: one ingest DAG per feed contract, and publish (see pipelines/airflow_dags.py)."""
try:
    from pipelines.airflow_dags import build_dags
except ModuleNotFoundError:  # the project is not pip-installed: put its root on the path
    import pathlib, sys
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
    from pipelines.airflow_dags import build_dags
globals().update(build_dags())
