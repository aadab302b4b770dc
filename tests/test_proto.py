"""The committed generated code matches the .proto, and loads on every protobuf TF 2.21 accepts."""

import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROTO = "tensorboard_plugin/loss_params/plugin_data.proto"
GENERATED = ROOT / "tensorboard_plugin/loss_params/plugin_data_pb2.py"


def test_generated_code_is_what_the_proto_regenerates(tmp_path):
    # In a subprocess: protoc's extension and TensorFlow's do not share a process.
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{ROOT}", f"--python_out={tmp_path}", str(ROOT / PROTO)],
        check=True,
    )
    fresh = (tmp_path / PROTO.replace(".proto", "_pb2.py")).read_text()
    assert fresh == GENERATED.read_text(), (
        "plugin_data_pb2.py is stale: run `make proto` (grpcio-tools 1.74.x) and commit it"
    )
    assert "Protobuf Python Version: 6.31.1" in fresh, "generate with grpcio-tools 1.74.x"


@pytest.mark.parametrize("protobuf", ["6.31.1", "7.36.2"])
def test_generated_code_loads_on_protobuf(protobuf, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), f"protobuf=={protobuf}"],
        check=True,
        timeout=300,
    )
    code = (
        "import google.protobuf, importlib.util, sys;"
        f"assert google.protobuf.__version__ == {protobuf!r}, google.protobuf.__version__;"
        f"spec = importlib.util.spec_from_file_location('pb2', {str(GENERATED)!r});"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m);"
        "d = m.LossParamsPluginData(version=1, path='loss/X/w', shape=[2, 3]);"
        "assert m.LossParamsPluginData.FromString(d.SerializeToString()).shape == [2, 3]"
    )
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run([sys.executable, "-S", "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
