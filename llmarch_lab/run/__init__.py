"""Running suites: the runner (identity, resume, the worker), exactly-once claims, the executors
(local threads, Ray, Slurm), the notebook child, `status`, and the benchmarks' driver."""
