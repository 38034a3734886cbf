"""A/B arena: blind comparisons of models or variants and the votes they produce."""
