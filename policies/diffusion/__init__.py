"""Diffusion Policy (Chi et al., RSS 2023) in torch: model, normaliser, dataset, training, checkpoints.

Import what you need from the submodules (``policy``, ``checkpoint``, ``train``, ...); this package
imports nothing heavy so that the CLI's ``--help`` stays instant.
"""
