"""A small image-folder dataset for the end-to-end checks (test_install,
test_quickstart): DIR/<red|blue|green>/img_NN.ppm, 20 noisy 32x32 images per
class, deterministic. Run with /usr/bin/python3 (nothing beyond the standard
library)."""
import os
import random
import sys

random.seed(0)
for name, col in (("red", (200, 30, 30)), ("blue", (30, 30, 200)), ("green", (30, 180, 40))):
    os.makedirs(os.path.join(sys.argv[1], name), exist_ok=True)
    for i in range(20):
        px = bytes(max(0, min(255, c + random.randint(-50, 50))) for _ in range(32 * 32) for c in col)
        with open(os.path.join(sys.argv[1], name, "img_%02d.ppm" % i), "wb") as f:
            f.write(b"P6\n32 32\n255\n" + px)
