"""Evaluation: long-tail metrics (`metrics`), plots (`plots`), post-hoc calibration and adjustment fitting
(`posthoc`) and the `evaluate` module (`long_tail_metric/`)."""
