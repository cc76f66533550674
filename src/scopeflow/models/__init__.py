"""Every learned model of scopeflow: architectures, weights files, training, ONNX runtime.

The shipped weights (``*.pt``) and their model cards (``*.md``, each with a ``sha256:`` line)
live in this folder beside the code; nothing is downloaded at run time.

- :mod:`~scopeflow.models.weights`: the one weights error, sha256/model-card check, loader
  and writer (every ``.pt`` goes through them);
- :mod:`~scopeflow.models.training`: the one optimisation loop (AdamW, learning-rate schedules,
  steps) of every trainer, their training-data root and cache, and the ROC AUC they report;
- :mod:`~scopeflow.models.m2unet`: the M2U-Net architecture (cell segmenter);
  :mod:`~scopeflow.models.m2unet_files`: its files without torch (stride, ONNX exports,
  reference logits); :mod:`~scopeflow.models.runtime`: its inference back ends (torch, ONNX
  Runtime); :mod:`~scopeflow.models.torch_check`: torch's reference logits in a child
  process; :mod:`~scopeflow.models.export`: ``scopeflow export-onnx``;
- :mod:`~scopeflow.models.beadnet`: the bead-centre map predictor (architecture and ONNX export:
  :mod:`~scopeflow.models.beadnet_net`);
- :mod:`~scopeflow.models.quality`: the per-cell quality and defocus ConvNets;
- :mod:`~scopeflow.models.parasite_net`: the parasite CNN ensemble.

Submodules are not imported here: ``import scopeflow.models.weights`` does not import torch.
"""
