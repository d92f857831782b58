"""``mantis-mini``: a compact network with the published model's input and output.

Same contract as ``mantis-shrimp-v1`` — early-fused images (N, 9, 120, 120) and the
two dust values in, logits over 400 redshift bins out — with a small residual CNN as
backbone instead of ConvNeXt-Large, so that it runs at several hundred galaxies per
second on a laptop CPU:

* a patchify stem, ``Conv2d(9, 32, kernel_size=4, stride=4)`` + BatchNorm + ReLU
  (120 → 30 pixels; the PS1 PSF is ~4.5 pixels wide and GALEX/unWISE are upsampled
  5.5×, so little information is lost), as in ConvNeXt;
* four stages of ResNet basic blocks (two 3 × 3 convolutions with BatchNorm and a
  shortcut), widths 32, 64, 128, 256 at 30, 15, 8 and 4 pixels (default depths
  1, 1, 2, 1);
* global average pooling, then the published head pattern: concat dust →
  ``fc0`` (258 → 512) → GELU → ``fc1`` (512 → 400).

About 1.9 million parameters (7.5 MB as float32 safetensors) and 82 million
multiply-adds per galaxy, against 200 million parameters and 8.6 billion
multiply-adds for ``mantis-shrimp-v1``. Needs only torch (not timm).
"""
from torch import nn

from .mantis_shrimp import N_BINS, PhotoZNet

__all__ = ["MiniBackbone", "MantisMini", "build_mantis_mini", "DEFAULT_ARCHITECTURE",
           "load_shallower"]

#: Keyword arguments of `MantisMini` for the bundled ``mantis-mini``.
DEFAULT_ARCHITECTURE = {"in_chans": 9, "widths": [32, 64, 128, 256], "depths": [1, 1, 2, 1],
                        "stem_stride": 4, "hidden": 512, "n_bins": N_BINS, "drop": 0.0,
                        "panstarrs_exposure": "reference"}


class _BasicBlock(nn.Module):
    """Two 3 × 3 convolutions with BatchNorm, plus a (projected) shortcut."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                          nn.BatchNorm2d(cout))

    def forward(self, x):
        y = self.act(self.bn1(self.conv1(x)))
        return self.act(self.bn2(self.conv2(y)) + self.shortcut(x))


class MiniBackbone(nn.Module):
    """The residual CNN of ``mantis-mini``: images (N, C, H, W) → features (N, widths[-1]).

    Parameters
    ----------
    in_chans : int
        Input channels.
    widths : sequence of int
        Channels of each stage; every stage after the first halves the resolution.
    depths : sequence of int
        Basic blocks per stage.
    stem_stride : int
        Kernel size and stride of the patchify stem.
    """

    def __init__(self, in_chans=9, widths=(32, 64, 128, 256), depths=(1, 1, 2, 1),
                 stem_stride=4):
        super().__init__()
        if len(widths) != len(depths):
            raise ValueError(f"widths and depths must have the same length; got {len(widths)} "
                             f"widths and {len(depths)} depths")
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, widths[0], stem_stride, stem_stride, bias=False),
            nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True))
        stages, cin = [], widths[0]
        for i, (width, depth) in enumerate(zip(widths, depths)):
            blocks = []
            for j in range(depth):
                blocks.append(_BasicBlock(cin, width, 2 if (i > 0 and j == 0) else 1))
                cin = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.num_features = cin
        self._init_weights()

    def _init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for m in self.modules():  # residual branches start as identity ("zero-init residual")
            if isinstance(m, _BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def forward(self, x):
        """Pooled features (N, ``num_features``) of images (N, C, H, W)."""
        return self.pool(self.stages(self.stem(x))).flatten(1)


class MantisMini(PhotoZNet):
    """``mantis-mini``: `MiniBackbone` + the published dust-aware head.

    Parameters
    ----------
    in_chans, widths, depths, stem_stride
        See `MiniBackbone`.
    hidden : int
        Width of ``fc0``.
    n_bins : int
        Redshift bins.
    drop : float
        Dropout before ``fc1`` during training.
    panstarrs_exposure : {"stack", "reference"}
        The Pan-STARRS counts the network takes (`astro_mantis.fusion.exposure`).
        ``"stack"`` (the default here, and what a card without the entry means) is the
        published recipe; new models (`DEFAULT_ARCHITECTURE`) take ``"reference"``.
    """

    def __init__(self, in_chans=9, widths=(32, 64, 128, 256), depths=(1, 1, 2, 1),
                 stem_stride=4, hidden=512, n_bins=N_BINS, drop=0.0, panstarrs_exposure="stack"):
        from ..fusion.exposure import check_panstarrs_exposure

        base = MiniBackbone(in_chans, tuple(widths), tuple(depths), stem_stride)
        super().__init__(base, base.num_features, hidden, n_bins=n_bins, drop=drop)
        self.panstarrs_exposure = check_panstarrs_exposure(panstarrs_exposure)
        #: The constructor arguments (JSON-friendly): what a model card records.
        self.config = {"in_chans": in_chans, "widths": list(widths), "depths": list(depths),
                       "stem_stride": stem_stride, "hidden": hidden, "n_bins": n_bins,
                       "drop": drop, "panstarrs_exposure": self.panstarrs_exposure}


def build_mantis_mini(**kwargs):
    """The ``mantis-mini`` architecture with fresh random weights (see `MantisMini`)."""
    arch = dict(DEFAULT_ARCHITECTURE)
    arch.update(kwargs)
    return MantisMini(**arch)


def _block_of(key):
    """``(stage, block)`` of a backbone block's parameter name, else None."""
    parts = key.split(".")
    if "stages" not in parts:
        return None
    i = parts.index("stages")
    return int(parts[i + 1]), int(parts[i + 2])


def load_shallower(net, state_dict):
    """Load a shallower ``mantis-mini``'s weights into a deeper one, as the same function.

    The deeper network must have the same widths, stem and head, and at least as many
    blocks in every stage. Every tensor of ``state_dict`` is copied to the parameter of the
    same name; the blocks that only the deeper network has are appended at the end of
    their stages (same width, stride 1, identity shortcut) and keep their initialisation,
    whose last BatchNorm weight is zero ("zero-init residual"): each starts as the
    identity, so the deeper network computes exactly what the shallower one did, and
    training then uses the new blocks (Net2DeeperNet, Chen, Goodfellow & Shlens 2016).

    Parameters
    ----------
    net : `MantisMini`
        The deeper network, freshly built (its new blocks as `MiniBackbone` initialises
        them).
    state_dict : dict
        The shallower network's ``state_dict()``.

    Returns
    -------
    list of str
        The names of ``net``'s parameters and buffers that were not in ``state_dict``
        (those of the new blocks).

    Raises
    ------
    ValueError
        If a tensor of ``state_dict`` has no counterpart of the same shape in ``net``, a
        parameter of ``net`` outside the appended blocks is missing from ``state_dict``,
        or a new block is not an identity at the start.
    """
    own = net.state_dict()
    bad = sorted(k for k, v in state_dict.items()
                 if k not in own or tuple(own[k].shape) != tuple(v.shape))
    if bad:
        raise ValueError(f"{len(bad)} tensor(s) of the shallower network have no counterpart "
                         f"of the same shape in the deeper one, e.g. {bad[:3]}")
    depth = {}
    for k in state_dict:
        b = _block_of(k)
        if b is not None:
            depth[b[0]] = max(depth.get(b[0], -1), b[1])
    new = sorted(k for k in own if k not in state_dict)
    stray = [k for k in new if _block_of(k) is None or _block_of(k)[0] not in depth
             or _block_of(k)[1] <= depth[_block_of(k)[0]]]
    if stray:
        raise ValueError(f"the deeper network has {len(stray)} tensor(s) outside the appended "
                         f"blocks that the shallower one lacks, e.g. {stray[:3]}")
    for k in new:
        if k.endswith("bn2.weight") and bool(own[k].any()):
            raise ValueError(f"{k} is not zero: the new block would not start as the identity")
        if ".shortcut." in k:
            raise ValueError(f"{k}: an appended block must have an identity shortcut")
    merged = dict(own)
    merged.update(state_dict)
    net.load_state_dict(merged)
    return new
