"""Loss-landscape metrics: evaluation, Hessian, CKA between seeds and mode connectivity."""
