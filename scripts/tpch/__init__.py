"""TPC-H on the dataset-graph API: data generation, the 22 queries as datasets, and checks against duckdb.

Run it with `python scripts/tpch.py --sf 0.01 --check`; the tests import these modules directly. The
package travels by value with each task, so workers that cannot import it (a Dask or Ray cluster's) still
run its stage functions.
"""

import sys

import cloudpickle

cloudpickle.register_pickle_by_value(sys.modules[__name__])
