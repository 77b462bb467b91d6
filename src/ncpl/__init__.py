"""ncpl: predict the loss of a language-model pretraining run from its full configuration."""

__version__ = "0.1.0"


def load(directory):
    """A saved predictor (NCPL or a baseline) from its directory: ``ncpl.load(DIR).predict(configs)``."""
    from ncpl.predictors import load_predictor

    return load_predictor(directory)
