"""Scoring an attempt: the cause list, the attempt record, the rubric, the scorer, reports."""
