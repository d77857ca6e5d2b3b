"""The model as an artifact, shared by trainer and predictor.

How a network is built from its name, how an image becomes a tensor, and what a model package
holds live here and only here: the predictor imports this package and never the trainer, so a
predictor image carries no training code and preprocessing cannot drift between the two.
"""
