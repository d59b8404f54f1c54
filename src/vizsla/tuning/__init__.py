"""Hyperparameter tuning jobs: many training jobs, one Optuna study."""
