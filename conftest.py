"""Root test configuration: Dask's test fixtures (``gen_cluster``, ``client``, ...)."""

pytest_plugins = ["distributed.utils_test"]
