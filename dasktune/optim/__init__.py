"""Pure ask/tell optimizers: no Dask here.

Every optimizer follows the contract written once on
:class:`dasktune.optim.base.Optimizer`; the driver in :mod:`dasktune.run` runs
any of them on a cluster.
"""
