"""Evaluation: metrics of a whole dataset from one pass, from arrays or files, resumable."""
