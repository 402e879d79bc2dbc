"""Loss-landscape metrics: their catalogue (`registry`), the built-in metrics (`metrics/`), the
estimators they use (Hessian, CKA, connectivity, weight-space helpers), and annotating a stored zoo
with them (`annotate`, `annotations`, `phases`)."""
