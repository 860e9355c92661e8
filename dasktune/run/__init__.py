"""Everything that imports ``distributed``: the cluster, worker-side evaluation,
the driver loop, ``async_map`` and ``ProducerConsumer``."""
