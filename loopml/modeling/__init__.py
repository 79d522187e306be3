"""Stage 3, modeling: split, tune candidates, select under constraints, evaluate, explain, export."""
