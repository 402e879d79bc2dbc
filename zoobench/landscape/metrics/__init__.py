"""The built-in loss-landscape metrics, one module each: its settings, its compute function and its
record (`zoobench.landscape.registry` registers them)."""
