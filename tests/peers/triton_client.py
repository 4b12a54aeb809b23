#!/usr/bin/env python3
"""Calls drscreen's KServe v2 endpoint with NVIDIA Triton's own HTTP client, unchanged.

Usage: triton_client.py URL KEY INPUT.f32
  URL        http://host:port of a running `drscreen serve`
  KEY        API key (device or admin role)
  INPUT.f32  one normalised image, FP32 little-endian, shape [1,3,512,512], no header

Prints {"live": bool, "metadata": {...}, "outputs": {name: {"shape": [...], "data": [...]}}}
as JSON on stdout. Exits 2 with a clear message when tritonclient is not installed, so
the calling test fails loudly instead of being skipped.
"""

import json
import sys

try:
    import numpy as np
    import tritonclient.http as httpclient
except ImportError as e:  # the Rust test reports this text
    sys.stderr.write(
        f"tritonclient is not importable ({e}); install it with: "
        'python3 -m pip install "tritonclient[http]==2.73.0"\n'
    )
    sys.exit(2)

OUTPUTS = ["dr_logits", "dme_logit", "gradable_logit", "referable_cam"]


def main():
    url, key, path = sys.argv[1:4]
    headers = {"Authorization": "Bearer " + key}
    client = httpclient.InferenceServerClient(url=url.removeprefix("http://"), network_timeout=120.0)
    live = client.is_server_live()
    metadata = client.get_model_metadata("dr-synth", headers=headers)
    tensor = np.fromfile(path, dtype="<f4").reshape(1, 3, 512, 512)
    image = httpclient.InferInput("image", list(tensor.shape), "FP32")
    image.set_data_from_numpy(tensor, binary_data=True)
    requested = [httpclient.InferRequestedOutput(name, binary_data=True) for name in OUTPUTS]
    result = client.infer("dr-synth", inputs=[image], outputs=requested, headers=headers)
    outputs = {}
    for name in OUTPUTS:
        array = result.as_numpy(name)
        outputs[name] = {"shape": list(array.shape), "data": array.astype(float).ravel().tolist()}
    json.dump({"live": live, "metadata": metadata, "outputs": outputs}, sys.stdout)


if __name__ == "__main__":
    main()
