"""Darknet (YOLOv3 / YOLOv4) models: ``.cfg`` parsing, ``.weights`` I/O and the torch equivalent.

- :mod:`.cfg`: the cfg file format (sections, options, line numbers).
- :mod:`.layers`: torch modules of each layer type, and the yolo decode head.
- :mod:`.model`: :class:`DarknetModel` built from a cfg.
- :mod:`.weights`: the ``.weights`` format.
- :mod:`.import_cmd` / :mod:`.export_cmd`: ``edge-train import-darknet`` / ``export-darknet``.
"""

from stopsign.train.darknet.cfg import DarknetCfg, DarknetCfgError, load_cfg, parse_cfg
from stopsign.train.darknet.model import DarknetModel, is_darknet_cfg

__all__ = ["DarknetCfg", "DarknetCfgError", "DarknetModel", "is_darknet_cfg", "load_cfg", "parse_cfg"]
