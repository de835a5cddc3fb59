"""The model's clock, in one place that does not import torch (so `table` and `tasks` start fast).

Both families read 16 kHz mono, frame it every 10 ms with a 25 ms window, and differ only in where frame 0 sits:
MSM-MAE's centred STFT puts its centre at sample 0; Kaldi's fbank (MAE-AST) frames start at sample 0
("snip edges"), so frame 0 is centred at 12.5 ms. See docs/design.md, "Front ends".
"""

SAMPLE_RATE = 16000  # Hz, the rate every model of the package reads
HOP = 160  # samples between frames (10 ms)
WIN = 400  # samples per frame (25 ms)
FRAME_MS = 1000.0 * HOP / SAMPLE_RATE  # 10.0
FRAME0_MS = {"logmel": 0.0, "fbank": 1000.0 * WIN / 2 / SAMPLE_RATE}  # centre of frame 0, per front end
