"""Side-by-side benchmark of this framework against hand-written and peer systems on the taxi job.

`scripts/benchmark.py` is the entry point; each module here is small and does one thing: the job
(`job`), one system per module (`sys_*`), one whole-process measurement (`measure`), the report.
"""
