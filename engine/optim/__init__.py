"""One optimisation loop for every synthesis method: composable objectives,
transforms ``(config) -> (tensor) -> tensor`` and image parameterisations
``(config) -> (params, image_fn)``."""
