"""Benchmarking methods on zoos: finding plugins, the cells they get, their stored results, the runner."""
