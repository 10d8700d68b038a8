"""Reading model files, validating them against their metadata, the model cache and the zoo's model source."""

import dataclasses
import io
import pickle

import onnx
import pytest
import torch
from torch import nn

from engine.errors import ModelRejected, UnknownModel
from engine.models import zoo
from engine.models.cache import ModelCache, model_bytes
from engine.models.formats import load_network, read_onnx, sniff_format
from engine.models.registered import ModelMetadata, RegistrationLimits, spec_from_metadata, validate_network
from engine.models.wrapper import ConvLensModel
from tests.hostile_files import weightless_onnx
from tests.model_files import IMAGENET_PRE, onnx_bytes, pt2_bytes, tiny_net, torchscript_bytes

SIZE = (64, 64)
LIMITS = RegistrationLimits(max_parameters=10**7, max_forward_seconds=60, max_nodes=10_000, max_tensor_bytes=2**30, max_archive_bytes=2**28)


def meta(**overrides) -> ModelMetadata:
    return ModelMetadata.parse({"name": "tiny", "preprocessing": IMAGENET_PRE, "input_size": list(SIZE),
                                "labels": ["a", "b", "c", "d"], **overrides})


def test_formats_are_told_apart_and_pickles_and_torchscript_refused_unread():
    net = tiny_net()
    assert sniff_format(onnx_bytes(net, SIZE)) == "onnx"
    assert sniff_format(pt2_bytes(net, SIZE)) == "torch_export"
    with pytest.raises(ModelRejected) as refused:
        sniff_format(torchscript_bytes(net))
    assert refused.value.code == "format_not_supported"
    assert "torch.export" in refused.value.message and "ONNX" in refused.value.message
    saved = io.BytesIO()
    torch.save(net.state_dict(), saved)
    for pickled in (saved.getvalue(), pickle.dumps({"a": 1})):
        with pytest.raises(ModelRejected) as refused:
            sniff_format(pickled)
        assert refused.value.code == "pickled_model"


def test_every_format_loads_to_the_same_function():
    net = tiny_net()
    x = torch.rand(3, 3, *SIZE)
    expected = net(x)
    for data, fmt in ((onnx_bytes(net, SIZE), "onnx"), (pt2_bytes(net, SIZE), "torch_export")):
        torch.testing.assert_close(load_network(data, fmt)(x), expected, rtol=1e-4, atol=1e-5, msg=fmt)
    assert isinstance(load_network(onnx_bytes(net, SIZE), "onnx"), torch.fx.GraphModule)


def test_onnx_with_external_data_is_refused():
    proto = onnx.load_from_string(onnx_bytes(tiny_net(), SIZE))
    tensor = proto.graph.initializer[0]
    tensor.data_location = onnx.TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    tensor.ClearField("raw_data")
    with pytest.raises(ModelRejected) as refused:
        read_onnx(proto.SerializeToString())
    assert refused.value.code == "invalid_onnx" and "external data" in refused.value.message


def test_a_torch_export_program_keeps_the_module_paths_of_the_original_network():
    net = tiny_net()
    layers = {fmt: {name: type(m) for name, m in load_network(data, fmt).named_modules() if name}
              for fmt, data in (("onnx", onnx_bytes(net, SIZE)), ("torch_export", pt2_bytes(net, SIZE)))}
    convs = ["features/features/0/Conv", "features/features/3/Conv"]  # nn.Sequential "features", items 0 and 3
    assert [name for name, kind in layers["torch_export"].items() if kind is nn.Conv2d] == convs
    assert [name for name, kind in layers["onnx"].items() if kind is nn.Conv2d] == convs
    # the exported program keeps its batch norms (the ONNX export folds them), each under its own path
    assert [name for name, kind in layers["torch_export"].items() if kind is nn.BatchNorm2d] == [
        "features/features/1/BatchNormalization", "features/features/4/BatchNormalization",
    ]
    assert "head/Gemm" in layers["torch_export"]


def test_validation_resolves_default_layers():
    resolved = validate_network(load_network(onnx_bytes(tiny_net(), SIZE), "onnx"), meta(), "onnx", LIMITS)
    assert resolved.first_conv.endswith("Conv") and resolved.gradcam_layer and resolved.embedding_layer


class BatchOfOne(nn.Module):
    """Flattens with a hard-coded batch size of one, as a carelessly exported model does."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.conv(x).mean((2, 3)).reshape(1, 4)


@pytest.mark.parametrize("case, code", [
    ("parameters", "too_many_parameters"),
    ("weightless", "no_parameters"),
    ("slow", "model_too_slow"),
    ("batch_of_one", "model_failed"),
    ("output", "output_mismatch"),
    ("first_conv", "invalid_metadata"),
])
def test_validation_refuses(case, code):
    net, metadata, limits = tiny_net(), meta(), LIMITS
    if case == "parameters":
        limits = dataclasses.replace(LIMITS, max_parameters=100)
    if case == "slow":
        limits = dataclasses.replace(LIMITS, max_forward_seconds=1e-9)
    if case == "weightless":
        net, metadata = load_network(weightless_onnx(), "onnx"), meta(labels=["a", "b", "c"])
    if case == "batch_of_one":
        net = BatchOfOne().eval()
    if case == "output":
        metadata = meta(labels="imagenet")
    if case == "first_conv":
        net = load_network(onnx_bytes(net, SIZE), "onnx")
        second = [name for name, m in net.named_modules() if isinstance(m, nn.Conv2d)][1]
        metadata = meta(first_conv=second)
    with pytest.raises(ModelRejected) as refused:
        validate_network(net, metadata, "onnx", limits)
    assert refused.value.code == code


def test_a_weightless_model_still_has_a_device():
    net = load_network(weightless_onnx(), "onnx")
    assert not list(net.parameters())
    model = ConvLensModel(spec_from_metadata(meta(labels=["a", "b", "c"]), "onnx", lambda: net, None, ""), net)
    assert model.device == torch.device("cpu")


def test_cache_evicts_the_least_recently_used_by_memory():
    nets = {name: nn.Linear(100, 100) for name in "abc"}  # 40,400 bytes each
    size = model_bytes(nets["a"])
    cache, loads = ModelCache(2 * size), []

    def loader(name):
        return lambda: loads.append(name) or nets[name]

    cache.get("a", loader("a"))
    cache.get("b", loader("b"))
    cache.get("a", loader("a"))  # a is now the most recent
    cache.get("c", loader("c"))  # b goes
    assert cache.keys() == ["a", "c"] and loads == ["a", "b", "c"]
    cache.resize(size // 2)  # the last one stays even alone over the limit
    assert cache.keys() == ["c"]


def test_registered_names_resolve_inside_their_tenant_and_load_by_identity():
    net = tiny_net()
    records = {("acme", "net"): "hash-1"}

    def source(owner, name):
        digest = records.get((owner, name))
        return spec_from_metadata(meta(name=name), "onnx", lambda: net, owner, digest) if digest else None

    first = zoo.load_model(zoo.find_spec("net", "acme", source), "cpu")
    assert zoo.load_model(zoo.find_spec("net", "acme", source), "cpu") is first
    for stranger in ("other", None):  # another tenant, or no tenant at all: the name is unknown
        with pytest.raises(UnknownModel, match="unknown model 'net'"):
            zoo.find_spec("net", stranger, source)
    records[("acme", "net")] = "hash-2"  # registered again with another file
    assert zoo.find_spec("net", "acme", source).content_hash == "hash-2"
    assert zoo.load_model(zoo.find_spec("net", "acme", source), "cpu") is not first
    assert zoo.find_spec("vgg19", "acme", source).builtin  # built-ins are everyone's
