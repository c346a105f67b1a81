"""Evaluation: the seed's protocol (``seed``) and the official Cityscapes benchmark
(``cityscapes``, scored by ``official``)."""
