"""Losses from outside PaddleClas: PyTorch / Optax / Keras triplet forms and pytorch-metric-learning losses.

Names never collide with PaddleClas class names: where PML and PaddleClas share a name (ContrastiveLoss,
SupConLoss) or PML's name would be read as torch's (TripletMarginLoss), the PML flavour is prefixed
``PML``. See docs/losses.md for the mapping from each framework's API to these classes.
"""
