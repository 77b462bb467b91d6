"""Hyperparameter laws of the related papers: closed forms that suggest a config, not loss predictors."""
