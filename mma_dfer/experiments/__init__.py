"""The experiment side: what the runs under a runs root add up to, apart from how they were run.

``aggregate`` (the command) and the modules it is made of turn every ``result.json`` into the
per-dataset, per-resolution fold tables with their intervals; ``sweep`` reads the paper's
experiments (sweep files) and expands them into runs; ``collect`` gathers what the report shows
(sweeps, runs done, failed or missing, curves). ``cluster`` submits those runs and ``report``
renders the page; both import this package, which imports neither.
"""
