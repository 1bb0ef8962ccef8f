"""stopsign.train: YOLOv5 model, data, loss and trainer (needs the ``train`` extra: torch)."""
