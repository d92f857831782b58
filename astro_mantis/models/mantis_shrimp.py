"""The published Mantis Shrimp network (``mantis-shrimp-v1``) and its head.

Engel et al. (2025) put a ConvNeXt-Large backbone (timm ``convnext_large``, no
classifier) with a 9-channel patchify stem in front of a small head that appends the
two Milky Way dust values to the pooled features::

    x (N, 9, 120, 120) ── Base ──► (N, 1536) ─┐
    dust (N, 2) ──────────────────────────────┴─► concat (N, 1538)
        ─ fc0 ─► (N, 2048) ─ GELU ─ fc1 ─► logits (N, 400)

The attribute names (``Base``, ``fc0``, ``fc1``) are those of the published
checkpoint's state_dict, so it loads with strict key matching once its
``module.`` prefixes (left by ``torch.nn.DataParallel``) are removed.
"""
import torch
from torch import nn

from ..pdf import NBINS

__all__ = ["PhotoZNet", "MantisShrimp", "build_mantis_shrimp_v1", "N_BINS", "N_DUST"]

#: Redshift bins of the published model's output (the grid of `astro_mantis.pdf`).
N_BINS = NBINS
#: Dust values appended after pooling: E(B−V) from CSFD and from Planck.
N_DUST = 2


class PhotoZNet(nn.Module):
    """Backbone + dust-aware head: the input/output contract shared by all models here.

    Parameters
    ----------
    base : `torch.nn.Module`
        Maps images (N, C, H, W) to pooled features (N, ``n_features``).
    n_features : int
        Width of the backbone's output.
    hidden : int
        Width of the hidden layer of the head.
    n_bins : int
        Number of redshift bins (logits out).
    n_dust : int
        Number of dust values appended to the features.
    drop : float
        Dropout rate before ``fc1`` (training only; 0 in the published model).

    Attributes
    ----------
    Base : `torch.nn.Module`
        The backbone.
    fc0 : `torch.nn.Linear`
        ``n_features + n_dust`` → ``hidden``.
    act : `torch.nn.GELU`
    fc1 : `torch.nn.Linear`
        ``hidden`` → ``n_bins``.
    meta : dict
        Model metadata (name, bins, calibration temperature, provenance); filled by
        `~astro_mantis.models.build_model` and `~astro_mantis.models.load_model`.
    panstarrs_exposure : str
        The Pan-STARRS counts the network takes (`astro_mantis.fusion.exposure`):
        ``"stack"`` (as served, the published recipe; the default) or ``"reference"``
        (rescaled to the typical exposure time). `~astro_mantis.models.predict` and
        the training data fuse accordingly.
    """

    #: See the class docstring; subclasses that take it as an argument set it per object.
    panstarrs_exposure = "stack"

    def __init__(self, base, n_features, hidden, n_bins=N_BINS, n_dust=N_DUST, drop=0.0):
        super().__init__()
        self.Base = base
        self.fc0 = nn.Linear(n_features + n_dust, hidden)
        self.act = nn.GELU()
        self.drop = nn.Dropout(drop) if drop else nn.Identity()
        self.fc1 = nn.Linear(hidden, n_bins)
        self.n_dust = n_dust
        self.meta = {}

    def forward(self, x, dust):
        """Logits over the redshift bins.

        Parameters
        ----------
        x : `torch.Tensor`, shape (N, C, H, W)
            Fused images (`~astro_mantis.fusion.early_fusion`).
        dust : `torch.Tensor`, shape (N, n_dust)
            E(B−V) values (CSFD, Planck).

        Returns
        -------
        `torch.Tensor`, shape (N, n_bins)
            Unnormalised log-probabilities (softmax gives the bin probabilities).
        """
        return self.forward_with_features(x, dust)[0]

    def forward_with_features(self, x, dust):
        """Logits and the penultimate features of one pass.

        The features are the head's hidden layer, ``act(fc0(...))``; the logits are
        ``fc1(drop(features))``, what `forward` returns. For callers that need both
        from one pass (a redshift and its out-of-distribution score): nothing is
        hooked on the module, so calls from several threads on one network stay apart.

        Parameters
        ----------
        x, dust
            As for `forward`.

        Returns
        -------
        logits : `torch.Tensor`, shape (N, n_bins)
        features : `torch.Tensor`, shape (N, hidden)
        """
        features = self.Base(x)
        if dust.shape != (features.shape[0], self.n_dust):
            raise ValueError(f"dust must have shape ({features.shape[0]}, {self.n_dust}); "
                             f"got {tuple(dust.shape)}")
        h = self.act(self.fc0(torch.cat([features, dust.to(features.dtype)], dim=1)))
        return self.fc1(self.drop(h)), h


class MantisShrimp(PhotoZNet):
    """The published ``mantis-shrimp-v1`` network: ConvNeXt-Large + dust head.

    Built with random weights (no download); load the published weights with
    ``astro_mantis.models.load_model("mantis-shrimp-v1", weights=...)``.

    Parameters
    ----------
    in_chans : int
        Input channels (9: NUV FUV g r i z y W1 W2).
    hidden : int
        Width of ``fc0`` (2048 in the published model).
    n_bins : int
        Redshift bins (400).
    backbone : str
        timm model name (``"convnext_large"``).
    """

    def __init__(self, in_chans=9, hidden=2048, n_bins=N_BINS, backbone="convnext_large"):
        import timm

        base = timm.create_model(backbone, pretrained=False, num_classes=0)
        # the published model swaps the 3-channel patchify stem for a 9-channel one
        stem = base.stem[0]
        base.stem[0] = nn.Conv2d(in_chans, stem.out_channels, kernel_size=stem.kernel_size,
                                 stride=stem.stride)
        super().__init__(base, base.num_features, hidden, n_bins=n_bins)
        #: The constructor arguments (JSON-friendly): what a model card records.
        self.config = {"in_chans": in_chans, "hidden": hidden, "n_bins": n_bins,
                       "backbone": backbone}


def build_mantis_shrimp_v1(**kwargs):
    """The ``mantis-shrimp-v1`` architecture with fresh random weights (see `MantisShrimp`)."""
    return MantisShrimp(**kwargs)
