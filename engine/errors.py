"""Errors the engine raises for bad requests; each carries a stable machine code.

The API maps them onto HTTP statuses (unknown things -> 404, bad params -> 422);
anything else escaping the engine is a bug.
"""


class EngineError(Exception):
    code = "engine_error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class UnknownModel(EngineError):
    code = "unknown_model"


class UnknownLayer(EngineError):
    code = "unknown_layer"


class UnknownClass(EngineError):
    code = "unknown_class"


class UnknownChannel(EngineError):
    code = "unknown_channel"


class UnknownMethod(EngineError):
    code = "unknown_method"


class InvalidParams(EngineError):
    code = "invalid_params"


class InputProblem(EngineError):
    """A call's pictures do not fit the method's input slots; ``code`` says how, ``input`` names the slot.

    Codes: ``missing_input``, ``unknown_input``, ``wrong_image_count``.
    """

    def __init__(self, code: str, message: str, input: str):
        super().__init__(message)
        self.code = code
        self.input = input
        self.extra = {"input": input}


class UnsupportedModel(EngineError):
    """The method cannot run faithfully on this model (e.g. no classifier head)."""

    code = "unsupported_model"


class NonFiniteResult(EngineError):
    """The computation produced NaN or infinite numbers: the model's outputs for this input, or diverging params."""

    code = "non_finite_output"


class ImageRejected(EngineError):
    """Bytes that are not a safe, decodable picture; ``code`` says why, ``input`` names which one.

    Codes: ``empty_image``, ``not_an_image``, ``bad_image`` (truncated or
    corrupt), ``bad_base64``, ``bad_pixels`` (pixel values of the wrong shape or range),
    ``image_too_large``, ``unsupported_image_format``.
    """

    def __init__(self, code: str, message: str, input: str = "image"):
        super().__init__(message)
        self.code = code
        self.input = input


class Cancelled(Exception):
    """Raised through the engine when the caller's progress callback asks to stop."""


class ModelRejected(EngineError):
    """A model file or its metadata refused at registration; ``code`` says why.

    Codes: ``not_a_model`` (no model file of a known format), ``pickled_model``
    (a pickle: never loaded), ``invalid_onnx`` (the ONNX checker refused it),
    ``unsupported_operator`` (the converter lacks an operator), ``invalid_metadata``,
    ``output_mismatch`` (outputs disagree with the labels), ``model_failed`` (it
    would not load or run), ``too_many_parameters``, ``no_parameters``, ``model_too_slow``,
    ``model_too_large`` (an archive inflating past the size cap), ``too_many_nodes``,
    ``tensor_too_large`` (an intermediate tensor over the byte cap),
    ``data_dependent_shape`` (a shape that depends on the input's values);
    and, from the vetting child (:mod:`worker.model_vetting`), ``model_memory_limit``
    and ``model_crashed``.
    """

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
