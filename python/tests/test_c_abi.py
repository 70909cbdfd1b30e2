"""The ctypes layer against the C ABI, without a GPU or PyTorch."""
import ctypes
import os
import re
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest

import samoyeds
from samoyeds import _lib, handles

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")


def test_version_is_the_projects():
    cmake = open(os.path.join(ROOT, "CMakeLists.txt")).read()
    assert samoyeds.__version__ == re.search(r"project\(samoyeds VERSION ([0-9.]+)", cmake).group(1)


def test_spec_struct_matches_the_c_compilers_layout(tmp_path):
    fields = [name for name, _ in _lib.MoeSpec._fields_]
    src = tmp_path / "layout.c"
    src.write_text(textwrap.dedent("""
        #include <stddef.h>
        #include <stdio.h>
        #include "samoyeds/samoyeds.h"
        int main(void) {
          printf("size %zu\\n", sizeof(samoyeds_moe_spec));
        """) + "".join(f'  printf("{f} %zu\\n", offsetof(samoyeds_moe_spec, {f}));\n' for f in fields) + "}\n")
    exe = tmp_path / "layout"
    subprocess.run(["cc", "-I", os.path.join(ROOT, "include"), str(src), "-o", str(exe)], check=True)
    c = dict(line.split() for line in subprocess.run([str(exe)], capture_output=True, text=True,
                                                      check=True).stdout.splitlines())
    assert int(c["size"]) == ctypes.sizeof(_lib.MoeSpec)
    for f in fields:
        assert int(c[f]) == getattr(_lib.MoeSpec, f).offset, f


def test_a_bad_spec_is_named_before_any_gpu_is_needed():
    config = handles.MoeConfig(hidden=100, ffn=64, experts=8, top_k=2)
    no_runtime = SimpleNamespace(handle=None)
    with pytest.raises(samoyeds.InvalidArgumentError, match="multiples of 8") as e:
        handles.MoeLayer(no_runtime, config, [0] * 8, [0] * 8, [0] * 8, on_device=True)
    assert e.value.status == 1 and isinstance(e.value, ValueError)
    too_many = handles.MoeConfig(hidden=64, ffn=64, experts=8, top_k=9)
    with pytest.raises(samoyeds.InvalidArgumentError, match="top_k"):
        handles.MoeLayer(no_runtime, too_many, [0] * 8, [0] * 8, [0] * 8, on_device=True)


def test_a_routers_spec_is_checked_before_any_gpu_is_needed():
    no_runtime = SimpleNamespace(handle=None)
    # A router reads no shape: hidden and ffn of 0 are fine.
    deepseek = handles.MoeConfig(hidden=0, ffn=0, experts=256, top_k=8, routing="sigmoid_group_topk", groups=7)
    with pytest.raises(samoyeds.InvalidArgumentError, match="groups 7"):
        handles.Router(no_runtime, deepseek)
    ok = handles.MoeConfig(hidden=0, ffn=0, experts=256, top_k=8, routing="sigmoid_group_topk", groups=8,
                           topk_groups=4)
    with pytest.raises(samoyeds.InvalidArgumentError, match="runtime handle is null"):
        handles.Router(no_runtime, ok, choice_bias=[0.0] * 256)
    with pytest.raises(samoyeds.InvalidArgumentError, match="choice_bias has 8 values for 256 experts"):
        handles.Router(no_runtime, ok, choice_bias=[0.0] * 8)


def test_an_expert_parallel_layer_may_hold_fewer_experts_than_a_token_picks():
    no_runtime = SimpleNamespace(handle=None)
    one = handles.MoeConfig(hidden=64, ffn=64, experts=1, top_k=2, expert_parallel=True)
    with pytest.raises(samoyeds.InvalidArgumentError, match="runtime or weight arrays are null"):
        handles.MoeLayer(no_runtime, one, [0], [0], [0], on_device=True)


def test_fp8_experts_reach_the_c_spec_and_their_limits_are_named():
    config = handles.MoeConfig(hidden=256, ffn=384, experts=8, top_k=2, fp8_experts=True)
    assert config.c_spec().experts_e4m3 == 1
    assert handles.MoeConfig(hidden=256, ffn=384, experts=8, top_k=2).c_spec().experts_e4m3 == 0
    no_runtime = SimpleNamespace(handle=None)
    f16 = handles.MoeConfig(hidden=256, ffn=384, experts=8, top_k=2, dtype="f16", fp8_experts=True)
    with pytest.raises(samoyeds.InvalidArgumentError, match="FP8 experts take bf16 activations"):
        handles.MoeLayer(no_runtime, f16, [0] * 8, [0] * 8, [0] * 8, on_device=True)


def test_programmatic_launch_switch_is_callable():  # its effect: CApi.ProgrammaticLaunchCanBeSwitchedForLaterLaunches
    samoyeds.set_programmatic_launch(False)
    samoyeds.set_programmatic_launch(True)


def test_python_side_checks_name_the_argument():
    no_runtime = SimpleNamespace(handle=None)
    with pytest.raises(samoyeds.InvalidArgumentError, match="routing must be one of"):
        handles.MoeConfig(hidden=64, ffn=64, experts=8, top_k=2, routing="sigmoid").c_spec()
    with pytest.raises(samoyeds.InvalidArgumentError, match="dtype must be"):
        handles.MoeConfig(hidden=64, ffn=64, experts=8, top_k=2, dtype="f32").c_spec()
    config = handles.MoeConfig(hidden=64, ffn=64, experts=8, top_k=2)
    with pytest.raises(samoyeds.InvalidArgumentError, match="8 experts need as many"):
        handles.MoeLayer(no_runtime, config, [0] * 7, [0] * 8, [0] * 8, on_device=True)
    with pytest.raises(samoyeds.InvalidArgumentError, match="choice_bias has 3 values"):
        handles.MoeLayer(no_runtime, config, [0] * 8, [0] * 8, [0] * 8, on_device=True, choice_bias=[0.0] * 3)


def test_a_stale_handle_is_refused_not_dereferenced():
    with pytest.raises(samoyeds.InvalidArgumentError, match="not a live MoeLayer handle"):
        handles.lookup(0x1234, handles.MoeLayer)


def test_errors_keep_the_librarys_message_and_clear_on_success():
    with pytest.raises(samoyeds.InvalidArgumentError, match="out is null"):
        _lib.call("samoyeds_runtime_create", 0, None, None)
    assert "out is null" in _lib.last_error()


@pytest.mark.skipif(os.path.exists("/dev/nvidiactl"), reason="this machine has a GPU driver")
def test_without_a_gpu_the_runtime_says_why():
    with pytest.raises(samoyeds.SamoyedsError) as e:
        samoyeds.runtime(0)
    assert e.value.status == 6 and "CUDA" in str(e.value)


def test_a_missing_library_is_an_import_error_that_says_what_to_set():
    env = dict(os.environ, SAMOYEDS_LIBRARY="/nonexistent/libsamoyeds.so")
    r = subprocess.run([sys.executable, "-c", "import samoyeds"], env=env, capture_output=True, text=True,
                       cwd=os.path.join(ROOT, "python"))
    assert r.returncode != 0 and "set SAMOYEDS_LIBRARY" in r.stderr


def test_null_handles_answer_zero_not_crash():
    assert _lib.lib.samoyeds_runtime_kernels(None, None, 0) == 0
    assert _lib.lib.samoyeds_moe_workspace_bytes(None, 8) == 0
    assert _lib.lib.samoyeds_moe_layer_device_bytes(None) == 0
    with pytest.raises(samoyeds.InvalidArgumentError, match="null"):
        _lib.call("samoyeds_moe_workspace_bound", None, None, None)
