"""Result files under results/: the one benchmark CSV schema (schema.py), appending and
validated reading (store.py), median + 95% CI summaries (summary.py) and the plots every
reader draws (plots.py). Knows pandas and matplotlib, never the engine.
"""
