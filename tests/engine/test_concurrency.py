"""Methods run concurrently on one shared model and give exactly the results they give one at a time.

Each call's hooks fire only for its own thread (a capture hook that stops a
forward pass early would otherwise cut another call's pass short), and the
one-time fx traces (folded, ReLU-rule and occlusion copies) are built while no
call runs. Bit-identical, not close: nothing is shared between calls.
"""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from engine.concurrency import Gate, use_intra_op_threads
from engine.hooks import hook_count
from engine.models import load_model
from engine.run import run_method

CALLS = [
    ("saliency", {}),
    ("guided_backprop", {}),
    ("gradcam", {}),
    ("occlusion", {"window": 112, "stride": 112}),
    ("activations", {"layer": "blocks.2.0", "size": 64}),
    ("classify", {}),
    ("smoothgrad", {"samples": 2, "batch_size": 1}),
]


def _outputs(result) -> dict:
    return {
        **{f"array:{name}": np.asarray(value) for name, value in result.arrays.items()},
        **{f"image:{name}": np.asarray(image) for name, image in result.images.items()},
    }


def test_concurrent_mixed_calls_match_sequential_ones_bit_for_bit(small_chelsea):
    inputs = {"image": small_chelsea}
    alone = {name: _outputs(run_method(name, "efficientnet_lite0", inputs, params, device="cpu")) for name, params in CALLS}

    work = CALLS * 2
    start = threading.Barrier(len(work))

    def call(name, params):
        start.wait(timeout=60)  # all calls begin together
        return name, _outputs(run_method(name, "efficientnet_lite0", inputs, params, device="cpu"))

    with ThreadPoolExecutor(len(work)) as pool:
        together = [future.result() for future in [pool.submit(call, *c) for c in work]]

    for name, outputs in together:
        assert outputs.keys() == alone[name].keys()
        for key, value in outputs.items():
            assert np.array_equal(value, alone[name][key]), f"{name} {key} differs when run concurrently"
    assert hook_count(load_model("efficientnet_lite0", "cpu")) == 0


def test_the_gate_lets_readers_share_and_a_reader_build_alone():
    gate, order = Gate(), []
    inside = threading.Barrier(2)

    def reader(tag):
        with gate.shared():
            inside.wait(timeout=5)  # both readers are in at once
            if tag == "builder":
                with gate.alone():  # waits for the other reader to leave, without deadlocking on itself
                    order.append("built")
            else:
                order.append("read")

    threads = [threading.Thread(target=reader, args=(tag,)) for tag in ("builder", "reader")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert order == ["read", "built"]


def test_a_builder_may_run_passes_while_it_builds_and_new_calls_wait_behind_a_waiting_builder():
    gate, order = Gate(), []
    with gate.alone():
        with gate.shared():  # e.g. a trace that reads the layer catalogue
            pass

    def build():
        with gate.alone():
            order.append("built")

    def call():
        with gate.shared():
            order.append("late call")

    with gate.shared():
        builder = threading.Thread(target=build)
        builder.start()
        time.sleep(0.2)  # the builder now waits for this call to end
        late = threading.Thread(target=call)
        late.start()
        time.sleep(0.2)
        order.append("first call ends")
    builder.join(5)
    late.join(5)
    assert order == ["first call ends", "built", "late call"]  # the late call waited behind the builder


def test_a_threads_intra_op_count_survives_another_thread_setting_the_process_wide_one():
    seen, ready, go = [], threading.Event(), threading.Event()

    def runner():
        use_intra_op_threads(1)
        ready.set()
        go.wait()
        torch.ones(64, 64) @ torch.ones(64, 64)  # torch's first parallel op in this thread
        seen.append(torch.get_num_threads())

    before = torch.get_num_threads()
    thread = threading.Thread(target=runner)
    thread.start()
    ready.wait()
    other = threading.Thread(target=torch.set_num_threads, args=(before + 1,))  # as a new pool thread's initializer does
    other.start()
    other.join()
    go.set()
    thread.join()
    torch.set_num_threads(before)
    assert seen == [1]
