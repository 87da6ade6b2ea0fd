"""The search layer: search spaces, the Optuna searcher and pruner scheduler, the Tune driver."""
