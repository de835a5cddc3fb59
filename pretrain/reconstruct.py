"""`hear-maeast reconstruct`: input, masked input and reconstruction of one clip (the papers' figure), optionally as audio."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from hear_maeast.errors import BadInput
from hear_maeast.masking import make_mask
from hear_maeast.model import unpatchify
from hear_maeast.timing import HOP, SAMPLE_RATE, WIN


@torch.no_grad()
def masked_view(model, spec: torch.Tensor, mask_ratio=None, mask_kind=None, seed: int = 0):
    """spec [1, F, T] normalised -> (masked input with NaN holes, reconstruction with visible patches pasted), each [F, T]."""
    cfg = model.cfg.replace(**{k: v for k, v in dict(mask_ratio=mask_ratio, mask_kind=mask_kind).items() if v is not None})
    keep, mask = make_mask(cfg, 1, torch.Generator().manual_seed(seed))  # [1, Nv], [1, N]
    out = model(spec, keep.to(spec.device))
    target, recon = out["target"], out["recon"].float()  # [1, N, P]
    if cfg.norm_pix_loss:  # predictions are per-patch normalised: give them the patch's own mean and spread back
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        recon = recon * (var + 1e-6) ** 0.5 + mean
    m = mask.to(spec.device)[..., None].bool()  # [1, N, 1]
    holes = torch.where(m, torch.full_like(target, float("nan")), target)
    pasted = torch.where(m, recon, target)
    frames = spec.shape[-1]
    return unpatchify(holes, model.cfg, frames)[0], unpatchify(pasted, model.cfg, frames)[0]


def to_audio(model, spec: torch.Tensor, iters: int = 64) -> torch.Tensor:
    """Normalised spectrogram [F, T] -> waveform [samples] at 16 kHz via InverseMelScale + Griffin-Lim.

    log-mel: the front end's own Slaney filterbank. Kaldi fbank: approximated (Kaldi's mel banks inverted, but its
    povey window, DC removal and pre-emphasis only undone by de-emphasis), see `hear-maeast reconstruct --help`.
    """
    import torchaudio

    fe = model.frontend
    mean, std = fe.norm_stats.tolist()
    power = (spec.float().cpu() / fe.scale * std + mean).exp()  # [F, T] mel power
    if model.cfg.frontend == "logmel":
        fb = fe.features.mel.mel_scale.fb.cpu()  # [n_freqs, F]: the front end's own Slaney filterbank
        n_fft = WIN
    else:  # Kaldi's own mel banks (mel-domain triangles, 512-point FFT, 20 Hz - Nyquist), Nyquist bin appended
        banks, _ = torchaudio.compliance.kaldi.get_mel_banks(spec.shape[0], 512, float(SAMPLE_RATE), 20.0, 0.0, 100.0, -500.0, 1.0)
        fb = torch.nn.functional.pad(banks, (0, 1)).T  # [257, F]
        n_fft = 512
    # gelsd: a minimum-norm solution even where filters are narrower than an FFT bin (rank-deficient banks)
    with warnings.catch_warnings():  # its default filterbank (replaced below) warns about empty filters
        warnings.simplefilter("ignore")
        inv = torchaudio.transforms.InverseMelScale(fb.shape[0], fb.shape[1], SAMPLE_RATE, driver="gelsd")
    inv.fb.copy_(fb)
    linear = inv(power).clamp(min=0)  # [n_freqs, T]
    wav = torchaudio.transforms.GriffinLim(n_fft=n_fft, win_length=WIN, hop_length=HOP, power=2.0, n_iter=iters)(linear)
    if model.cfg.frontend == "fbank":
        wav = torchaudio.functional.deemphasis(wav, 0.97)
    return 0.9 * wav / wav.abs().max().clamp(min=1e-8)


def reconstruct(clip, model_path, output, wav=None, mask_ratio=None, mask_kind=None, start: float = 0.0, seed: int = 0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import soundfile as sf

    from hear_maeast import load_model
    from hear_maeast.audio import load_audio

    model = load_model(str(model_path) if model_path else "")  # "": the bundled default weights
    frames = model.cfg.input_frames
    with torch.no_grad():
        feats = model.frontend.features(load_audio(Path(clip))[None].to(model.device))  # [1, F, T_clip]
    s = int(start * 100)
    x = feats[..., s : s + frames]
    if x.shape[-1] == 0:
        raise BadInput(f"--start {start}: the clip has only {feats.shape[-1] / 100:.2f} s of frames")
    n_valid = x.shape[-1]
    x = torch.nn.functional.pad(x, (0, frames - n_valid), value=float("nan"))
    spec = torch.nan_to_num(model.frontend.normalize(x), nan=0.0)  # [1, F, T]; padding = the normalised mean
    holes, pasted = masked_view(model, spec, mask_ratio, mask_kind, seed)
    ratio = mask_ratio if mask_ratio is not None else model.cfg.mask_ratio

    fig, axes = plt.subplots(3, 1, figsize=(10, 7), sharex=True, constrained_layout=True)
    cmap = plt.get_cmap("viridis").copy()
    cmap.set_bad("0.85")
    lo, hi = spec.min().item(), spec.max().item()
    for ax, img, title in zip(axes, (spec[0], holes, pasted),
                              ("input (normalised)", f"masked input ({ratio:.0%} of patches)", "reconstruction (visible patches kept)")):
        ax.imshow(img[:, :n_valid].cpu().numpy(), origin="lower", aspect="auto", cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("mel bin")
    axes[-1].set_xlabel("frame (10 ms)")
    fig.suptitle(f"{Path(clip).name} - {model.cfg.name}", fontsize=11)
    fig.savefig(output, dpi=100)
    plt.close(fig)
    print(f"wrote {output}")
    if wav:
        sf.write(wav, to_audio(model, pasted[:, :n_valid]).numpy(), SAMPLE_RATE)
        print(f"wrote {wav}")
