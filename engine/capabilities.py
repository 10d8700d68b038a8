"""What a method may need of a model, by name: declared on each method, measured on each registered model.

A built-in model has every capability (its tests show it) except a
classifier where it has no labels; a registered model's are measured when it
is vetted, each by actually preparing it, and a refused one keeps the reason.
"""

CLASSIFIER = "classifier"  # class outputs with labels
LAYERS = "layers"  # named layers that forward hooks reach
RELU_RULES = "relu_rules"  # every ReLU rewritten with a backward rule (guided backprop, deconvnet)
RESIZABLE = "resizable"  # runs at sizes other than its native one
INCREMENTAL_OCCLUSION = "incremental_occlusion"  # no method needs it: occlusion then recomputes only receptive fields

DESCRIPTIONS = {
    CLASSIFIER: "outputs one score per labelled class",
    LAYERS: "its layers can be watched with forward hooks",
    RELU_RULES: "every ReLU can be given guided backprop's and deconvnet's backward rules (torch.fx rewrite)",
    RESIZABLE: "runs at input sizes other than its native one",
    INCREMENTAL_OCCLUSION: "occlusion can recompute only each window's receptive field (otherwise it runs the whole network per window)",
}
