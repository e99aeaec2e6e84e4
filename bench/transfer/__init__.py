"""Transfer accuracy of catalog backbones: linear probe and fine-tuning (Kornblith et al. 2019).

``python -m bench transfer --models mobilenet_v2 --datasets cifar10 --protocol linear``
"""
