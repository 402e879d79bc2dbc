"""Training zoos: the training loop (fused over a cell's seeds where it can be), augmentation, and
generation of the models a store lacks."""
