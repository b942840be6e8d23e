"""Data for long-tailed training: long-tailed sub-sampling (`long_tail`), the scripts' loader (`loading`), robust
image decoding (`images`), the offline digits (`digits`), training/eval transforms (`transforms`, `official_eval`) and
benchmark datasets from their split files (`split_files`, `prepare`).

Import the submodules directly; this package imports nothing, so `long_tail` stays free of `datasets`.
"""
