"""Compares `kiln run --exportOutput` logits with a raw float32 reference file (PyTorch's logits)."""
import json
import struct
import sys

exported = json.load(open(sys.argv[1]))[0]["values"]
raw = open(sys.argv[2], "rb").read()
reference = struct.unpack(f"<{len(raw) // 4}f", raw)
if len(exported) != len(reference):
    sys.exit(f"length mismatch: exported {len(exported)}, reference {len(reference)}")
worst = max(abs(a - b) for a, b in zip(exported, reference))
print(f"max abs diff vs reference: {worst:.3g}")
sys.exit(0 if worst < 1e-4 else 1)
