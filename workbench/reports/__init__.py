"""Result files under results/: every CSV contract (schema.py), appending and checked reading
(store.py), median + 95% CI summaries (summary.py) and the plots every reader draws (plots.py).
Knows pandas and matplotlib, never the engine."""
