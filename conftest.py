"""Root test configuration: Dask's test fixtures (``gen_cluster``, ``client``, ...)
and a real PostgreSQL server (``postgres_server``, ``postgres_url``)."""

pytest_plugins = ["distributed.utils_test", "tests.postgres"]
