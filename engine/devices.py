"""Small host values (class indices) sent to the model's device without stalling it."""

import torch


def on_device(values, device: torch.device | str, dtype: torch.dtype = torch.int64) -> torch.Tensor:
    """``values`` (a list or numpy array) as a tensor on ``device``. A plain copy to a GPU waits for all the
    work queued before it (PyTorch synchronises the stream after a blocking copy from pageable memory);
    through pinned memory it is queued behind that work instead, and the host goes on."""
    host = torch.as_tensor(values, dtype=dtype)
    if torch.device(device).type != "cuda":
        return host.to(device)
    return host.pin_memory().to(device, non_blocking=True)
