"""Result files: CSV reports under results/ (the schema and plots arrive with the benchmark runner)."""
